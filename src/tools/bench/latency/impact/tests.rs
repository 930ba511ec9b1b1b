//! Tests of the impact of changes: each generated change's documents against verify's evaluator.

use std::collections::HashMap;

use super::*;
use crate::tools::gen::{generate, GenOptions};

/// Every document by denorm-verify's own evaluator: canonical key → digest.
fn verify_documents(replay: &denorm_verify::eval::Replay) -> HashMap<String, u64> {
    replay
        .documents()
        .into_iter()
        .map(|(key, doc)| {
            let key = Json::Object(key.into_iter().map(|(n, v)| (n, v.to_json())).collect());
            (key.canonical(), json_digest(&doc.to_json()))
        })
        .collect()
}

/// Replays generated records change by change: the documents each change changes are exactly
/// those whose document (by verify's evaluator, rebuilt from scratch) differs after it.
fn every_change_finds_exactly_its_documents(file: &str, opts: GenOptions) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let plan = crate::plan::load(&path).unwrap();
    let product = denorm_verify::read_product(&path).unwrap();
    let mut records = Vec::new();
    generate(&plan, &opts, |r| {
        records.push(r);
        Ok(())
    })
    .unwrap();
    let mut replay = denorm_verify::eval::Replay::new(&product);
    let mut impact = Impact::new(&product);
    let mut before = verify_documents(&replay);
    let (mut kinds, mut fan_out) = (HashMap::new(), 0);
    for r in &records {
        let topic = &plan.sources[r.source].topic;
        let (key, value) = (
            r.key.as_deref().map(str::as_bytes),
            r.value.as_deref().map(str::as_bytes),
        );
        replay.apply(topic, key, value).unwrap();
        let after = verify_documents(&replay);
        let mut expected: Vec<(String, u64, u64)> = before
            .keys()
            .chain(after.keys())
            .map(|k| {
                let d = |m: &HashMap<String, u64>| m.get(k).copied().unwrap_or(ABSENT);
                (k.clone(), d(&before), d(&after))
            })
            .filter(|(_, b, a)| b != a)
            .collect();
        expected.sort();
        expected.dedup();
        let mut found = Vec::new();
        for (s, change) in impact.decode(topic, key, value).unwrap() {
            let effect = impact.change(s, change);
            *kinds.entry(effect.kind).or_insert(0) += 1;
            fan_out += usize::from(effect.documents.len() > 10);
            found.extend(effect.documents);
        }
        assert_eq!(found, expected, "record {r:?}");
        before = after;
    }
    for (key, digest) in &before {
        assert_eq!(impact.digest(key), *digest, "{key}");
    }
    assert_eq!(impact.root_keys().count(), before.len());
    for kind in [
        Kind::Insert,
        Kind::Update,
        Kind::Move,
        Kind::Delete,
        Kind::NoOp,
    ] {
        assert!(
            kinds.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind:?}: {kinds:?}"
        );
    }
    assert!(fan_out > 0, "no change of more than 10 documents");
}

#[test]
fn user_profiles() {
    every_change_finds_exactly_its_documents(
        "dataflows/github_user_profile.toml",
        GenOptions {
            scale: 40,
            changes: 600,
            seed: 11,
        },
    );
}

#[test]
fn repo_cards_nest_users_twice() {
    every_change_finds_exactly_its_documents(
        "dataflows/github_repo_card.toml",
        GenOptions {
            scale: 40,
            changes: 600,
            seed: 12,
        },
    );
}
