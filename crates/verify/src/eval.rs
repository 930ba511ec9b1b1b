//! The expected documents of a product, from scratch: every input record replayed into a table
//! per source (upsert by primary key), then one document per row of the root source, built by
//! plain lookups. The semantics are the README's ("Product files", "Input", "Output semantics"):
//!
//! - a record upserts or deletes one primary key of every source reading its topic (records of
//!   one partition in offset order: the last one of a key wins), a truncate empties the source;
//! - a document is keyed by the JSON object of its root row's primary key columns, in key order;
//!   it holds the row's fields in declared order, then its relations in declared order;
//! - a relation's child rows are those whose `on` columns all equal the parent's, none of them
//!   null; with `through`, the link rows are matched so, and each stands for the item of its
//!   target (the first, in the relation's order, when several match), or is left out when none
//!   does;
//! - items are sorted by the `order_by` fields, each ascending (nulls first) or descending
//!   (nulls last), then by the whole item (see [`crate::value`] for the order); duplicates are
//!   kept; `many` is the list (`[]` when empty), `one` the first item or `null`.

use std::collections::{BTreeMap, HashMap};

use crate::decode::{self, Change};
use crate::product::{Cardinality, Item, Object, Product, Relation};
use crate::value::Val;

/// A source's rows: primary key → row (one value per declared column).
pub type Table = BTreeMap<Vec<Val>, Vec<Val>>;

/// The tables of one product, as the records replayed so far leave them.
pub struct Replay<'p> {
    product: &'p Product,
    tables: Vec<Table>,
}

impl<'p> Replay<'p> {
    pub fn new(product: &'p Product) -> Replay<'p> {
        Replay {
            product,
            tables: vec![Table::new(); product.sources.len()],
        }
    }

    /// Whether the product reads `topic`.
    pub fn reads(&self, topic: &str) -> bool {
        self.product.sources.iter().any(|s| s.topic == topic)
    }

    /// Applies one record of `topic` to every source that reads it. The error says why the
    /// record could not be decoded (the table is then left as it was).
    pub fn apply(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let mut first_error = None;
        for (source, table) in self.product.sources.iter().zip(&mut self.tables) {
            if source.topic != topic {
                continue;
            }
            match decode::decode(source, key, value) {
                Ok(Change::Upsert { key, row }) => {
                    table.insert(key, row);
                }
                Ok(Change::Delete { key }) => {
                    table.remove(&key);
                }
                Ok(Change::Truncate) => table.clear(),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The table of each source, in the product's source order.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// Every expected document: its key (primary key column names and values) and the document.
    pub fn documents(&self) -> Vec<(Vec<(String, Val)>, Val)> {
        documents(self.product, &self.tables)
    }
}

/// The documents of `product` over `tables` (one per source, in the product's source order).
pub fn documents(product: &Product, tables: &[Table]) -> Vec<(Vec<(String, Val)>, Val)> {
    let evaluator = Evaluator::new(product, tables);
    let root = &product.sources[product.root.source];
    tables[product.root.source]
        .iter()
        .map(|(key, row)| {
            let names = root.key.iter().map(|&k| root.columns[k].name.clone());
            (
                names.zip(key.iter().cloned()).collect(),
                evaluator.object(&product.root, row),
            )
        })
        .collect()
}

type Row = Vec<Val>;

/// Rows of one source by the values of some of their columns (rows with a null there left out).
type Index<'t> = BTreeMap<Vec<Val>, Vec<&'t Row>>;

struct Evaluator<'t> {
    tables: &'t [Table],
    /// By (source, columns).
    indexes: HashMap<(usize, Vec<usize>), Index<'t>>,
}

impl<'t> Evaluator<'t> {
    fn new(product: &Product, tables: &'t [Table]) -> Evaluator<'t> {
        let mut evaluator = Evaluator {
            tables,
            indexes: HashMap::new(),
        };
        evaluator.index_object(&product.root);
        evaluator
    }

    fn index_object(&mut self, object: &Object) {
        for relation in &object.relations {
            if let Some(link) = &relation.through {
                self.index(link.source, link.on.iter().map(|(_, c)| *c).collect());
            }
            self.index(
                relation.source,
                relation.on.iter().map(|(_, c)| *c).collect(),
            );
            if let Item::Object(child) = &relation.item {
                self.index_object(child);
            }
        }
    }

    fn index(&mut self, source: usize, columns: Vec<usize>) {
        let tables = self.tables;
        self.indexes
            .entry((source, columns))
            .or_insert_with_key(|(_, columns)| {
                let mut index: Index<'t> = BTreeMap::new();
                for row in tables[source].values() {
                    let key: Vec<Val> = columns.iter().map(|&c| row[c].clone()).collect();
                    if !key.iter().any(Val::is_null) {
                        index.entry(key).or_default().push(row);
                    }
                }
                index
            });
    }

    /// The rows of `source` whose columns `on.1` equal the columns `on.0` of `parent`.
    fn matching(&self, source: usize, on: &[(usize, usize)], parent: &Row) -> &[&'t Row] {
        let key: Vec<Val> = on.iter().map(|(p, _)| parent[*p].clone()).collect();
        if key.iter().any(Val::is_null) {
            return &[];
        }
        let columns: Vec<usize> = on.iter().map(|(_, c)| *c).collect();
        self.indexes[&(source, columns)]
            .get(&key)
            .map_or(&[], Vec::as_slice)
    }

    fn object(&self, object: &Object, row: &Row) -> Val {
        let mut fields: Vec<(String, Val)> = object
            .fields
            .iter()
            .map(|(name, column)| (name.clone(), row[*column].clone()))
            .collect();
        for relation in &object.relations {
            let items = self.items(relation, row);
            let slot = match relation.cardinality {
                Cardinality::Many => Val::List(items),
                Cardinality::One => items.into_iter().next().unwrap_or(Val::Null),
            };
            fields.push((relation.name.clone(), slot));
        }
        Val::Object(fields)
    }

    fn item(&self, relation: &Relation, row: &Row) -> Val {
        match &relation.item {
            Item::Value(column) => row[*column].clone(),
            Item::Object(object) => self.object(object, row),
        }
    }

    /// The sorted items of `relation` for one parent row.
    fn items(&self, relation: &Relation, parent: &Row) -> Vec<Val> {
        let mut items: Vec<Val> = match &relation.through {
            None => self
                .matching(relation.source, &relation.on, parent)
                .iter()
                .map(|row| self.item(relation, row))
                .collect(),
            Some(link) => self
                .matching(link.source, &link.on, parent)
                .iter()
                .filter_map(|link_row| {
                    let mut targets: Vec<Val> = self
                        .matching(relation.source, &relation.on, link_row)
                        .iter()
                        .map(|row| self.item(relation, row))
                        .collect();
                    sort(&mut targets, &relation.order_by);
                    targets.into_iter().next()
                })
                .collect(),
        };
        sort(&mut items, &relation.order_by);
        items
    }
}

/// Sorts items by the `order_by` fields, each in its direction, then by the whole item.
pub fn sort(items: &mut [Val], order_by: &[(String, bool)]) {
    items.sort_by(|a, b| {
        for (name, descending) in order_by {
            let ordering = a.field(name).cmp(&b.field(name));
            let ordering = if *descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering.is_ne() {
                return ordering;
            }
        }
        a.cmp(b)
    });
}
