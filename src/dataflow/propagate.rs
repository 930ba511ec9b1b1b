//! Which documents a change may have changed: from each changed row of a node's source (its old
//! and its new version), up its links to the roots above it. A row of a nested node changes the
//! documents of the parent rows whose link columns equal its own (found through the parent
//! source's index on them, or by primary key), and so on up to the root; a root row changes its
//! own document. Only hashes travel, so a collision may name a root that did not change (the
//! sink writes nothing for it); no changed root is missed.
//!
//! Changes are followed only after the product's release: until then the hydration builds every
//! document anyway, so the rows read while catching up are not followed at all.

use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::trace::{Cursor, Navigable};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concatenate};
use timely::dataflow::Stream;

use super::drive::{Dirty, Readiness};
use super::index::{columns_hash, Index};
use super::lookup::lookup;
use super::rows::Rows;
use super::tree::{Finder, NodeId, Tree};
use super::Time;
use crate::row::{Row, RowRef};

/// The arrangements propagation reads: each source's rows, and indexes.
pub trait Arrangements<'s> {
    fn rows(&mut self, source: crate::plan::SourceId) -> Rows<'s>;
    fn index(&mut self, index: &crate::plan::KeyedArrangement) -> Index<'s>;
}

/// The dirty roots of `tree`'s product: of every node, the roots above its rows changed in the
/// columns `used` (by node, see [`Tree::used_columns`]).
pub fn propagate<'s>(
    tree: &Rc<Tree>,
    used: &[Vec<usize>],
    control: &Stream<'s, Time, Vec<Readiness>>,
    arrangements: &mut impl Arrangements<'s>,
) -> Stream<'s, Time, Vec<Dirty>> {
    let scope = control.scope();
    let mut dirty = Vec::new();
    for (node, (tree_node, used)) in tree.nodes.iter().zip(used).enumerate() {
        let rows = arrangements.rows(tree_node.node.source);
        let name = format!("Changed({})", tree_node.node.path);
        if node == 0 {
            let key = tree_node.key.clone();
            dirty.push(changes(
                rows,
                control.clone(),
                &name,
                used.clone(),
                move |hash, row, out| {
                    let mut bytes = Vec::new();
                    let key = row.project(&key, &mut bytes).then(|| Row::from(bytes));
                    out.push(Dirty {
                        hash,
                        key,
                        weight: 1,
                    });
                },
            ));
            continue;
        }
        let columns = link_columns(tree_node);
        let mut scratch = Vec::new();
        let links = changes(
            rows,
            control.clone(),
            &name,
            used.clone(),
            move |_hash, row, out| {
                if let Some(link) = columns_hash(row, &columns, &mut scratch) {
                    out.push((link, 1));
                }
            },
        );
        dirty.push(up(tree, node, links, arrangements));
    }
    scope.concatenate(dirty)
}

/// From the link hashes of changed rows of `node`, each with how many rows the change has
/// reached so far (its weight), the dirty roots above them.
fn up<'s>(
    tree: &Rc<Tree>,
    node: NodeId,
    links: Stream<'s, Time, Vec<(u64, u64)>>,
    arrangements: &mut impl Arrangements<'s>,
) -> Stream<'s, Time, Vec<Dirty>> {
    let tree_node = &tree.nodes[node];
    let parent = tree_node.parent.expect("nested nodes have parents");
    let path = &tree_node.node.path;
    // The primary-key hashes of the parent rows: a change reaching many parents weighs more.
    let parents = match tree_node
        .find_parents
        .as_ref()
        .expect("nested nodes have links")
    {
        Finder::ByKey(_) => links,
        Finder::ByIndex(index) => lookup(
            links,
            arrangements.index(index),
            &format!("Parents({path})"),
            |weight: &u64, keys: &[&u64], out| {
                let weight = weight.saturating_mul(keys.len() as u64);
                out.extend(keys.iter().map(|key| (**key, weight)));
            },
        ),
    };
    if parent == 0 {
        return parents.map(|(hash, weight)| Dirty {
            hash,
            key: None,
            weight,
        });
    }
    // A nested parent: its rows' own links, one level up.
    let parent_node = &tree.nodes[parent];
    let columns = link_columns(parent_node);
    let mut scratch = Vec::new();
    let links = lookup(
        parents,
        arrangements.rows(parent_node.node.source),
        &format!("ParentRows({path})"),
        move |weight: &u64, rows: &[RowRef<'_>], out| {
            for &row in rows {
                if let Some(link) = columns_hash(row, &columns, &mut scratch) {
                    out.push((link, *weight));
                }
            }
        },
    );
    up(tree, parent, links, arrangements)
}

/// Of one key's `updates` (time, version, diff; sorted), the versions changed at each time,
/// once each: those whose used columns' values (`same` compares two versions' values) do not
/// add up to zero at that time. A row replaced by one equal in them is not changed.
fn visible(
    updates: &[(Time, usize, isize)],
    same: impl Fn(usize, usize) -> bool,
) -> Vec<(Time, usize)> {
    let mut changed = Vec::new();
    for at in updates.chunk_by(|a, b| a.0 == b.0) {
        for &(t, version, _) in at {
            let net: isize = at
                .iter()
                .filter(|&&(_, other, _)| same(version, other))
                .map(|&(_, _, d)| d)
                .sum();
            if net != 0 && changed.last() != Some(&(t, version)) {
                changed.push((t, version));
            }
        }
    }
    changed
}

/// The columns of a nested node's rows that its link matches with its parent's.
fn link_columns(node: &super::tree::TreeNode) -> Vec<usize> {
    let link = node.link.as_ref().expect("nested nodes have links");
    link.child_columns.clone()
}

