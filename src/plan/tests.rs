//! Product files to plans: the shipped example lowers to the expected tree, and every mistake is
//! an error that names the file, line and column, and the wrong name.

use super::*;

use std::path::Path;
use std::sync::Arc;

use super::spec::Cardinality;
use crate::value::Shape;

/// Writes `text` as `name` into a fresh temporary folder and loads it.
fn load_text(name: &str, text: &str) -> (tempfile::TempDir, anyhow::Result<Plan>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write product file");
    let plan = load(&path);
    (dir, plan)
}

/// A small shop product: line numbers matter, the error tests point into this text.
const SHOP: &str = r#"[product]
name = "shop_orders"
output_topic = "shop.orders_doc"

[sources.customers]
topic = "shop.public.customers"
primary_key = ["id"]
columns = { id = "int", name = "string", email = "string" }

[sources.orders]
topic = "shop.public.orders"
primary_key = ["order_id"]
columns = { order_id = "int", customer_id = "int", total = "decimal(2)", placed_at = "timestamp" }

[sources.items]
topic = "shop.public.items"
primary_key = ["order_id", "line"]
columns = { order_id = "int", line = "int", sku = "string", qty = "int" }

[document]
source = "orders"
fields = ["order_id", { name = "amount", column = "total" }, "placed_at"]

[[document.relations]]
name = "customer"
cardinality = "one"
source = "customers"
on = { customer_id = "id" }
fields = ["name", "email"]

[[document.relations]]
name = "items"
cardinality = "many"
source = "items"
on = { order_id = "order_id" }
fields = ["sku", "qty", "line"]
order_by = ["line"]

[[document.relations]]
name = "skus"
cardinality = "many"
source = "items"
on = { order_id = "order_id" }
value = "sku"
"#;

/// An ascending `order_by` entry on field `field`.
fn asc(field: usize) -> SortKey {
    SortKey {
        field,
        descending: false,
    }
}

/// The 1-based number of the last line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .last()
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("no line holds `{needle}`"))
}

/// `SHOP` with `old` (which must occur exactly once) replaced by `new`.
fn shop_with(old: &str, new: &str) -> String {
    assert_eq!(
        SHOP.matches(old).count(),
        1,
        "`{old}` must occur once in SHOP"
    );
    SHOP.replacen(old, new, 1)
}

/// Loads `text` and expects an error at `line` whose column is where `needle` starts on that
/// line (computed here in characters, independently of the plan's own locating), containing
/// every `expected`.
#[track_caller]
fn expect_error(text: &str, line: usize, needle: &str, expected: &[&str]) -> String {
    let (dir, result) = load_text("shop.toml", text);
    let message = match result {
        Ok(plan) => panic!("expected an error at line {line}, got a plan: {plan:#?}"),
        Err(e) => format!("{e:#}"),
    };
    let line_text = text
        .lines()
        .nth(line - 1)
        .unwrap_or_else(|| panic!("the text has no line {line}"));
    let byte = line_text
        .find(needle)
        .unwrap_or_else(|| panic!("line {line} `{line_text}` lacks `{needle}`"));
    // Columns count characters, 1-based.
    let column = line_text[..byte].chars().count() + 1;
    let path = dir.path().join("shop.toml");
    let place = format!("{}:{line}:{column}", path.display());
    assert!(
        message.starts_with(&place),
        "error should start with `{place}`:\n{message}"
    );
    assert!(
        message.contains(&format!(":{line}:")),
        "error should name line {line}:\n{message}"
    );
    // The excerpt shows the offending line.
    assert!(
        message.contains(line_text.trim()),
        "error should show line {line} `{line_text}`:\n{message}"
    );
    for e in expected {
        assert!(
            message.contains(e),
            "error should contain `{e}`:\n{message}"
        );
    }
    message
}

#[test]
fn the_shop_example_loads() {
    let (_dir, plan) = load_text("shop.toml", SHOP);
    let plan = plan.unwrap();
    let names: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["orders", "customers", "items"],
        "sources in first-use order"
    );
    let product = &plan.products[0];
    assert_eq!(product.name, "shop_orders");
    assert_eq!(product.output_topic, "shop.orders_doc");
    let root = &product.root;
    assert_eq!(
        root.output,
        NodeOutput::Object(vec![
            OutField::Column {
                name: "order_id".into(),
                column: 0
            },
            OutField::Column {
                name: "amount".into(),
                column: 2
            },
            OutField::Column {
                name: "placed_at".into(),
                column: 3
            },
            OutField::Child {
                name: "customer".into(),
                child: 0
            },
            OutField::Child {
                name: "items".into(),
                child: 1
            },
            OutField::Child {
                name: "skus".into(),
                child: 2
            },
        ])
    );
    assert_eq!(
        root.children[0].link,
        Some(Link {
            parent_columns: vec![1],
            child_columns: vec![0]
        })
    );
    assert_eq!(root.children[1].order_by, vec![asc(2)]);
    assert_eq!(root.children[2].output, NodeOutput::Scalar(2));
    assert_eq!(
        root.children[1].source, root.children[2].source,
        "items is one source read twice"
    );
    assert_eq!(
        plan.sources[0].columns[2].ty,
        ColumnType::Decimal { scale: Some(2) }
    );
    assert_eq!(plan.sources[2].key, vec![0, 1]);
}

