//! Many data products in one job (issue 23): fifty product files over one set of generated
//! GitHub topics, each writing its own output topic, in one `denorm run` of two workers until
//! caught up. Each topic is read once for all of them, and every product's output is judged by
//! `denorm verify`.

mod common;

use std::path::Path;

use common::*;

/// Products in the job.
const PRODUCTS: usize = 50;

/// The root fields of variant `i`: even variants are user profiles, odd ones repo cards, each
/// with one of five root field lists (other orders, other columns).
fn root_fields(i: usize) -> &'static str {
    const PROFILE: [&str; 5] = [
        r#"["email", "username"]"#,
        r#"["username", "email"]"#,
        r#"["email", "username", "registered_at"]"#,
        r#"["email", "id", "username"]"#,
        r#"["username", "registered_at", "email"]"#,
    ];
    const CARD: [&str; 5] = [
        r#"["owner", "name", "description", "star_count", "fork_count"]"#,
        r#"["name", "owner", "description", "star_count", "fork_count"]"#,
        r#"["owner", "name", "description", "star_count", "fork_count", "created_at"]"#,
        r#"["owner", "name", "star_count", "fork_count"]"#,
        r#"["owner", "name", "description", "updated_at"]"#,
    ];
    if i.is_multiple_of(2) {
        PROFILE[(i / 2) % 5]
    } else {
        CARD[(i / 2) % 5]
    }
}

/// Writes variant `i` into `folder`: a copy of a GitHub product on the topics of `prefix`, named
/// `v<i>_<base>`, writing to `<prefix>.v<i>.<base>`, with the root fields of [`root_fields`].
/// Returns its name.
fn variant(folder: &Path, prefix: &str, i: usize) -> String {
    let (file, base) = if i.is_multiple_of(2) {
        ("github_user_profile.toml", "user_profile")
    } else {
        ("github_repo_card.toml", "repo_card")
    };
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dataflows")
            .join(file),
    )
    .unwrap()
    .replace("\"github.", &format!("\"{prefix}."));
    let name = format!("v{i}_{base}");
    let mut root_done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line == format!("name = \"github_{base}\"") {
                format!("name = \"{name}\"")
            } else if line == format!("output_topic = \"{prefix}.{base}\"") {
                format!("output_topic = \"{prefix}.v{i}.{base}\"")
            } else if !root_done && line.starts_with("fields = ") {
                // The first `fields` of the file is the document's (the root's).
                root_done = true;
                format!("fields = {}", root_fields(i))
            } else {
                line.to_owned()
            }
        })
        .collect();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("name = \"{name}\""))
            && text.contains(&format!("output_topic = \"{prefix}.v{i}.{base}\""))
            && root_done,
        "variant {i} not made:\n{text}"
    );
    std::fs::write(folder.join(format!("v{i:02}_{base}.toml")), text).unwrap();
    name
}

#[test]
fn fifty_products_in_one_job_read_each_topic_once_and_all_verify() {
    let _heavy = heavy();
    let scratch = Scratch::new("many");
    let prefix = scratch.prefix.clone();
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("products");
    std::fs::create_dir(&folder).unwrap();
    let names: Vec<String> = (0..PRODUCTS)
        .map(|i| variant(&folder, &prefix, i))
        .collect();
    let b = brokers();

    // One set of source topics for all of them (the user profile names every source).
    let generated = run_ok(&[
        "gen",
        folder.join("v00_user_profile.toml").to_str().unwrap(),
        "--brokers",
        &b,
        "--scale",
        "300",
        "--changes",
        "600",
        "--seed",
        "23",
        "--partitions",
        "2",
    ]);
    let records: u64 = generated
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("gen said: {generated}"));

    let out = finish(
        denorm()
            .args(["run", folder.to_str().unwrap(), "--brokers", &b])
            .args(["-w", "2", "--exit-when-caught-up", "--watch-interval", "0"])
            .args(["--log-json"]),
        RUN_TIMEOUT,
    );
    assert!(out.ok(), "{}", out.stderr);
    let log = out.stderr;
    assert!(log.contains("job caught up"), "{log}");
    // Each source topic read once for all fifty products.
    assert_eq!(records_read(&log), records, "{log}");

    // verify over the folder replays the topics once and judges every product.
    let (ok, report) = verify_with(folder.to_str().unwrap(), &b, &[]);
    assert!(
        ok && report.contains("(0 undecodable)"),
        "{report}\n--- the job's log:\n{log}"
    );
    assert_eq!(replayed(&report), records, "{report}");
    let mut documents = 0;
    for name in &names {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no verdict on {name}:\n{report}"));
        assert!(
            line.starts_with(&format!("{name}: OK"))
                && line.contains("missing 0, unexpected 0, different 0"),
            "{line}\n{report}\n--- the job's log:\n{log}"
        );
        let expected = expected_documents(&report, name);
        assert!(expected > 0, "{name} has no documents:\n{report}");
        documents += expected as u64;
    }
    // From empty output topics, each document is written once: no more records than
    // documents.
    let stopped = log
        .lines()
        .rev()
        .find(|l| l.contains("records_read"))
        .unwrap();
    let stopped: serde_json::Value = serde_json::from_str(stopped).unwrap();
    eprintln!(
        "{PRODUCTS} products: {records} records read, {documents} documents, caught up after {} s, \
         stopped after {} s",
        stopped["fields"]["caught_up_seconds"], stopped["fields"]["seconds"]
    );
    assert_eq!(
        stopped["fields"]["documents_written"].as_u64(),
        Some(documents),
        "{stopped}"
    );
}
