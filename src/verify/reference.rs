//! The reference evaluator: the documents a product should hold, computed from scratch out of the
//! final state of every source table with plain nested loops over hash indexes.
//!
//! It shares nothing with [`crate::dataflow`] but the plan, the values and their JSON rendering,
//! so comparing its output with what the dataflow wrote checks the incremental code against a
//! second, straightforward implementation of the same semantics:
//!
//! - one document per row of the root source, keyed by that row's primary key columns;
//! - a child relation's slot holds the child rows whose link columns equal the parent's (a null
//!   on either side never matches), as items sorted by the `order_by` fields and then by the whole
//!   item, duplicates kept: a list for `many`, the first item or null for `one`;
//! - a `through` row stands for the item of its target and is dropped when the target is missing.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use crate::plan::{Node, NodeOutput, OutField, Plan, ProductPlan, SortKey, SourceId, SourcePlan};
use crate::spec::Cardinality;
use crate::value::{write_json, write_scalar, Row, Value};

/// Final table state of one source: primary key -> row (row layout = SourcePlan.columns order).
pub type Table = BTreeMap<Row, Row>;

/// Expected output of a product: rendered key JSON -> rendered document JSON.
///
/// `tables[i]` is the final state of `plan.sources[i]`.
///
/// # Panics
///
/// When `tables` does not have one table per source, or a row is shorter than its source's
/// columns: both are mistakes of the caller.
pub fn expected_documents(
    plan: &Plan,
    product: &ProductPlan,
    tables: &[Table],
) -> BTreeMap<String, String> {
    assert_eq!(
        tables.len(),
        plan.sources.len(),
        "expected_documents needs one table per source of the plan"
    );
    let evaluator = Evaluator::new(&product.root, tables);
    let root = &product.root;
    let source = &plan.sources[root.source];
    let shape = product.shape();
    let mut documents = BTreeMap::new();
    for row in tables[root.source].values() {
        let Some(item) = evaluator.item(root, row) else {
            continue;
        };
        let mut document = String::new();
        write_json(&item, &shape, &mut document);
        documents.insert(render_key(source, row), document);
    }
    documents
}

/// `{"column":value,...}` of the primary key columns of `row`, in key order.
fn render_key(source: &SourcePlan, row: &Row) -> String {
    let mut out = String::from("{");
    for (i, &column) in source.key.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(
            &serde_json::to_string(&source.columns[column].name).expect("strings serialize"),
        );
        out.push(':');
        write_scalar(&row[column], &mut out);
    }
    out.push('}');
    out
}

/// Rows of one source grouped by the values of some of their columns (rows with a null there are
/// left out: they never match).
type Index<'t> = HashMap<Vec<Value>, Vec<&'t Row>>;

struct Evaluator<'t> {
    /// One index per (source, child columns) that some link of the product looks rows up by.
    indexes: HashMap<(SourceId, Vec<usize>), Index<'t>>,
}