#[test]
fn github_user_profile_lowers_to_the_expected_plan() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/github_user_profile.toml");
    let plan = load(&path).unwrap();

    // Five sources, in first-use order: the root, then depth first.
    let names: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["users", "stars", "repos", "pull_requests", "payment_info"]
    );
    let topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "github.public.users",
            "github.public.stars",
            "github.public.repos",
            "github.public.pull_requests",
            "github.public.payment_info"
        ]
    );
    let ts = ColumnType::Timestamp {
        unit: TimeUnit::Millis,
    };
    let col = |name: &str, ty| Column {
        name: name.into(),
        ty,
    };
    assert_eq!(
        plan.sources[0],
        SourcePlan {
            name: "users".into(),
            topic: "github.public.users".into(),
            columns: vec![
                col("id", ColumnType::Int),
                col("email", ColumnType::String),
                col("username", ColumnType::String),
                col("registered_at", ts)
            ],
            key: vec![1],
        }
    );
    assert_eq!(
        plan.sources[1].key,
        vec![0, 1, 2],
        "stars: username, repo_name, repo_owner"
    );
    assert_eq!(plan.sources[2].key, vec![0, 1], "repos: owner, name");
    assert_eq!(
        plan.sources[3].key,
        vec![0, 1, 2],
        "pull_requests: repo, repo_owner, index"
    );
    assert_eq!(
        plan.sources[4].columns,
        vec![
            col("id", ColumnType::Int),
            col("verified", ColumnType::Bool)
        ]
    );

    assert_eq!(plan.products.len(), 1);
    let product = &plan.products[0];
    assert_eq!(product.name, "github_user_profile");
    assert_eq!(product.output_topic, "github.user_profile");
    assert_eq!(product.file, path.display().to_string());

    let repos = Node {
        path: "document.starred_repos".into(),
        source: 2,
        // stars.(repo_owner, repo_name) = repos.(owner, name)
        link: Some(Link {
            parent_columns: vec![2, 1],
            child_columns: vec![0, 1],
        }),
        cardinality: Cardinality::One,
        output: NodeOutput::Object(vec![
            OutField::Column {
                name: "repo".into(),
                column: 1,
            },
            OutField::Column {
                name: "description".into(),
                column: 2,
            },
        ]),
        children: vec![],
        order_by: vec![asc(0)],
    };
    let starred_repos = Node {
        path: "document.starred_repos(through stars)".into(),
        source: 1,
        // users.username = stars.username
        link: Some(Link {
            parent_columns: vec![2],
            child_columns: vec![0],
        }),
        cardinality: Cardinality::Many,
        output: NodeOutput::Through,
        children: vec![repos],
        order_by: vec![asc(0)],
    };
    let pull_requests = Node {
        path: "document.pull_requests".into(),
        source: 3,
        // users.username = pull_requests.author
        link: Some(Link {
            parent_columns: vec![2],
            child_columns: vec![3],
        }),
        cardinality: Cardinality::Many,
        output: NodeOutput::Object(vec![
            OutField::Column {
                name: "repo".into(),
                column: 0,
            },
            OutField::Column {
                name: "index".into(),
                column: 2,
            },
            OutField::Column {
                name: "title".into(),
                column: 4,
            },
            OutField::Column {
                name: "created_at".into(),
                column: 6,
            },
            OutField::Column {
                name: "status".into(),
                column: 5,
            },
        ]),
        children: vec![],
        // created_at, repo, index: positions among the output fields
        order_by: vec![asc(3), asc(0), asc(1)],
    };
    let payment_verified = Node {
        path: "document.payment_verified".into(),
        source: 4,
        link: Some(Link {
            parent_columns: vec![0],
            child_columns: vec![0],
        }),
        cardinality: Cardinality::One,
        output: NodeOutput::Scalar(1),
        children: vec![],
        order_by: vec![],
    };
    let root = Node {
        path: "document".into(),
        source: 0,
        link: None,
        cardinality: Cardinality::One,
        output: NodeOutput::Object(vec![
            OutField::Column {
                name: "email".into(),
                column: 1,
            },
            OutField::Column {
                name: "username".into(),
                column: 2,
            },
            OutField::Child {
                name: "starred_repos".into(),
                child: 0,
            },
            OutField::Child {
                name: "pull_requests".into(),
                child: 1,
            },
            OutField::Child {
                name: "payment_verified".into(),
                child: 2,
            },
        ]),
        children: vec![starred_repos, pull_requests, payment_verified],
        order_by: vec![],
    };
    assert_eq!(product.root, root);

    // Every node's source is one of the plan's, and walk visits parents before children.
    let walked: Vec<&str> = product
        .root
        .walk()
        .iter()
        .map(|n| n.path.as_str())
        .collect();
    assert_eq!(
        walked,
        [
            "document",
            "document.starred_repos(through stars)",
            "document.starred_repos",
            "document.pull_requests",
            "document.payment_verified"
        ]
    );

    // The shape: names in declared order; a through node takes its target's shape.
    let scalar = |name: &str| (Arc::<str>::from(name), Shape::Scalar);
    let expected = Shape::Object(vec![
        scalar("email"),
        scalar("username"),
        (
            "starred_repos".into(),
            Shape::List(Box::new(Shape::Object(vec![
                scalar("repo"),
                scalar("description"),
            ]))),
        ),
        (
            "pull_requests".into(),
            Shape::List(Box::new(Shape::Object(vec![
                scalar("repo"),
                scalar("index"),
                scalar("title"),
                scalar("created_at"),
                scalar("status"),
            ]))),
        ),
        scalar("payment_verified"),
    ]);
    assert_eq!(product.shape(), expected);
    let Shape::Object(fields) = product.shape() else {
        unreachable!()
    };
    let names: Vec<&str> = fields.iter().map(|(n, _)| &**n).collect();
    assert_eq!(
        names,
        [
            "email",
            "username",
            "starred_repos",
            "pull_requests",
            "payment_verified"
        ]
    );
}

