//! A change that rewrites many documents (a fan-out) does not hold back one that rewrites one:
//! a repository starred by thousands of users gets a new description, and right after it one
//! user's payment flag changes; that user's new document is written among the first chunks of
//! the fan-out, not after it. Checked by order in a one-partition output topic (its offsets are
//! the order of writing), not by a clock. The user's key is chosen to come last both by key and
//! by the hash order in which a fan-out's documents are built, so that without the priority of
//! small changes it would be written last.

mod common;

use std::time::Duration;

use common::*;
use denorm::runtime::{self as job, JobOptions};
use serde_json::{json, Value};

type Rec = (String, Option<String>, Option<String>);

/// Stargazers of the one hot repository: many chunks of documents.
const STARGAZERS: usize = 30_000;
/// Documents the engine starts at one time ([`denorm::dataflow::drive::CHUNK`]), and how many
/// such times may be in flight ahead of a change.
const CHUNK: usize = denorm::dataflow::drive::CHUNK;
const IN_FLIGHT: usize = denorm::dataflow::drive::IN_FLIGHT;

fn upsert(prefix: &str, table: &str, key: Value, row: Value) -> Rec {
    let value =
        json!({"before": null, "after": row, "source": {"table": table}, "op": "c", "ts_ms": 1});
    (
        format!("{prefix}.public.{table}"),
        Some(key.to_string()),
        Some(value.to_string()),
    )
}

fn repo(prefix: &str, description: &str) -> Rec {
    upsert(
        prefix,
        "repos",
        json!({"owner": "hot", "name": "repo"}),
        json!({"owner": "hot", "name": "repo", "description": description, "star_count": 1, "fork_count": 0, "created_at": 0, "updated_at": 0}),
    )
}

fn payment(prefix: &str, id: i64, verified: bool) -> Rec {
    upsert(
        prefix,
        "payment_info",
        json!({"id": id}),
        json!({"id": id, "verified": verified}),
    )
}

#[test]
fn a_small_change_overtakes_a_large_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("fanout");
    let prefix = scratch.prefix.clone();
    let file = product_file(dir.path(), "github_user_profile.toml", &prefix);
    let plan = denorm::plan::load(&file).unwrap();
    create_topics(&plan, 1);
    let mut snapshot = vec![repo(&prefix, "old")];
    for i in 0..STARGAZERS {
        let (email, username) = (format!("u{i}@x"), format!("u{i}"));
        snapshot.push(upsert(
            &prefix,
            "users",
            json!({"email": email}),
            json!({"id": i, "email": email, "username": username, "registered_at": 0}),
        ));
        snapshot.push(upsert(
            &prefix,
            "stars",
            json!({"username": username, "repo_name": "repo", "repo_owner": "hot"}),
            json!({"username": username, "repo_name": "repo", "repo_owner": "hot", "created_at": 0}),
        ));
    }
    // The user whose one document changes later: no star of the hot repository, and a key
    // after every stargazer's, by text and by the hash of its primary key.
    let key_hash =
        |email: &str| denorm::row::Row::from_values(&[denorm::value::Value::str(email)]).hash();
    let highest = (0..STARGAZERS)
        .map(|i| key_hash(&format!("u{i}@x")))
        .max()
        .unwrap();
    let solo_email = (0..)
        .map(|n| format!("zz{n}@x"))
        .find(|email| key_hash(email) > highest)
        .unwrap();
    snapshot.push(upsert(
        &prefix,
        "users",
        json!({"email": solo_email}),
        json!({"id": -1, "email": solo_email, "username": "solo", "registered_at": 0}),
    ));
    produce(&snapshot);

    let output = plan.products[0].output_topic.clone();
    let options = JobOptions::new(plan, kafka());
    let stop = options.stop.clone();
    let running = std::thread::spawn(move || job::run(options, timely::Config::process(1)));
    assert!(
        wait_for(Duration::from_secs(120), || read_all(&output).len()
            > STARGAZERS),
        "the job never wrote the {} documents of the snapshot",
        STARGAZERS + 1
    );
    let hydrated = read_all(&output).len();
    assert_eq!(hydrated, STARGAZERS + 1, "one record per document");

    // The fan-out, then right after it the one-document change.
    produce(&[repo(&prefix, "new"), payment(&prefix, -1, true)]);
    let solo = json!({ "email": solo_email }).to_string();
    let written = |records: &[(String, Option<String>)]| {
        let after = &records[hydrated..];
        let fan_out = after
            .iter()
            .filter(|(_, v)| {
                v.as_deref()
                    .is_some_and(|v| v.contains("\"description\":\"new\""))
            })
            .count();
        (fan_out, after.iter().position(|(k, _)| *k == solo))
    };
    assert!(
        wait_for(Duration::from_secs(120), || {
            let records = read_all(&output);
            let (fan_out, solo_at) = written(&records);
            fan_out == STARGAZERS && solo_at.is_some()
        }),
        "the job never wrote the fan-out and the small change: {:?}",
        written(&read_all(&output))
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    join_within(running, Duration::from_secs(120)).unwrap();

    let records = read_all(&output);
    let after = &records[hydrated..];
    let solo_at = after.iter().position(|(k, _)| *k == solo).unwrap();
    let last_fan_out = after
        .iter()
        .rposition(|(_, v)| {
            v.as_deref()
                .is_some_and(|v| v.contains("\"description\":\"new\""))
        })
        .unwrap();
    assert_eq!(after.len(), STARGAZERS + 1, "each changed document once");
    // At worst the chunks already in flight, and the one it starts with, go first.
    assert!(
        solo_at < (IN_FLIGHT + 1) * CHUNK && solo_at < last_fan_out,
        "the one-document change was written at {solo_at} of {}, behind the fan-out (its last \
         document at {last_fan_out})",
        after.len()
    );
    assert_eq!(
        after[solo_at].1.as_deref(),
        Some(
            json!({"email": solo_email, "username": "solo", "starred_repos": [], "pull_requests": [], "payment_verified": true})
                .to_string()
                .as_str()
        )
    );
}
