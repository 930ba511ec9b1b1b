//! The generator against the decoder: deterministic bytes, every record decodes to the change it
//! stands for, joins match, every kind of change happens, and the summary counts what was emitted.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value as Json;

use super::model::{MS0, MS_SPAN};
use super::*;
use crate::decode::decode;
use crate::plan;

fn github() -> Plan {
    plan::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dataflows/github_user_profile.toml"
    )))
    .expect("the example loads")
}

/// Every record with what it means.
fn run(plan: &Plan, opts: &GenOptions) -> (Vec<Record>, Vec<Change>, GenSummary) {
    let (mut records, mut changes) = (Vec::new(), Vec::new());
    let summary = generate_traced(plan, opts, |r, c| {
        records.push(r);
        changes.push(c.clone());
        Ok(())
    })
    .expect("generates");
    (records, changes, summary)
}

fn source_id(plan: &Plan, name: &str) -> SourceId {
    plan.sources
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no source {name}"))
}

fn column(plan: &Plan, source: SourceId, name: &str) -> usize {
    plan.sources[source]
        .columns
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

/// The Debezium op of a record (`None` for a tombstone).
fn op_of(record: &Record) -> Option<String> {
    let json: Json = serde_json::from_str(record.value.as_deref()?).expect("values are JSON");
    let payload = if json.get("schema").is_some() {
        &json["payload"]
    } else {
        &json
    };
    Some(
        payload
            .get("op")
            .or_else(|| payload.get("__op"))
            .and_then(Json::as_str)
            .expect("an op")
            .to_owned(),
    )
}

/// Decodes every record (which must be the intended change) and applies it: the source tables a
/// consumer ends with.
fn apply(plan: &Plan, records: &[Record], changes: &[Change]) -> Vec<HashMap<Row, Row>> {
    let mut tables = vec![HashMap::new(); plan.sources.len()];
    for (i, (record, intended)) in records.iter().zip(changes).enumerate() {
        let decoded = decode(
            &plan.sources[record.source],
            record.key.as_deref().map(str::as_bytes),
            record.value.as_deref().map(str::as_bytes),
        )
        .unwrap_or_else(|e| panic!("record {i} does not decode: {e}\n{record:?}"));
        assert_eq!(
            &decoded, intended,
            "record {i} decodes to another change:\n{record:?}"
        );
        match decoded {
            Change::Upsert { key, row } => {
                tables[record.source].insert(key.values().into(), row.values().into());
            }
            Change::Delete { key } => {
                tables[record.source].remove(&key.values().into());
            }
            Change::Truncate => panic!("the generator never truncates"),
        }
    }
    tables
}

/// The fraction of `child` rows whose `child_cols` equal the `parent_cols` of some `parent` row.
fn matching(
    tables: &[HashMap<Row, Row>],
    child: SourceId,
    child_cols: &[usize],
    parent: SourceId,
    parent_cols: &[usize],
) -> f64 {
    let parents: HashSet<Vec<Value>> = tables[parent]
        .values()
        .map(|r| parent_cols.iter().map(|&c| r[c].clone()).collect())
        .collect();
    let rows = &tables[child];
    let hits = rows
        .values()
        .filter(|r| parents.contains(&child_cols.iter().map(|&c| r[c].clone()).collect::<Vec<_>>()))
        .count();
    hits as f64 / rows.len().max(1) as f64
}

fn check_summary(
    plan: &Plan,
    opts: &GenOptions,
    records: &[Record],
    tables: &[HashMap<Row, Row>],
    summary: &GenSummary,
) {
    assert_eq!(summary.records, records.len());
    let mut per_source = vec![0; plan.sources.len()];
    let mut snapshot = vec![0; plan.sources.len()];
    let mut ops = OpCounts::default();
    for r in records {
        per_source[r.source] += 1;
        match op_of(r).as_deref() {
            None => ops.tombstones += 1,
            Some("r") => {
                ops.r += 1;
                snapshot[r.source] += 1;
            }
            Some("c") => ops.c += 1,
            Some("u") => ops.u += 1,
            Some("d") => ops.d += 1,
            Some(other) => panic!("unexpected op {other}"),
        }
    }
    assert_eq!(summary.per_source, per_source);
    assert_eq!(summary.snapshot_rows, snapshot);
    assert_eq!(summary.ops, ops);
    // Every delete is followed by a tombstone (the replay may cut one pair).
    assert!(ops.d.abs_diff(ops.tombstones) <= 1, "{ops:?}");
    let live: Vec<usize> = tables.iter().map(HashMap::len).collect();
    assert_eq!(summary.live_rows, live);

    let k = &summary.kinds;
    let kinds = [
        ("inserts", k.inserts),
        ("updates", k.updates),
        ("deletes", k.deletes),
        ("key_changes", k.key_changes),
        ("moves", k.moves),
        ("fan_out_updates", k.fan_out_updates),
        ("parent_first_deletes", k.parent_first_deletes),
        ("child_first_deletes", k.child_first_deletes),
        ("duplicates", k.duplicates),
        ("replays", k.replays),
    ];
    for (name, count) in kinds {
        assert!(count > 0, "no {name}: {k:?}");
    }
    assert_eq!(
        kinds.iter().map(|(_, n)| n).sum::<usize>(),
        opts.changes,
        "{k:?}"
    );
    assert_eq!(k.replays, 1);
    assert_eq!(summary.replayed_records, opts.changes / 100);
    // Duplicates and the replay emit records verbatim: some value text occurs twice.
    let mut seen = HashSet::new();
    assert!(
        records
            .iter()
            .filter_map(|r| r.value.as_deref())
            .any(|v| !seen.insert(v)),
        "no record was emitted twice"
    );
    // Every source exercises every value encoding.
    for s in 0..plan.sources.len() {
        let values: Vec<&str> = records
            .iter()
            .filter(|r| r.source == s)
            .filter_map(|r| r.value.as_deref())
            .collect();
        assert!(
            values.iter().any(|v| v.starts_with(r#"{"schema""#)),
            "source {s}: no schema envelope"
        );
        assert!(
            values.iter().any(|v| v.starts_with(r#"{"before""#)),
            "source {s}: no plain envelope"
        );
        assert!(
            values.iter().any(|v| v.contains(r#""__deleted":"false""#)),
            "source {s}: no flattened row"
        );
    }
}

#[test]
fn deterministic_for_a_seed() {
    let plan = github();
    let opts = GenOptions {
        scale: 50,
        changes: 500,
        seed: 7,
    };
    let (a, _, sa) = run(&plan, &opts);
    let (b, _, sb) = run(&plan, &opts);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    let (c, _, _) = run(&plan, &GenOptions { seed: 8, ..opts });
    assert_ne!(a, c);
}

#[test]
fn github_records_decode_join_and_cover_every_change() {
    let plan = github();
    let opts = GenOptions {
        scale: 200,
        changes: 4000,
        seed: 42,
    };
    let (records, changes, summary) = run(&plan, &opts);
    let tables = apply(&plan, &records, &changes);
    check_summary(&plan, &opts, &records, &tables, &summary);

    let users = source_id(&plan, "users");
    let repos = source_id(&plan, "repos");
    let stars = source_id(&plan, "stars");
    let prs = source_id(&plan, "pull_requests");
    let payments = source_id(&plan, "payment_info");
    // Snapshot sizes: users = scale, stars 5x, repos and pull requests 1x, payment info 0.7x.
    let snap = |s| summary.snapshot_rows[s];
    assert_eq!(snap(users), 200);
    assert_eq!(snap(repos), 200);
    assert_eq!(snap(prs), 200);
    assert_eq!(snap(payments), 140);
    assert!(snap(stars) >= 990, "{}", snap(stars));

    let c = |s, name| column(&plan, s, name);
    let star_users = matching(
        &tables,
        stars,
        &[c(stars, "username")],
        users,
        &[c(users, "username")],
    );
    let star_repos = matching(
        &tables,
        stars,
        &[c(stars, "repo_owner"), c(stars, "repo_name")],
        repos,
        &[c(repos, "owner"), c(repos, "name")],
    );
    let pr_authors = matching(
        &tables,
        prs,
        &[c(prs, "author")],
        users,
        &[c(users, "username")],
    );
    let payment_users = matching(
        &tables,
        payments,
        &[c(payments, "id")],
        users,
        &[c(users, "id")],
    );
    eprintln!("stars → users {star_users:.3}, stars → repos {star_repos:.3}, pull requests → users {pr_authors:.3}, payments → users {payment_users:.3}");
    for (what, fraction) in [
        ("stars → users", star_users),
        ("stars → repos", star_repos),
        ("pull requests → users", pr_authors),
        ("payments → users", payment_users),
    ] {
        assert!(fraction > 0.85, "{what}: only {fraction:.3} match");
        assert!(fraction < 1.0, "{what}: nothing dangles");
    }
    // Cascading deletes and inserts balance: every source stays near its snapshot size.
    for (s, (&live, &snap)) in summary
        .live_rows
        .iter()
        .zip(&summary.snapshot_rows)
        .enumerate()
    {
        assert!(
            (snap * 6 / 10..=snap * 14 / 10).contains(&live),
            "source {s}: {live} rows after the changes, {snap} in the snapshot"
        );
    }
    // A few repos carry many stars.
    let mut per_repo: HashMap<(Value, Value), usize> = HashMap::new();
    for row in tables[stars].values() {
        *per_repo
            .entry((
                row[c(stars, "repo_owner")].clone(),
                row[c(stars, "repo_name")].clone(),
            ))
            .or_default() += 1;
    }
    let max = per_repo.values().max().copied().unwrap_or(0);
    let mean = tables[stars].len() as f64 / per_repo.len() as f64;
    assert!(
        max as f64 > 10.0 * mean,
        "stars per repo: max {max}, mean {mean:.1}"
    );
    // Some pull request authors are null (not a key column).
    assert!(changes.iter().zip(&records).any(|(ch, r)| r.source == prs
        && matches!(ch, Change::Upsert { row, .. } if row.values()[c(prs, "author")].is_null())));
}

/// A non-GitHub product: composite keys, a composite join, nesting four levels deep, every
/// column type.
const SHOP: &str = r#"
[product]
name = "customer_orders"
output_topic = "shop.customer_orders"

[sources.customers]
topic = "shop.sales.customers"
primary_key = ["region", "customer_no"]
columns = { region = "string", customer_no = "int", name = "string", vip = "bool", since = "date", profile = "json" }

[sources.orders]
topic = "shop.sales.orders"
primary_key = ["order_id"]
columns = { order_id = "int", region = "string", customer_no = "int", placed_at = "timestamp(us)", total = "decimal(2)", pickup = "time" }

[sources.lines]
topic = "shop.sales.order_lines"
primary_key = ["order_id", "line_no"]
columns = { order_id = "int", line_no = "int", sku = "string", quantity = "int", price = "decimal", weight = "float", shipped_at = "timestamp(ns)", discount = "decimal(4)" }

[sources.products]
topic = "shop.sales.products"
primary_key = ["sku"]
columns = { sku = "string", title = "string", added = "timestamp" }

[document]
source = "customers"
fields = ["region", "customer_no", "name", "vip", "since", "profile"]

[[document.relations]]
name = "orders"
cardinality = "many"
source = "orders"
on = { region = "region", customer_no = "customer_no" }
fields = ["order_id", "placed_at", "total", "pickup"]
order_by = ["placed_at"]

[[document.relations.relations]]
name = "lines"
cardinality = "many"
source = "lines"
on = { order_id = "order_id" }
fields = ["line_no", "quantity", "price", "weight", "shipped_at", "discount"]
order_by = ["line_no"]

[[document.relations.relations.relations]]
name = "product"
cardinality = "one"
source = "products"
on = { sku = "sku" }
fields = ["title", "added"]
"#;

#[test]
fn another_product_with_composite_keys_and_deep_nesting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shop.toml");
    std::fs::write(&path, SHOP).expect("write product file");
    let plan = plan::load(&path).expect("the shop product loads");
    let opts = GenOptions {
        scale: 150,
        changes: 3000,
        seed: 3,
    };
    let (records, changes, summary) = run(&plan, &opts);
    let tables = apply(&plan, &records, &changes);
    check_summary(&plan, &opts, &records, &tables, &summary);

    let customers = source_id(&plan, "customers");
    let orders = source_id(&plan, "orders");
    let lines = source_id(&plan, "lines");
    let products = source_id(&plan, "products");
    assert_eq!(summary.snapshot_rows[customers], 150);
    assert_eq!(summary.snapshot_rows[orders], 150);
    assert_eq!(summary.snapshot_rows[lines], 150);
    assert_eq!(
        summary.snapshot_rows[products], 105,
        "a one-to-one child on its whole key: 0.7x"
    );
    let c = |s, name| column(&plan, s, name);
    let order_customers = matching(
        &tables,
        orders,
        &[c(orders, "region"), c(orders, "customer_no")],
        customers,
        &[c(customers, "region"), c(customers, "customer_no")],
    );
    let line_orders = matching(
        &tables,
        lines,
        &[c(lines, "order_id")],
        orders,
        &[c(orders, "order_id")],
    );
    let product_lines = matching(
        &tables,
        products,
        &[c(products, "sku")],
        lines,
        &[c(lines, "sku")],
    );
    eprintln!("orders → customers {order_customers:.3}, lines → orders {line_orders:.3}, products → lines {product_lines:.3}");
    for (what, fraction) in [
        ("orders → customers", order_customers),
        ("lines → orders", line_orders),
        ("products → lines", product_lines),
    ] {
        assert!(fraction > 0.8, "{what}: only {fraction:.3} match");
    }
    // Several customers share a region (the first key column repeats), the pair is unique.
    let regions: HashSet<&Value> = tables[customers]
        .values()
        .map(|r| &r[c(customers, "region")])
        .collect();
    assert!(regions.len() < tables[customers].len());
    // Timestamps stay within 2020–2025 (sequence ones a little after 2020-01-01).
    let (lo, hi) = (MS0 * 1000, (MS0 + MS_SPAN) * 1000);
    for row in tables[orders].values() {
        if let Value::Timestamp(t) = row[c(orders, "placed_at")] {
            assert!((lo..hi).contains(&t), "{t}");
        }
    }
}

/// Relations that revisit a source (a self join, and a cycle people → teams → people).
const ORG: &str = r#"
[product]
name = "people"
output_topic = "org.people_doc"

[sources.people]
topic = "org.hr.people"
primary_key = ["id"]
columns = { id = "int", name = "string", manager_id = "int", team = "string", salary = "decimal(2)" }

[sources.teams]
topic = "org.hr.teams"
primary_key = ["team"]
columns = { team = "string", lead_id = "int", budget = "float" }

[document]
source = "people"
fields = ["id", "name", "salary"]

[[document.relations]]
name = "manager"
cardinality = "one"
source = "people"
on = { manager_id = "id" }
fields = ["name"]

[[document.relations]]
name = "team"
cardinality = "one"
source = "teams"
on = { team = "team" }
fields = ["team", "budget"]

[[document.relations.relations]]
name = "lead"
cardinality = "one"
source = "people"
on = { lead_id = "id" }
fields = ["name"]
"#;

#[test]
fn self_joins_and_cycles_generate_and_decode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("org.toml");
    std::fs::write(&path, ORG).expect("write product file");
    let plan = plan::load(&path).expect("the org product loads");
    let opts = GenOptions {
        scale: 100,
        changes: 1000,
        seed: 5,
    };
    let (records, changes, summary) = run(&plan, &opts);
    let tables = apply(&plan, &records, &changes);
    assert_eq!(summary.records, records.len());
    assert_eq!(
        summary.live_rows,
        tables.iter().map(HashMap::len).collect::<Vec<_>>()
    );
    let k = &summary.kinds;
    let total = k.inserts
        + k.updates
        + k.deletes
        + k.key_changes
        + k.moves
        + k.fan_out_updates
        + k.parent_first_deletes
        + k.child_first_deletes
        + k.duplicates
        + k.replays;
    assert_eq!(total, opts.changes);
}

#[test]
fn zero_scale_and_no_changes_are_fine() {
    let plan = github();
    let (records, _, summary) = run(
        &plan,
        &GenOptions {
            scale: 0,
            changes: 0,
            seed: 1,
        },
    );
    assert!(records.is_empty());
    assert_eq!(summary.records, 0);
    let opts = GenOptions {
        scale: 0,
        changes: 50,
        seed: 1,
    };
    let (records, changes, _) = run(&plan, &opts);
    apply(&plan, &records, &changes);
    assert!(!records.is_empty());
}

/// `cargo test --release --lib gen::tests::speed -- --ignored --nocapture`
#[test]
fn changes_alone_are_the_records_after_the_snapshot() {
    let plan = github();
    let opts = GenOptions {
        scale: 60,
        changes: 300,
        seed: 5,
    };
    let mut all = Vec::new();
    generate(&plan, &opts, |r| {
        all.push(r);
        Ok(())
    })
    .unwrap();
    let mut snapshot = Vec::new();
    generate(
        &plan,
        &GenOptions {
            changes: 0,
            ..opts.clone()
        },
        |r| {
            snapshot.push(r);
            Ok(())
        },
    )
    .unwrap();
    let mut changes = Vec::new();
    generate_changes(&plan, &opts, |r| {
        changes.push(r);
        Ok(())
    })
    .unwrap();
    assert!(!changes.is_empty());
    assert_eq!(snapshot.len() + changes.len(), all.len());
    assert_eq!(all[..snapshot.len()], snapshot[..]);
    assert_eq!(all[snapshot.len()..], changes[..]);
}

#[test]
fn the_uniform_edit_mix_spreads_fan_out_updates_over_the_targets() {
    let plan = github();
    let repos = source_id(&plan, "repos");
    let opts = GenOptions {
        scale: 1000,
        changes: 6000,
        seed: 5,
    };
    // Per mix: the snapshot, and how often each repository is updated afterwards.
    let edits = |mix| {
        let mut snapshot = Vec::new();
        generate_with(
            &plan,
            &GenOptions {
                changes: 0,
                ..opts.clone()
            },
            mix,
            true,
            |r| {
                snapshot.push(r);
                Ok(())
            },
        )
        .unwrap();
        let mut updates: HashMap<String, usize> = HashMap::new();
        let summary = generate_with(&plan, &opts, mix, false, |r| {
            if r.source == repos && op_of(&r).as_deref() == Some("u") {
                *updates.entry(r.key.unwrap()).or_default() += 1;
            }
            Ok(())
        })
        .unwrap();
        assert!(summary.kinds.fan_out_updates > 200, "{mix:?}: {summary:?}");
        let mut counts: Vec<usize> = updates.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        (snapshot, counts)
    };
    let (popular_snapshot, popular) = edits(EditMix::Popular);
    let (uniform_snapshot, uniform) = edits(EditMix::Uniform);
    assert_eq!(
        popular_snapshot, uniform_snapshot,
        "the mix changes only the changes"
    );
    // Zipf: the most popular repository takes up to ln 2 / ln 1001 = 10% of the fan-out updates
    // (24 of about 360 here); drawn uniformly, none takes more than a few.
    assert!(popular[0] >= 15, "{:?}", &popular[..5]);
    assert!(uniform[0] <= 8, "{:?}", &uniform[..5]);
    // (Plain updates edit repositories uniformly in both mixes.)
    assert!(
        uniform.len() > popular.len(),
        "{} {}",
        uniform.len(),
        popular.len()
    );
}

#[test]
#[ignore]
fn speed() {
    let plan = github();
    let scale = std::env::var("GEN_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    let changes = std::env::var("GEN_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let opts = GenOptions {
        scale,
        changes,
        seed: 1,
    };
    let start = std::time::Instant::now();
    let mut bytes = 0;
    let summary = generate(&plan, &opts, |r| {
        bytes += r.key.map_or(0, |k| k.len()) + r.value.map_or(0, |v| v.len());
        Ok(())
    })
    .expect("generates");
    eprintln!(
        "{} records, {} MB in {:?}\n{summary:#?}",
        summary.records,
        bytes / 1_000_000,
        start.elapsed()
    );
}