#[test]
fn column_types_parse_and_display() {
    for (text, ty) in [
        ("string", ColumnType::String),
        ("text", ColumnType::String),
        ("int", ColumnType::Int),
        ("long", ColumnType::Int),
        ("double", ColumnType::Float),
        ("boolean", ColumnType::Bool),
        ("decimal", ColumnType::Decimal { scale: None }),
        ("decimal(4)", ColumnType::Decimal { scale: Some(4) }),
        ("decimal( 2 )", ColumnType::Decimal { scale: Some(2) }),
        ("date", ColumnType::Date),
        ("time", ColumnType::Time),
        (
            "timestamp",
            ColumnType::Timestamp {
                unit: TimeUnit::Millis,
            },
        ),
        (
            "timestamp(ms)",
            ColumnType::Timestamp {
                unit: TimeUnit::Millis,
            },
        ),
        (
            "timestamp(us)",
            ColumnType::Timestamp {
                unit: TimeUnit::Micros,
            },
        ),
        (
            "timestamp(ns)",
            ColumnType::Timestamp {
                unit: TimeUnit::Nanos,
            },
        ),
        ("json", ColumnType::Json),
    ] {
        assert_eq!(ColumnType::parse(text), Some(ty), "{text}");
        // Display round-trips.
        assert_eq!(ColumnType::parse(&ty.to_string()), Some(ty), "{ty}");
    }
    for bad in ["integr", "decimal(x)", "decimal(", "timestamp(s)", ""] {
        assert_eq!(ColumnType::parse(bad), None, "{bad}");
    }
}

// --- Every mistake names file:line:column and the wrong name. ---