impl<'t> Evaluator<'t> {
    fn new(root: &Node, tables: &'t [Table]) -> Evaluator<'t> {
        let mut indexes: HashMap<(SourceId, Vec<usize>), Index<'t>> = HashMap::new();
        for node in root.walk() {
            let Some(link) = &node.link else { continue };
            indexes
                .entry((node.source, link.child_columns.clone()))
                .or_insert_with(|| {
                    let mut index: Index<'t> = HashMap::new();
                    for row in tables[node.source].values() {
                        let key: Vec<Value> =
                            link.child_columns.iter().map(|&c| row[c].clone()).collect();
                        if key.iter().any(Value::is_null) {
                            continue;
                        }
                        index.entry(key).or_default().push(row);
                    }
                    index
                });
        }
        Evaluator { indexes }
    }

    /// The item `node` makes of one of its rows: none for a `through` row whose target is missing.
    fn item(&self, node: &Node, row: &Row) -> Option<Value> {
        match &node.output {
            NodeOutput::Scalar(column) => Some(row[*column].clone()),
            NodeOutput::Object(fields) => Some(Value::Doc(
                fields
                    .iter()
                    .map(|field| match field {
                        OutField::Column { column, .. } => row[*column].clone(),
                        OutField::Child { child, .. } => self.slot(&node.children[*child], row),
                    })
                    .collect(),
            )),
            NodeOutput::Through => self.items(&node.children[0], row).into_iter().next(),
        }
    }

    /// What `child` puts in its parent's field for `parent`: a list, or one item or null.
    fn slot(&self, child: &Node, parent: &Row) -> Value {
        let items = self.items(child, parent);
        match child.cardinality {
            Cardinality::Many => Value::Doc(items.into()),
            Cardinality::One => items.into_iter().next().unwrap_or(Value::Null),
        }
    }

    /// The items of the rows of `child` linked to `parent`, sorted, duplicates kept.
    fn items(&self, child: &Node, parent: &Row) -> Vec<Value> {
        let link = child
            .link
            .as_ref()
            .expect("a child node has a link to its parent");
        let key: Vec<Value> = link
            .parent_columns
            .iter()
            .map(|&c| parent[c].clone())
            .collect();
        if key.iter().any(Value::is_null) {
            return Vec::new();
        }
        let index = &self.indexes[&(child.source, link.child_columns.clone())];
        let Some(rows) = index.get(&key) else {
            return Vec::new();
        };
        let mut items: Vec<Value> = rows
            .iter()
            .filter_map(|row| self.item(child, row))
            .collect();
        items.sort_by(|a, b| compare_items(a, b, &child.order_by));
        items
    }
}

/// The list order: the `order_by` fields in turn, each ascending or descending, then the whole
/// item (ascending).
fn compare_items(a: &Value, b: &Value, order_by: &[SortKey]) -> Ordering {
    for key in order_by {
        let ordering = field(a, key.field).cmp(field(b, key.field));
        let ordering = if key.descending {
            ordering.reverse()
        } else {
            ordering
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a.cmp(b)
}

fn field(item: &Value, i: usize) -> &Value {
    match item {
        Value::Doc(fields) => &fields[i],
        other => panic!("order_by applies to object items, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::row;

    /// Loads a product file written to a temporary folder.
    fn load(toml: &str) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("product.toml");
        std::fs::write(&path, toml).unwrap();
        crate::plan::load(&path).unwrap()
    }

    /// One table per source of the plan, filled from rows given by source name (others empty).
    fn tables(plan: &Plan, rows: Vec<(&str, Vec<Vec<Value>>)>) -> Vec<Table> {
        let mut tables = vec![Table::new(); plan.sources.len()];
        for (name, rows) in rows {
            let id = plan
                .sources
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| panic!("no source {name}"));
            let source = &plan.sources[id];
            for values in rows {
                assert_eq!(
                    values.len(),
                    source.columns.len(),
                    "a row of {name} has every column"
                );
                let r = row(values);
                let key = row(source.key.iter().map(|&k| r[k].clone()));
                tables[id].insert(key, r);
            }
        }
        tables
    }

    fn documents(plan: &Plan, tables: &[Table]) -> BTreeMap<String, String> {
        expected_documents(plan, &plan.products[0], tables)
    }

    fn s(text: &str) -> Value {
        Value::str(text)
    }

    fn int(i: i64) -> Value {
        Value::Int(i)
    }

    const SECOND: i64 = 1_000_000;
    /// 2023-11-14T22:13:20Z in microseconds.
    const T0: i64 = 1_700_000_000 * SECOND;

    const GITHUB: &str = r#"
[product]
name = "github_user_profile"
output_topic = "github.user_profile"

[sources.users]
topic = "github.public.users"
primary_key = ["email"]
columns = { id = "int", email = "string", username = "string", registered_at = "timestamp" }

[sources.repos]
topic = "github.public.repos"
primary_key = ["owner", "name"]
columns = { owner = "string", name = "string", description = "string", star_count = "int" }

[sources.pull_requests]
topic = "github.public.pull_requests"
primary_key = ["repo", "repo_owner", "index"]
columns = { repo = "string", repo_owner = "string", index = "int", author = "string", title = "string", status = "string", created_at = "timestamp" }

[sources.stars]
topic = "github.public.stars"
primary_key = ["username", "repo_name", "repo_owner"]
columns = { username = "string", repo_name = "string", repo_owner = "string", created_at = "timestamp" }

[sources.payment_info]
topic = "github.public.payment_info"
primary_key = ["id"]
columns = { id = "int", verified = "bool" }

[document]
source = "users"
fields = ["email", "username"]

[[document.relations]]
name = "starred_repos"
cardinality = "many"
through = { source = "stars", on = { username = "username" } }
source = "repos"
on = { repo_owner = "owner", repo_name = "name" }
fields = [{ name = "repo", column = "name" }, "description"]
order_by = ["repo"]

[[document.relations]]
name = "pull_requests"
cardinality = "many"
source = "pull_requests"
on = { username = "author" }
fields = ["repo", "index", "title", "created_at", "status"]
order_by = ["created_at", "repo", "index"]

[[document.relations]]
name = "payment_verified"
cardinality = "one"
source = "payment_info"
on = { id = "id" }
value = "verified"
"#;

    fn user(id: i64, email: &str, username: Value) -> Vec<Value> {
        vec![int(id), s(email), username, Value::Timestamp(T0)]
    }

    fn repo(owner: &str, name: &str, description: Value) -> Vec<Value> {
        vec![s(owner), s(name), description, int(0)]
    }

    fn star(username: &str, repo_name: &str, repo_owner: Value) -> Vec<Value> {
        vec![s(username), s(repo_name), repo_owner, Value::Timestamp(T0)]
    }

    fn pull(
        repo: &str,
        owner: &str,
        index: i64,
        author: Value,
        title: &str,
        created: i64,
    ) -> Vec<Value> {
        vec![
            s(repo),
            s(owner),
            int(index),
            author,
            s(title),
            s("open"),
            Value::Timestamp(T0 + created * SECOND),
        ]
    }

    #[test]
    fn github_example_renders_exact_bytes() {
        let plan = load(GITHUB);
        let t = tables(
            &plan,
            vec![
                (
                    "users",
                    vec![user(1, "a@x.com", s("alice")), user(2, "b@x.com", s("bob"))],
                ),
                (
                    "repos",
                    vec![
                        repo("alice", "denorm", s("nested docs")),
                        repo("bob", "zeta", Value::Null),
                        repo("bob", "alpha", s("first")),
                    ],
                ),
                (
                    "stars",
                    vec![
                        star("alice", "zeta", s("bob")),
                        star("alice", "alpha", s("bob")),
                        star("alice", "denorm", s("alice")),
                    ],
                ),
                (
                    "pull_requests",
                    vec![
                        pull("denorm", "alice", 7, s("bob"), "Fix \"quotes\"", 5),
                        pull("denorm", "alice", 3, s("bob"), "First", 1),
                    ],
                ),
                ("payment_info", vec![vec![int(1), Value::Bool(true)]]),
            ],
        );
        let docs = documents(&plan, &t);
        let expected: BTreeMap<String, String> = [
            (
                r#"{"email":"a@x.com"}"#,
                r#"{"email":"a@x.com","username":"alice","starred_repos":[{"repo":"alpha","description":"first"},{"repo":"denorm","description":"nested docs"},{"repo":"zeta","description":null}],"pull_requests":[],"payment_verified":true}"#,
            ),
            (
                r#"{"email":"b@x.com"}"#,
                r#"{"email":"b@x.com","username":"bob","starred_repos":[],"pull_requests":[{"repo":"denorm","index":3,"title":"First","created_at":"2023-11-14T22:13:21Z","status":"open"},{"repo":"denorm","index":7,"title":"Fix \"quotes\"","created_at":"2023-11-14T22:13:25Z","status":"open"}],"payment_verified":null}"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(docs, expected);
    }

    #[test]
    fn many_to_many_through_drops_links_whose_target_is_missing() {
        let plan = load(GITHUB);
        let t = tables(
            &plan,
            vec![
                ("users", vec![user(1, "a@x.com", s("alice"))]),
                ("repos", vec![repo("bob", "kept", s("here"))]),
                (
                    "stars",
                    vec![
                        star("alice", "kept", s("bob")),
                        // No such repo: the link row stands for nothing.
                        star("alice", "gone", s("bob")),
                        // Same name, other owner: both link columns must match.
                        star("alice", "kept", s("carol")),
                        // A null link column never matches.
                        star("alice", "kept", Value::Null),
                    ],
                ),
            ],
        );
        let docs = documents(&plan, &t);
        assert_eq!(
            docs[r#"{"email":"a@x.com"}"#],
            r#"{"email":"a@x.com","username":"alice","starred_repos":[{"repo":"kept","description":"here"}],"pull_requests":[],"payment_verified":null}"#
        );
    }

    #[test]
    fn one_to_many_on_a_non_key_column_sorts_by_order_by_then_whole_item() {
        let plan = load(GITHUB);
        let t = tables(
            &plan,
            vec![
                ("users", vec![user(1, "b@x.com", s("bob"))]),
                (
                    "pull_requests",
                    vec![
                        // Same created_at: repo then index decide.
                        pull("r2", "o", 1, s("bob"), "c", 10),
                        pull("r1", "o", 2, s("bob"), "b", 10),
                        pull("r1", "o", 1, s("bob"), "a", 10),
                        // Earliest first, whatever its repo.
                        pull("r9", "o", 9, s("bob"), "first", 0),
                        // Someone else's.
                        pull("r1", "o", 3, s("alice"), "other", 0),
                    ],
                ),
            ],
        );
        let doc = &documents(&plan, &t)[r#"{"email":"b@x.com"}"#];
        let titles: Vec<String> = serde_json::from_str::<serde_json::Value>(doc).unwrap()
            ["pull_requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(titles, ["first", "a", "b", "c"]);
    }

    #[test]
    fn one_to_one_scalar_is_null_when_missing() {
        let plan = load(GITHUB);
        let t = tables(
            &plan,
            vec![
                (
                    "users",
                    vec![
                        user(1, "a@x.com", s("alice")),
                        user(2, "b@x.com", s("bob")),
                        user(3, "c@x.com", s("carol")),
                    ],
                ),
                (
                    "payment_info",
                    vec![vec![int(1), Value::Bool(false)], vec![int(3), Value::Null]],
                ),
            ],
        );
        let docs = documents(&plan, &t);
        let verified = |email: &str| {
            let doc: serde_json::Value =
                serde_json::from_str(&docs[&format!(r#"{{"email":"{email}"}}"#)]).unwrap();
            doc["payment_verified"].clone()
        };
        assert_eq!(verified("a@x.com"), serde_json::json!(false));
        assert_eq!(verified("b@x.com"), serde_json::Value::Null);
        // Present but null renders the same.
        assert_eq!(verified("c@x.com"), serde_json::Value::Null);
    }

    #[test]
    fn null_join_columns_never_match() {
        let plan = load(GITHUB);
        let t = tables(
            &plan,
            vec![
                ("users", vec![user(1, "a@x.com", Value::Null)]),
                (
                    "pull_requests",
                    vec![pull("r", "o", 1, Value::Null, "orphan", 0)],
                ),
                (
                    "stars",
                    vec![vec![Value::Null, s("r"), s("o"), Value::Timestamp(T0)]],
                ),
                ("repos", vec![repo("o", "r", s("d"))]),
            ],
        );
        assert_eq!(
            documents(&plan, &t)[r#"{"email":"a@x.com"}"#],
            r#"{"email":"a@x.com","username":null,"starred_repos":[],"pull_requests":[],"payment_verified":null}"#
        );
    }

    #[test]
    fn duplicate_items_are_kept() {
        let plan = load(GITHUB);
        // Two pull requests that differ only in repo_owner, which is not output.
        let t = tables(
            &plan,
            vec![
                ("users", vec![user(1, "b@x.com", s("bob"))]),
                (
                    "pull_requests",
                    vec![
                        pull("r", "o1", 1, s("bob"), "same", 0),
                        pull("r", "o2", 1, s("bob"), "same", 0),
                    ],
                ),
            ],
        );
        let doc = &documents(&plan, &t)[r#"{"email":"b@x.com"}"#];
        let item = r#"{"repo":"r","index":1,"title":"same","created_at":"2023-11-14T22:13:20Z","status":"open"}"#;
        assert!(
            doc.contains(&format!(r#""pull_requests":[{item},{item}]"#)),
            "{doc}"
        );
    }

    const SHOP: &str = r#"
[product]
name = "customer_orders"
output_topic = "shop.customer_orders"

[sources.customers]
topic = "shop.public.customers"
primary_key = ["id"]
columns = { id = "int", name = "string" }

[sources.orders]
topic = "shop.public.orders"
primary_key = ["id"]
columns = { id = "int", customer_id = "int", placed = "int" }

[sources.lines]
topic = "shop.public.lines"
primary_key = ["order_id", "line"]
columns = { order_id = "int", line = "int", sku = "string", qty = "int" }

[sources.products]
topic = "shop.public.products"
primary_key = ["sku"]
columns = { sku = "string", title = "string" }

[sources.tags]
topic = "shop.public.tags"
primary_key = ["sku", "tag"]
columns = { sku = "string", tag = "string" }

[document]
source = "customers"
fields = [{ name = "customer", column = "name" }]

[[document.relations]]
name = "orders"
cardinality = "many"
source = "orders"
on = { id = "customer_id" }
fields = ["id", "placed"]
order_by = ["placed"]

[[document.relations.relations]]
name = "lines"
cardinality = "many"
source = "lines"
on = { id = "order_id" }
fields = ["line", "qty"]
order_by = ["line"]

[[document.relations.relations.relations]]
name = "product"
cardinality = "one"
source = "products"
on = { sku = "sku" }
fields = ["title"]

[[document.relations.relations.relations.relations]]
name = "tags"
cardinality = "many"
source = "tags"
on = { sku = "sku" }
value = "tag"
"#;

    #[test]
    fn nests_several_levels_deep() {
        let plan = load(SHOP);
        let t = tables(
            &plan,
            vec![
                (
                    "customers",
                    vec![vec![int(1), s("Ann")], vec![int(2), s("Ben")]],
                ),
                (
                    "orders",
                    vec![
                        vec![int(10), int(1), int(200)],
                        vec![int(11), int(1), int(100)],
                        vec![int(12), int(3), int(0)],
                    ],
                ),
                (
                    "lines",
                    vec![
                        vec![int(10), int(2), s("pen"), int(1)],
                        vec![int(10), int(1), s("ink"), int(5)],
                        vec![int(11), int(1), s("nope"), int(1)],
                    ],
                ),
                (
                    "products",
                    vec![vec![s("pen"), s("Pen")], vec![s("ink"), s("Ink")]],
                ),
                (
                    "tags",
                    vec![
                        vec![s("pen"), s("write")],
                        vec![s("pen"), s("blue")],
                        vec![s("ink"), s("refill")],
                    ],
                ),
            ],
        );
        let docs = documents(&plan, &t);
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[r#"{"id":1}"#],
            concat!(
                r#"{"customer":"Ann","orders":["#,
                r#"{"id":11,"placed":100,"lines":[{"line":1,"qty":1,"product":null}]},"#,
                r#"{"id":10,"placed":200,"lines":["#,
                r#"{"line":1,"qty":5,"product":{"title":"Ink","tags":["refill"]}},"#,
                r#"{"line":2,"qty":1,"product":{"title":"Pen","tags":["blue","write"]}}"#,
                r#"]}]}"#
            )
        );
        assert_eq!(docs[r#"{"id":2}"#], r#"{"customer":"Ben","orders":[]}"#);
    }

    #[test]
    fn cardinality_one_takes_the_first_sorted_match_and_lists_keep_duplicate_values() {
        let plan = load(
            r#"
[product]
name = "p"
output_topic = "out"

[sources.a]
topic = "t.a"
primary_key = ["id"]
columns = { id = "int", k = "string" }

[sources.b]
topic = "t.b"
primary_key = ["id"]
columns = { id = "int", k = "string", v = "int" }

[document]
source = "a"
fields = ["id"]

[[document.relations]]
name = "first"
cardinality = "one"
source = "b"
on = { k = "k" }
value = "v"

[[document.relations]]
name = "all"
cardinality = "many"
source = "b"
on = { k = "k" }
value = "v"
"#,
        );
        let t = tables(
            &plan,
            vec![
                ("a", vec![vec![int(1), s("x")]]),
                (
                    "b",
                    vec![
                        vec![int(1), s("x"), int(9)],
                        vec![int(2), s("x"), int(4)],
                        vec![int(3), s("x"), int(9)],
                        vec![int(4), s("y"), int(0)],
                    ],
                ),
            ],
        );
        assert_eq!(
            documents(&plan, &t)[r#"{"id":1}"#],
            r#"{"id":1,"first":4,"all":[4,9,9]}"#
        );
    }

    #[test]
    fn composite_root_keys_render_in_key_order() {
        let plan = load(
            r#"
[product]
name = "p"
output_topic = "out"

[sources.a]
topic = "t.a"
primary_key = ["second", "first"]
columns = { first = "string", second = "int", v = "float" }

[document]
source = "a"
fields = ["v"]
"#,
        );
        let t = tables(
            &plan,
            vec![(
                "a",
                vec![vec![
                    s("q\"x"),
                    int(2),
                    Value::Float(crate::value::F64(0.5)),
                ]],
            )],
        );
        let docs = documents(&plan, &t);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[r#"{"second":2,"first":"q\"x"}"#], r#"{"v":0.5}"#);
    }
}