/// For each update of `rows` after the product's release that changes the `used` columns,
/// `logic(key hash, row, output)`, at the update's time. `control` tells the release (see
/// [`Readiness`]): an update at or before it is already in the hydration. A row replaced at a
/// time by one equal in the `used` columns (an update of columns no document reads) is not
/// followed: the documents above it would be rebuilt unchanged.
fn changes<'s, O, L>(
    rows: Rows<'s>,
    control: Stream<'s, Time, Vec<Readiness>>,
    name: &str,
    used: Vec<usize>,
    mut logic: L,
) -> Stream<'s, Time, Vec<O>>
where
    O: Clone + 'static,
    L: FnMut(u64, RowRef<'_>, &mut Vec<O>) + 'static,
{
    let peers = control.scope().peers();
    rows.stream
        .binary_frontier::<_, CapacityContainerBuilder<Vec<O>>, _, _, _, _>(
            control,
            Pipeline,
            Exchange::new(|c: &Readiness| match c {
                Readiness::CaughtUp { to } | Readiness::Loaded { to } => *to,
            }),
            name,
            move |_capability, _info| {
                let mut messages = 0;
                let mut release: Time = 0;
                // Updates whose release is not decided yet, by time.
                let mut waiting: BTreeMap<Time, (Capability<Time>, Vec<O>)> = BTreeMap::new();
                let mut out = Vec::new();
                // One key's versions in a batch (each row with the range of its used columns'
                // bytes in `selected`), and their updates (time, version, diff).
                let mut selected = Vec::new();
                let mut updates: Vec<(Time, usize, isize)> = Vec::new();
                move |(spans, _), (control, control_frontier), output| {
                    control.for_each(|cap, data| {
                        if let Some(&time) = cap.least() {
                            messages += data.len();
                            release = release.max(time);
                        }
                    });
                    // Every worker's two messages: the release is known.
                    let released = (messages == 2 * peers).then_some(release);
                    let before = control_frontier.frontier().first().copied();
                    // Without the release, an update not after the control messages still to
                    // come is not after the release either (it is the latest of them); with no
                    // control message to come, there is none.
                    let followed = |t: Time| match (released, before) {
                        (Some(release), _) => Some(t > release),
                        (None, Some(b)) if t > b => None,
                        (None, _) => Some(false),
                    };
                    spans.for_each(|cap, data| {
                        for span in data.drain(..) {
                            // A span whose times are all before the release (the rows of a
                            // trace a product imports, while it hydrates) is skipped whole.
                            let last = span.upper().elements().first().map(|u| u.saturating_sub(1));
                            if last.is_some_and(|t| followed(t) == Some(false)) {
                                continue;
                            }
                            let Some(batch) = span.inner else { continue };
                            let mut cursor = batch.cursor();
                            let mut versions = Vec::new();
                            while let Some(key) = cursor.get_key(&batch) {
                                versions.clear();
                                selected.clear();
                                updates.clear();
                                while let Some(row) = cursor.get_val(&batch) {
                                    let start = selected.len();
                                    row.select(&used, &mut selected);
                                    let version = versions.len();
                                    versions.push((row, start..selected.len()));
                                    cursor
                                        .map_times(&batch, |t, d| updates.push((*t, version, *d)));
                                    cursor.step_val(&batch);
                                }
                                updates.sort_unstable();
                                for (t, version) in visible(&updates, |a, b| {
                                    selected[versions[a].1.clone()]
                                        == selected[versions[b].1.clone()]
                                }) {
                                    let row = versions[version].0;
                                    match followed(t) {
                                        Some(false) => {}
                                        Some(true) => {
                                            logic(*key, row, &mut out);
                                            output
                                                .session(&cap.delayed(&t, 0))
                                                .give_iterator(out.drain(..));
                                        }
                                        None => {
                                            let entry = waiting.entry(t).or_insert_with(|| {
                                                (cap.delayed(&t, 0), Vec::new())
                                            });
                                            logic(*key, row, &mut entry.1);
                                        }
                                    }
                                }
                                cursor.step_key(&batch);
                            }
                        }
                    });
                    let decided: Vec<Time> = waiting
                        .keys()
                        .copied()
                        .take_while(|&t| followed(t).is_some())
                        .collect();
                    for t in decided {
                        let (cap, updates) = waiting.remove(&t).expect("listed");
                        if followed(t) == Some(true) && !updates.is_empty() {
                            output.session(&cap).give_iterator(updates.into_iter());
                        }
                    }
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::visible;

    /// Versions 0 and 1 have equal used columns, version 2 differs from both.
    fn same(a: usize, b: usize) -> bool {
        (a == 2) == (b == 2)
    }

    #[test]
    fn a_row_replaced_by_one_equal_in_the_used_columns_is_not_changed() {
        // At 5, version 0 is replaced by 1 (equal in the used columns): nothing changed.
        assert_eq!(visible(&[(5, 0, -1), (5, 1, 1)], same), vec![]);
        // At 5, version 0 is replaced by 2: both are changes (the old row's parents and the
        // new row's may differ).
        assert_eq!(
            visible(&[(5, 0, -1), (5, 2, 1)], same),
            vec![(5, 0), (5, 2)]
        );
        // Inserted at 3, replaced by an equal row at 5: the insert is a change, the update not.
        assert_eq!(
            visible(&[(3, 0, 1), (5, 0, -1), (5, 1, 1)], same),
            vec![(3, 0)]
        );
        // A delete alone, and an insert alone, are changes.
        assert_eq!(visible(&[(7, 1, -1)], same), vec![(7, 1)]);
        assert_eq!(visible(&[(7, 2, 1)], same), vec![(7, 2)]);
        // A version with two updates at one time is listed once.
        assert_eq!(visible(&[(7, 2, 1), (7, 2, 1)], same), vec![(7, 2)]);
    }
}