#[test]
fn unknown_source_of_a_relation() {
    let text = shop_with(r#"source = "customers""#, r#"source = "clients""#);
    expect_error(
        &text,
        27,
        r#""clients""#,
        &[
            "unknown source `clients`",
            "declared sources: customers, orders, items",
        ],
    );
}

#[test]
fn unknown_source_of_the_document() {
    let text = shop_with(r#"source = "orders""#, r#"source = "order""#);
    expect_error(&text, 21, r#""order""#, &["unknown source `order`"]);
}

#[test]
fn unknown_source_of_a_through_link() {
    let text = shop_with("cardinality = \"one\"\nsource = \"customers\"", "cardinality = \"one\"\nthrough = { source = \"links\", on = { customer_id = \"id\" } }\nsource = \"customers\"");
    expect_error(&text, 27, r#""links""#, &["unknown source `links`"]);
}

#[test]
fn unknown_column_in_fields() {
    let text = shop_with(
        r#"fields = ["name", "email"]"#,
        r#"fields = ["name", "mail"]"#,
    );
    expect_error(
        &text,
        29,
        r#""mail""#,
        &[
            "source `customers` has no column `mail`",
            "its columns are: id, name, email",
        ],
    );
}

#[test]
fn unknown_column_of_a_renamed_field() {
    let text = shop_with(r#"column = "total""#, r#"column = "totl""#);
    expect_error(
        &text,
        22,
        r#""totl""#,
        &["source `orders` has no column `totl`"],
    );
}

#[test]
fn unknown_column_in_fields_of_the_document() {
    let text = shop_with(r#""placed_at"]"#, r#""placed"]"#);
    expect_error(
        &text,
        22,
        r#""placed""#,
        &["source `orders` has no column `placed`"],
    );
}

#[test]
fn unknown_parent_column_in_on() {
    let text = shop_with(
        r#"on = { customer_id = "id" }"#,
        r#"on = { cust_id = "id" }"#,
    );
    // The parent column is a TOML key without a span of its own: the error finds it in `on`.
    expect_error(
        &text,
        28,
        "cust_id",
        &[
            "`on` names `cust_id`",
            "not a column of the parent source `orders`",
            "order_id, customer_id, total, placed_at",
        ],
    );
}

#[test]
fn unknown_child_column_in_on() {
    let text = shop_with(
        r#"on = { customer_id = "id" }"#,
        r#"on = { customer_id = "cid" }"#,
    );
    expect_error(
        &text,
        28,
        r#""cid""#,
        &["source `customers` has no column `cid`"],
    );
}

#[test]
fn unknown_columns_in_through_on() {
    let through = |on: &str| {
        shop_with(
            "cardinality = \"one\"\nsource = \"customers\"",
            &format!("cardinality = \"one\"\nthrough = {{ source = \"items\", on = {on} }}\nsource = \"customers\""),
        )
    };
    // Parent (orders) side, then link (items) side.
    expect_error(
        &through(r#"{ customer = "order_id" }"#),
        27,
        "customer =",
        &["`on` names `customer`", "parent source `orders`"],
    );
    expect_error(
        &through(r#"{ order_id = "order" }"#),
        27,
        r#""order""#,
        &["source `items` has no column `order`"],
    );
}

#[test]
fn unknown_primary_key_column() {
    let text = shop_with(r#"primary_key = ["id"]"#, r#"primary_key = ["ident"]"#);
    expect_error(
        &text,
        7,
        r#""ident""#,
        &["primary key column `ident` is not a declared column of source `customers`"],
    );
}

#[test]
fn primary_key_mistakes() {
    let text = shop_with(
        r#"primary_key = ["order_id", "line"]"#,
        r#"primary_key = ["order_id", "order_id"]"#,
    );
    expect_error(
        &text,
        17,
        r#""order_id"]"#,
        &["`order_id` appears twice in the primary key"],
    );
    let text = shop_with(r#"primary_key = ["id"]"#, "primary_key = []");
    expect_error(
        &text,
        7,
        "[",
        &["source `customers` has an empty primary key"],
    );
}

#[test]
fn unknown_order_by_field() {
    let text = shop_with(r#"order_by = ["line"]"#, r#"order_by = ["lines"]"#);
    expect_error(
        &text,
        37,
        r#""lines""#,
        &[
            "`order_by` names `lines`",
            "not an output field of `items`",
            "its fields are: sku, qty, line",
        ],
    );
}

#[test]
fn order_by_names_output_fields_not_columns() {
    // `order_id` is a column of items, but not one of the relation's output fields.
    let text = shop_with(r#"order_by = ["line"]"#, r#"order_by = ["order_id"]"#);
    expect_error(&text, 37, r#""order_id""#, &["`order_by` names `order_id`"]);
}

#[test]
fn order_by_sorts_descending_on_request() {
    for entry in ["line desc", "line DESC", "-line", " line  desc "] {
        let text = shop_with(
            r#"order_by = ["line"]"#,
            &format!("order_by = [\"{entry}\"]"),
        );
        let (_dir, plan) = load_text("shop.toml", &text);
        let plan = plan.unwrap();
        assert_eq!(
            plan.products[0].root.children[1].order_by,
            vec![SortKey {
                field: 2,
                descending: true
            }],
            "{entry}"
        );
    }
    let text = shop_with(
        r#"order_by = ["line"]"#,
        r#"order_by = ["line asc", "sku"]"#,
    );
    let (_dir, plan) = load_text("shop.toml", &text);
    assert_eq!(
        plan.unwrap().products[0].root.children[1].order_by,
        vec![asc(2), asc(0)]
    );
    // A misspelt field with a direction is still matched.
    let text = shop_with(r#"order_by = ["line"]"#, r#"order_by = ["lin desc"]"#);
    expect_error(
        &text,
        37,
        r#""lin desc""#,
        &["`order_by` names `lin`", "did you mean `line`?"],
    );
}

#[test]
fn order_by_a_renamed_column_says_its_output_name() {
    let text = shop_with(
        r#"fields = ["sku", "qty", "line"]"#,
        r#"fields = ["sku", "qty", { name = "position", column = "line" }]"#,
    );
    expect_error(
        &text,
        37,
        r#""line""#,
        &[
            "column `line` is output as `position`",
            "write order_by = [\"position\"]",
        ],
    );
}

#[test]
fn toml_shape_mistakes_get_advice_in_our_words() {
    let text = shop_with(
        r#"primary_key = ["order_id"]"#,
        r#"primary_key = "order_id""#,
    );
    expect_error(
        &text,
        line_of(&text, r#"primary_key = "order_id""#),
        r#""order_id""#,
        &["a list is written in brackets: primary_key = [\"order_id\"]"],
    );
    let text = SHOP.replacen("[[document.relations]]", "[document.relations]", 1);
    expect_error(
        &text,
        31,
        "relations]]",
        &[
            "this table was opened before as a single table",
            "[[...]] (double brackets)",
        ],
    );
    let text = SHOP.replace(
        "[[document.relations]]\nname = \"items\"",
        "[sources.items]\ntopic = \"x\"\n[[document.relations]]\nname = \"items\"",
    );
    expect_error(
        &text,
        31,
        "items]",
        &["source `items` is declared twice: keep one [sources.items] section"],
    );
    let text = shop_with(
        r#"on = { customer_id = "id" }"#,
        "on = { customer_id = \"id\" }\nthrough = \"orders\"",
    );
    let message = expect_error(
        &text,
        line_of(&text, r#""orders""#),
        r#""orders""#,
        &[
            "expected a table { source",
            "through is written through = { source",
        ],
    );
    assert!(!message.contains("ThroughSpec"), "{message}");
}

#[test]
fn type_names_from_sql_and_other_languages_are_translated() {
    for (written, advice) in [
        (
            "numeric(10,2)",
            "`numeric(10,2)` is written `decimal(2)` here",
        ),
        (
            "decimal(12, 4)",
            "`decimal(12, 4)` is written `decimal(4)` here",
        ),
        ("String", "type names are lower case: write `string`"),
        ("BOOL", "type names are lower case: write `bool`"),
    ] {
        let text = shop_with(r#"qty = "int""#, &format!("qty = \"{written}\""));
        expect_error(
            &text,
            line_of(&text, &format!("\"{written}\"")),
            &format!("\"{written}\""),
            &[advice],
        );
    }
}

#[test]
fn a_relation_listed_in_fields_is_explained() {
    let text = shop_with(
        r#"fields = ["sku", "qty", "line"]"#,
        r#"fields = ["sku", "qty", "line", "skus"]"#,
    );
    let items = SHOP.replacen(
        r#"fields = ["sku", "qty", "line"]"#,
        "fields = [\"sku\", \"qty\", \"line\"]\n\n[[document.relations.relations]]\nname = \"same\"\ncardinality = \"many\"\nsource = \"items\"\non = { order_id = \"order_id\" }\nvalue = \"sku\"",
        1,
    );
    // A relation of the same node named in fields.
    let nested = items.replacen(
        r#"fields = ["sku", "qty", "line"]"#,
        r#"fields = ["sku", "qty", "line", "same"]"#,
        1,
    );
    expect_error(
        &nested,
        line_of(&nested, r#""line", "same"]"#),
        r#""same""#,
        &[
            "`same` is a relation, not a column of `items`",
            "remove it from `fields`",
        ],
    );
    // A sibling relation's name is just not a column.
    expect_error(
        &text,
        line_of(&text, r#""line", "skus"]"#),
        r#""skus""#,
        &["source `items` has no column `skus`"],
    );
}

#[test]
fn order_by_of_a_value_list() {
    let text = shop_with(r#"value = "sku""#, "value = \"sku\"\norder_by = [\"sku\"]");
    expect_error(
        &text,
        45,
        r#""sku""#,
        &["`order_by` applies to object items"],
    );
}

#[test]
fn unknown_value_column() {
    let text = shop_with(r#"value = "sku""#, r#"value = "skew""#);
    expect_error(
        &text,
        44,
        r#""skew""#,
        &["source `items` has no column `skew`"],
    );
}

#[test]
fn unknown_column_type() {
    let text = shop_with(r#"qty = "int""#, r#"qty = "integr""#);
    expect_error(
        &text,
        18,
        r#""integr""#,
        &[
            "unknown column type `integr` for `items.qty`",
            "types are: string, int",
        ],
    );
}

#[test]
fn join_columns_of_different_types() {
    let text = shop_with(
        r#"on = { customer_id = "id" }"#,
        r#"on = { customer_id = "name" }"#,
    );
    expect_error(
        &text,
        28,
        r#""name""#,
        &["cannot join `orders.customer_id` (int) with `customers.name` (string): the types differ"],
    );
}

#[test]
fn a_field_output_twice() {
    let text = shop_with(
        r#"fields = ["name", "email"]"#,
        r#"fields = ["name", "email", "name"]"#,
    );
    let message = expect_error(&text, 29, r#""name"]"#, &["field `name` is output twice"]);
    // The first occurrence is named too.
    assert!(message.contains(":29:11)"), "{message}");
}

#[test]
fn a_relation_named_like_a_field() {
    let text = shop_with(r#"name = "customer""#, r#"name = "placed_at""#);
    expect_error(
        &text,
        25,
        r#""placed_at""#,
        &[
            "relation `placed_at` has the name of another field of the same object (first at",
            ":22:",
            "give it another name",
        ],
    );
}

#[test]
fn both_value_and_fields() {
    let text = shop_with(r#"value = "sku""#, "value = \"sku\"\nfields = [\"qty\"]");
    expect_error(
        &text,
        45,
        r#""qty""#,
        &["a relation has either `value` or `fields`, not both"],
    );
}

#[test]
fn value_with_relations() {
    let text = format!(
        "{SHOP}\n[[document.relations.relations]]\nname = \"sub\"\ncardinality = \"one\"\nsource = \"orders\"\non = {{ order_id = \"order_id\" }}\nvalue = \"total\"\n"
    );
    expect_error(
        &text,
        47,
        r#""sub""#,
        &["a relation with `value` nests a single column and cannot have relations"],
    );
}

#[test]
fn an_empty_on() {
    let text = shop_with(
        r#"on = { order_id = "order_id" }
fields"#,
        "on = {}\nfields",
    );
    expect_error(&text, 35, "{}", &["`on` names no columns"]);
}

#[test]
fn a_relation_that_outputs_nothing() {
    let text = shop_with(r#"fields = ["name", "email"]"#, "");
    expect_error(&text, 25, r#""customer""#, &["this node outputs nothing"]);
}

#[test]
fn unknown_toml_keys() {
    // In a relation.
    let text = shop_with(
        r#"fields = ["name", "email"]"#,
        r#"field = ["name", "email"]"#,
    );
    expect_error(&text, 29, "field", &["unknown field `field`"]);
    // In [product].
    let text = shop_with(
        r#"output_topic = "shop.orders_doc""#,
        r#"output_topic = "shop.orders_doc"
topics = "x""#,
    );
    expect_error(&text, 4, "topics", &["unknown field `topics`"]);
    // In a source.
    let text = shop_with(
        r#"primary_key = ["id"]"#,
        r#"primary_key = ["id"]
key = ["id"]"#,
    );
    expect_error(&text, 8, "key", &["unknown field `key`"]);
    // In a renamed field.
    let text = shop_with(
        r#"{ name = "amount", column = "total" }"#,
        r#"{ name = "amount", col = "total" }"#,
    );
    expect_error(&text, 22, "{ name", &["unknown field `col`"]);
}

#[test]
fn a_toml_syntax_error() {
    let text = shop_with(
        r#"cardinality = "many"
source = "items"
on = { order_id = "order_id" }
fields"#,
        r#"cardinality = "many"
source = "items
on = { order_id = "order_id" }
fields"#,
    );
    let (_dir, result) = load_text("shop.toml", &text);
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("shop.toml:34:"), "{message}");
    assert!(message.contains(r#"source = "items"#), "{message}");

    let text = shop_with(r#"cardinality = "one""#, "cardinality = one");
    expect_error(&text, 26, "one", &["shop.toml:26:"]);
}

#[test]
fn a_field_that_is_neither_a_name_nor_a_rename() {
    let text = shop_with(r#"fields = ["name", "email"]"#, r#"fields = ["name", 3]"#);
    expect_error(&text, 29, "3", &["a column name or { name"]);
    let text = shop_with(
        r#"{ name = "amount", column = "total" }"#,
        r#"{ name = "amount" }"#,
    );
    expect_error(&text, 22, "{ name", &["missing field `column`"]);
}

#[test]
fn an_unknown_cardinality() {
    let text = shop_with(r#"cardinality = "one""#, r#"cardinality = "single""#);
    expect_error(&text, 26, r#""single""#, &["single", "one", "many"]);
}

#[test]
fn output_topic_equal_to_a_source_topic() {
    let text = shop_with(
        r#"output_topic = "shop.orders_doc""#,
        r#"output_topic = "shop.public.orders""#,
    );
    expect_error(
        &text,
        3,
        r#""shop.public.orders""#,
        &["the output topic is also a source topic"],
    );
}

#[test]
fn two_sources_on_one_topic() {
    let text = shop_with(
        r#"topic = "shop.public.items""#,
        r#"topic = "shop.public.orders""#,
    );
    expect_error(
        &text,
        16,
        r#""shop.public.orders""#,
        &["topic `shop.public.orders` is used by two sources"],
    );
}

#[test]
fn a_bad_product_name() {
    let text = shop_with(r#"name = "shop_orders""#, r#"name = "shop orders""#);
    expect_error(
        &text,
        2,
        r#""shop orders""#,
        &["product name `shop orders`"],
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let message = format!("{:#}", load(&path).unwrap_err());
    assert!(
        message.contains("cannot read product file") && message.contains("nope.toml"),
        "{message}"
    );
}

// --- Merging product files. ---

/// A second product over the shop's sources: customers with their orders, so that its sources
/// come in a different first-use order than SHOP's.
const CUSTOMERS: &str = r#"[product]
name = "shop_customers"
output_topic = "shop.customers_doc"

[sources.clients]
topic = "shop.public.customers"
primary_key = ["id"]
columns = { id = "int", name = "string", email = "string" }

[sources.orders]
topic = "shop.public.orders"
primary_key = ["order_id"]
columns = { order_id = "int", customer_id = "int", total = "decimal(2)", placed_at = "timestamp" }

[document]
source = "clients"
fields = ["id", "name"]

[[document.relations]]
name = "orders"
cardinality = "many"
source = "orders"
on = { id = "customer_id" }
fields = ["order_id", "total"]
"#;

#[test]
fn merge_shares_sources_with_the_same_topic() {
    let (_a, shop) = load_text("shop.toml", SHOP);
    let (_b, customers) = load_text("customers.toml", CUSTOMERS);
    let (shop, customers) = (shop.unwrap(), customers.unwrap());
    assert_eq!(customers.sources.len(), 2);
    let mut plan = Plan {
        sources: Vec::new(),
        products: Vec::new(),
    };
    merge(&mut plan, shop, Sharing::Union).unwrap();
    merge(&mut plan, customers, Sharing::Union).unwrap();

    // orders, customers, items from SHOP; CUSTOMERS adds nothing new.
    let topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "shop.public.orders",
            "shop.public.customers",
            "shop.public.items"
        ]
    );
    assert_eq!(plan.products.len(), 2);
    // CUSTOMERS' root read its source 0 (clients) and its child source 1 (orders): renumbered.
    let root = &plan.products[1].root;
    assert_eq!(plan.sources[root.source].topic, "shop.public.customers");
    assert_eq!(
        plan.sources[root.children[0].source].topic,
        "shop.public.orders"
    );
    // SHOP's numbering is unchanged.
    let shop_root = &plan.products[0].root;
    assert_eq!(plan.sources[shop_root.source].topic, "shop.public.orders");
    assert_eq!(
        plan.sources[shop_root.children[0].source].topic,
        "shop.public.customers"
    );
}

#[test]
fn load_all_reads_a_folder_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b_shop.toml"), SHOP).unwrap();
    std::fs::write(dir.path().join("a_customers.toml"), CUSTOMERS).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a product").unwrap();
    let plan = load_all(&[dir.path().to_owned()]).unwrap();
    let names: Vec<&str> = plan.products.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["shop_customers", "shop_orders"]);
    let topics: Vec<&str> = plan.sources.iter().map(|s| s.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "shop.public.customers",
            "shop.public.orders",
            "shop.public.items"
        ]
    );

    let empty = tempfile::tempdir().unwrap();
    assert!(load_all(&[empty.path().to_owned()])
        .unwrap_err()
        .to_string()
        .contains("no product files"));
}

#[test]
fn merge_unites_the_columns_files_declare_of_a_topic() {
    // The same customers topic: declared in another order, without `email`, with `phone`.
    let other = CUSTOMERS.replace(
        r#"columns = { id = "int", name = "string", email = "string" }"#,
        r#"columns = { phone = "string", name = "string", id = "int" }"#,
    );
    let shop = || load_text("shop.toml", SHOP).1.unwrap();
    let customers = || load_text("customers.toml", &other).1.unwrap();
    let mut plan = Plan {
        sources: Vec::new(),
        products: Vec::new(),
    };
    merge(&mut plan, shop(), Sharing::Union).unwrap();
    let before = plan.products[0].clone();
    merge(&mut plan, customers(), Sharing::Union).unwrap();
    let shared = plan
        .sources
        .iter()
        .find(|s| s.topic == "shop.public.customers")
        .unwrap();
    assert_eq!(shared.column_names(), vec!["id", "name", "email", "phone"]);
    assert_eq!(plan.products[0], before, "the first product's numbers stay");
    // The second product's columns are renumbered to the shared source's.
    let root = &plan.products[1].root;
    assert_eq!(
        root.output,
        NodeOutput::Object(vec![
            OutField::Column {
                name: "id".into(),
                column: 0
            },
            OutField::Column {
                name: "name".into(),
                column: 1
            },
            OutField::Child {
                name: "orders".into(),
                child: 0
            },
        ])
    );
    assert_eq!(
        root.children[0].link.as_ref().unwrap().parent_columns,
        vec![0]
    );

    // A running job holds the rows already: fewer columns are fine, more are not.
    let mut running = Plan {
        sources: Vec::new(),
        products: Vec::new(),
    };
    merge(&mut running, shop(), Sharing::Running).unwrap();
    let message = merge(&mut running, customers(), Sharing::Running)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("topic shop.public.customers is declared differently in")
            && message.contains("customers.toml")
            && message.contains("shop.toml")
            && message.contains("the running job holds its rows without phone"),
        "{message}"
    );
    assert!(
        message.contains("`customers`") && message.contains("`clients`"),
        "{message}"
    );
    assert_eq!(running.products.len(), 1, "nothing changed");
    let fewer = other.replace(r#"phone = "string", "#, "");
    merge(
        &mut running,
        load_text("customers.toml", &fewer).1.unwrap(),
        Sharing::Running,
    )
    .unwrap();
    assert_eq!(
        running.sources[running.products[1].root.source].column_names(),
        vec!["id", "name", "email"]
    );
}

#[test]
fn merge_rejects_a_topic_declared_with_other_types_or_key() {
    // A different column type, or a different primary key, is different too.
    for (old, new, difference) in [
        (
            r#"total = "decimal(2)""#,
            r#"total = "decimal(3)""#,
            "`total` is decimal(2) there, decimal(3) here",
        ),
        (
            r#"primary_key = ["order_id"]"#,
            r#"primary_key = ["order_id", "customer_id"]"#,
            "the primary key is (order_id) there, (order_id, customer_id) here",
        ),
    ] {
        let (_b, customers) = load_text("customers.toml", &CUSTOMERS.replace(old, new));
        let mut plan = Plan {
            sources: Vec::new(),
            products: Vec::new(),
        };
        merge(
            &mut plan,
            load_text("shop.toml", SHOP).1.unwrap(),
            Sharing::Union,
        )
        .unwrap();
        let message = merge(&mut plan, customers.unwrap(), Sharing::Union)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("topic shop.public.orders is declared differently")
                && message.contains(difference),
            "{message}"
        );
    }
}

#[test]
fn merge_rejects_products_with_the_same_name_or_output_topic() {
    let mut plan = Plan {
        sources: Vec::new(),
        products: Vec::new(),
    };
    merge(
        &mut plan,
        load_text("shop.toml", SHOP).1.unwrap(),
        Sharing::Union,
    )
    .unwrap();
    let message = merge(
        &mut plan,
        load_text("again.toml", SHOP).1.unwrap(),
        Sharing::Union,
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("product name `shop_orders` of")
            && message.contains("again.toml is taken by")
            && message.contains("shop.toml"),
        "{message}"
    );
    let same_topic = CUSTOMERS.replace("shop.customers_doc", "shop.orders_doc");
    let message = merge(
        &mut plan,
        load_text("customers.toml", &same_topic).1.unwrap(),
        Sharing::Union,
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("output topic shop.orders_doc of product `shop_customers`")
            && message.contains("is the output topic of product `shop_orders`"),
        "{message}"
    );
    // A refused file changes nothing.
    assert_eq!(plan.products.len(), 1);
}

#[test]
fn every_file_is_checked_and_a_file_named_twice_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a_shop.toml"), SHOP).unwrap();
    std::fs::write(
        dir.path().join("b_bad.toml"),
        SHOP.replace(r#"qty = "int""#, r#"qty = "integr""#),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c_clash.toml"),
        CUSTOMERS.replace("shop.customers_doc", "shop.orders_doc"),
    )
    .unwrap();
    let folder = dir.path().to_path_buf();
    let again = dir.path().join(".").join("a_shop.toml");
    let (plan, errors) = load_each(&[folder.clone(), again]).unwrap();
    assert_eq!(plan.products.len(), 1, "a_shop loads once");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(format!("{:#}", errors[0]).contains("b_bad.toml:"));
    assert!(format!("{:#}", errors[1]).contains("c_clash.toml"));
    let message = format!("{:#}", load_all(&[folder]).unwrap_err());
    assert!(
        message.starts_with("2 product files have errors"),
        "{message}"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    // `é` is two bytes: the column is where an editor (and the caret) puts the wrong name.
    let text = shop_with(
        r#"fields = ["name", "email"]"#,
        r#"fields = [{ name = "prénom", column = "nme" }]"#,
    );
    let message = expect_error(
        &text,
        29,
        r#""nme""#,
        &["source `customers` has no column `nme`"],
    );
    assert!(message.contains(":29:39: "), "{message}");
}

#[test]
fn merge_lets_a_source_no_product_reads_any_more_take_a_new_declaration() {
    let (_a, shop) = load_text("shop.toml", SHOP);
    let mut plan = Plan {
        sources: Vec::new(),
        products: Vec::new(),
    };
    merge(&mut plan, shop.unwrap(), Sharing::Running).unwrap();
    let sources_before = plan.sources.len();
    // The product was removed from a running job: its sources stay declared but unused.
    plan.products.clear();
    let other = CUSTOMERS.replace(
        r#"columns = { id = "int", name = "string", email = "string" }"#,
        r#"columns = { id = "int", name = "string" }"#,
    );
    let (_b, customers) = load_text("customers.toml", &other);
    merge(&mut plan, customers.unwrap(), Sharing::Running).unwrap();
    assert_eq!(plan.sources.len(), sources_before, "ids are kept");
    let customers = plan
        .sources
        .iter()
        .find(|s| s.topic == "shop.public.customers")
        .unwrap();
    assert_eq!(customers.column_names(), vec!["id", "name"]);
}

/// The mistakes a new user makes writing a first product file (see README), each explained with
/// its line and how to fix it.
mod new_user {
    use super::*;

    #[test]
    fn a_misspelt_column_is_matched_to_the_right_one() {
        let text = shop_with(
            r#"fields = ["name", "email"]"#,
            r#"fields = ["nmae", "email"]"#,
        );
        expect_error(
            &text,
            29,
            r#""nmae""#,
            &[
                "source `customers` has no column `nmae`",
                "did you mean `name`?",
            ],
        );
        let text = shop_with(
            r#"primary_key = ["order_id", "line"]"#,
            r#"primary_key = ["order_id", "line_no"]"#,
        );
        expect_error(&text, 17, r#""line_no""#, &["did you mean `line`?"]);
    }

    #[test]
    fn join_sides_swapped() {
        let text = shop_with(
            r#"on = { customer_id = "id" }"#,
            r#"on = { id = "customer_id" }"#,
        );
        expect_error(
            &text,
            28,
            "id =",
            &[
                "`on` names `id`, which is not a column of the parent source `orders`",
                "did you swap them? write on = { customer_id = \"id\" }",
            ],
        );
    }

    #[test]
    fn a_join_of_an_int_with_a_string() {
        let text = shop_with(
            r#"columns = { id = "int", name = "string", email = "string" }"#,
            r#"columns = { id = "string", name = "string", email = "string" }"#,
        );
        expect_error(
            &text,
            28,
            r#""id""#,
            &[
                "cannot join `orders.customer_id` (int) with `customers.id` (string)",
                "join columns must have the same type",
            ],
        );
    }

    #[test]
    fn order_by_a_column_that_is_not_a_field() {
        let text = shop_with(
            r#"fields = ["sku", "qty", "line"]"#,
            r#"fields = ["sku", "qty"]"#,
        );
        expect_error(
            &text,
            37,
            r#""line""#,
            &[
                "`line` is a column of `items` but not one of the relation's fields",
                "add it to `fields`",
            ],
        );
        let text = shop_with(r#"order_by = ["line"]"#, r#"order_by = ["lin"]"#);
        expect_error(&text, 37, r#""lin""#, &["did you mean `line`?"]);
    }

    #[test]
    fn sql_type_names_and_typos() {
        let text = shop_with(r#"sku = "string""#, r#"sku = "varchar(64)""#);
        expect_error(
            &text,
            18,
            r#""varchar"#,
            &["`varchar(64)` is written `string` here"],
        );
        let text = shop_with(r#"qty = "int""#, r#"qty = "bigint""#);
        expect_error(
            &text,
            18,
            r#""bigint""#,
            &["`bigint` is written `int` here"],
        );
        let text = shop_with(r#"qty = "int""#, r#"qty = "itn""#);
        expect_error(&text, 18, r#""itn""#, &["did you mean `int`?"]);
    }

    #[test]
    fn a_topic_where_a_source_belongs() {
        let text = shop_with(
            r#"source = "items"
on = { order_id = "order_id" }
fields"#,
            r#"source = "shop.public.items"
on = { order_id = "order_id" }
fields"#,
        );
        expect_error(
            &text,
            34,
            r#""shop.public.items""#,
            &["that is the topic of source `items`: write source = \"items\""],
        );
    }

    #[test]
    fn missing_keys_say_what_to_write() {
        let text = shop_with("primary_key = [\"id\"]\n", "");
        expect_error(
            &text,
            5,
            "[sources.customers]",
            &["missing field `primary_key`", "add primary_key = [\"id\"]"],
        );
        let text = shop_with("name = \"customer\"\n", "");
        expect_error(
            &text,
            24,
            "[[document.relations]]",
            &[
                "missing field `name`",
                "the field this relation becomes in its parent",
            ],
        );
        let text = shop_with("cardinality = \"one\"\n", "");
        expect_error(
            &text,
            24,
            "[[document.relations]]",
            &["cardinality = \"many\" (a list of items) or \"one\""],
        );
    }

    #[test]
    fn misspelt_keys_and_a_string_for_a_list() {
        let text = shop_with(r#"order_by = ["line"]"#, r#"orderby = ["line"]"#);
        expect_error(
            &text,
            37,
            "orderby",
            &["unknown field `orderby`", "did you mean `order_by`?"],
        );
        let text = shop_with(r#"fields = ["name", "email"]"#, r#"fields = "name""#);
        expect_error(
            &text,
            29,
            r#""name""#,
            &["expected a sequence", "fields = [\"name\"]"],
        );
    }
}
