//! Warnings about product files that are valid but probably not what was meant: a relation of
//! cardinality `one` whose `on` can match several rows and that says nothing about which one to
//! nest, and a declared source that nothing uses (it is not read). `denorm check` prints them and
//! `denorm run` logs them; neither fails on them.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use super::Plan;
use crate::plan::spec::{self, Cardinality, ProductFile, RelationSpec, SourceText};

/// A warning with its place in a product file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub place: String,
    pub message: String,
    pub excerpt: String,
    pub hint: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: warning: {}\n{}\n  = help: {}",
            self.place, self.message, self.excerpt, self.hint
        )
    }
}

/// The warnings of every product file of a (checked) plan.
pub fn lint(plan: &Plan) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for product in &plan.products {
        let Ok(text) = SourceText::read(Path::new(&product.file)) else {
            continue;
        };
        if let Ok(file) = spec::parse(&text) {
            warnings.extend(lint_file(&text, &file));
        }
    }
    warnings
}

/// The warnings of one parsed product file.
pub fn lint_file(text: &SourceText, file: &ProductFile) -> Vec<Warning> {
    let warn = |offset: usize, message: String, hint: String| {
        let warning = Warning {
            place: text.locate(offset),
            message,
            excerpt: text.excerpt(offset),
            hint,
        };
        (offset, warning)
    };
    let mut warnings = Vec::new();
    let mut used = BTreeSet::new();
    used.insert(file.document.source.get_ref().as_str());
    let mut stack: Vec<(&str, &RelationSpec)> = file
        .document
        .relations
        .iter()
        .map(|r| (file.document.source.get_ref().as_str(), r))
        .collect();
    while let Some((parent, rel)) = stack.pop() {
        used.insert(rel.source.get_ref().as_str());
        if let Some(through) = &rel.through {
            used.insert(through.source.get_ref().as_str());
        }
        if *rel.cardinality.get_ref() == Cardinality::One {
            // The rows matched by `on` are those of the link table with `through`.
            let (matched, on) = match &rel.through {
                Some(t) => (t.source.get_ref(), &t.on),
                None => (rel.source.get_ref(), &rel.on),
            };
            let child_columns: Vec<&str> = on
                .get_ref()
                .values()
                .map(|c| c.get_ref().as_str())
                .collect();
            if let Some(source) = file.sources.get(matched) {
                let key: Vec<&str> = source
                    .get_ref()
                    .primary_key
                    .get_ref()
                    .iter()
                    .map(|k| k.get_ref().as_str())
                    .collect();
                if !key.iter().all(|k| child_columns.contains(k)) {
                    let (first, choose) = if rel.order_by.is_empty() {
                        (
                            "the smallest item".to_owned(),
                            "to choose which one is nested, add order_by; if the join columns are unique \
                             anyway, ignore this"
                                .to_owned(),
                        )
                    } else {
                        let order: Vec<&str> =
                            rel.order_by.iter().map(|o| o.get_ref().as_str()).collect();
                        (
                            format!("the first by order_by ({})", order.join(", ")),
                            "if that one is what you want (say, the latest), or the join columns are unique \
                             anyway, ignore this"
                                .to_owned(),
                        )
                    };
                    warnings.push(warn(
                        rel.cardinality.span().start,
                        format!(
                            "relation `{}` is `one`, but several `{matched}` rows can match one `{parent}` row: \
                             `on` joins on {matched}({}), not on its primary key ({}); only one, {first}, is \
                             nested",
                            rel.name.get_ref(),
                            child_columns.join(", "),
                            key.join(", ")
                        ),
                        format!(
                            "if a `{parent}` row can have several `{matched}` rows and you want them all, write \
                             cardinality = \"many\" for a list; {choose}"
                        ),
                    ));
                }
            }
        }
        stack.extend(
            rel.relations
                .iter()
                .map(|r| (rel.source.get_ref().as_str(), r)),
        );
    }
    for (name, source) in &file.sources {
        if !used.contains(name.as_str()) {
            let header = format!("[sources.{name}]");
            let offset = text
                .text
                .find(&header)
                .unwrap_or(source.get_ref().topic.span().start);
            warnings.push(warn(
                offset,
                format!(
                    "source `{name}` is declared but the document does not use it: this product does not read it"
                ),
                format!("nest it with a relation (source = \"{name}\"), or remove it"),
            ));
        }
    }
    warnings.sort_by_key(|(offset, _)| *offset);
    warnings.into_iter().map(|(_, w)| w).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(text: &str) -> Vec<Warning> {
        let text = SourceText {
            path: "shop.toml".into(),
            text: text.to_owned(),
        };
        let file = spec::parse(&text).expect("parses");
        lint_file(&text, &file)
    }

    const SHOP: &str = r#"[product]
name = "p"
output_topic = "out"

[sources.customers]
topic = "db.customers"
primary_key = ["id"]
columns = { id = "int", name = "string" }

[sources.orders]
topic = "db.orders"
primary_key = ["id"]
columns = { id = "int", customer_id = "int" }

[sources.payments]
topic = "db.payments"
primary_key = ["customer_id"]
columns = { customer_id = "int", verified = "bool" }

[document]
source = "customers"
fields = ["id", "name"]

[[document.relations]]
name = "orders"
cardinality = "many"
source = "orders"
on = { id = "customer_id" }
fields = ["id"]

[[document.relations]]
name = "verified"
cardinality = "one"
source = "payments"
on = { id = "customer_id" }
value = "verified"
"#;

    #[test]
    fn a_well_made_file_has_no_warnings() {
        assert_eq!(warnings(SHOP), vec![]);
    }

    #[test]
    fn one_on_a_many_relation_is_pointed_at() {
        let text = SHOP.replacen("cardinality = \"many\"", "cardinality = \"one\"", 1);
        let w = warnings(&text);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(w[0].place.ends_with("shop.toml:26:15"), "{}", w[0]);
        assert!(
            w[0].message
                .contains("several `orders` rows can match one `customers` row")
                && w[0]
                    .message
                    .contains("orders(customer_id), not on its primary key (id)"),
            "{}",
            w[0]
        );
        assert!(w[0].hint.contains("cardinality = \"many\""), "{}", w[0]);
        assert!(
            w[0].message
                .contains("only one, the smallest item, is nested"),
            "{}",
            w[0]
        );
        // With order_by, which one is nested is chosen; the warning says so.
        let chosen = text.replacen(
            "fields = [\"id\"]",
            "fields = [\"id\"]\norder_by = [\"id\"]",
            1,
        );
        let w = warnings(&chosen);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(
            w[0].message
                .contains("only one, the first by order_by (id), is nested")
                && w[0].hint.contains("ignore this"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn an_unused_source_is_pointed_at() {
        let text = SHOP.replacen(
            "[document]",
            "[sources.refunds]\ntopic = \"db.refunds\"\nprimary_key = [\"id\"]\ncolumns = { id = \"int\" }\n\n[document]",
            1,
        );
        let w = warnings(&text);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(w[0].place.ends_with("shop.toml:20:1"), "{}", w[0]);
        assert!(
            w[0].message.contains("source `refunds` is declared but"),
            "{}",
            w[0]
        );
        assert!(w[0].to_string().contains("| [sources.refunds]"), "{}", w[0]);
    }
}
