//! Replay verification at scale, against a real broker: generate Debezium topics, run the engine
//! with one, two and four workers and with two processes of two workers, and check every document with `denorm verify`; then tamper with an
//! output topic and check that verify fails and says where.

mod common;

use std::path::Path;

use common::*;

fn variant(dir: &Path, prefix: &str, output: &str) -> std::path::PathBuf {
    let base = product_file(dir, "github_user_profile.toml", prefix);
    let text = std::fs::read_to_string(&base).unwrap().replace(
        &format!("\"{prefix}.user_profile\""),
        &format!("\"{prefix}.{output}\""),
    );
    let path = dir.join(format!("{output}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn verify_passes_for_one_and_two_workers_and_catches_tampering() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("verify");
    let prefix = scratch.prefix.clone();
    let brokers = brokers();
    let one = variant(dir.path(), &prefix, "profiles_w1");
    let two = variant(dir.path(), &prefix, "profiles_w2");
    let procs = variant(dir.path(), &prefix, "profiles_n2");
    let four = variant(dir.path(), &prefix, "profiles_w4");
    let (one, two, four, procs_file) = (
        one.to_str().unwrap(),
        two.to_str().unwrap(),
        four.to_str().unwrap(),
        procs.to_str().unwrap(),
    );

    let generated = run_ok(&[
        "gen",
        one,
        "--brokers",
        &brokers,
        "--scale",
        "10000",
        "--changes",
        "20000",
        "--seed",
        "42",
        "--partitions",
        "2",
    ]);
    let records: usize = generated
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        records >= 100_000,
        "only {records} records generated: {generated}"
    );

    let mut logs = std::collections::HashMap::new();
    for (file, workers) in [(one, "1"), (two, "2"), (four, "4")] {
        let log = run_ok(&[
            "run",
            file,
            "--brokers",
            &brokers,
            "--exit-when-caught-up",
            "-w",
            workers,
        ]);
        assert_eq!(records_read(&log), records as u64, "{log}");
        logs.insert(file, log);
    }
    // Two processes of two workers each, on localhost.
    let mut procs = two_processes(
        dir.path(),
        &[
            "run",
            procs_file,
            "--brokers",
            &brokers,
            "--exit-when-caught-up",
            "-w",
            "2",
        ],
    );
    for (p, process) in procs.iter_mut().enumerate() {
        let status = process.wait(RUN_TIMEOUT);
        assert!(
            status.success(),
            "process {p} of 2 failed: {status}\n{}",
            process.log()
        );
    }
    // Each process reads its share: together, every record once.
    let read: u64 = procs.iter().map(|p| records_read(&p.log())).sum();
    assert_eq!(read, records as u64);
    logs.insert(
        procs_file,
        format!(
            "--- process 0:\n{}\n--- process 1:\n{}",
            procs[0].log(),
            procs[1].log()
        ),
    );
    let mut expected = None;
    for file in [one, two, four, procs_file] {
        let report = verify_clean(file, &brokers, &logs[file]);
        assert_eq!(replayed(&report), records as u64, "{report}");
        let documents = expected_documents(&report, "github_user_profile");
        assert_eq!(*expected.get_or_insert(documents), documents, "{report}");
    }
    // The same documents, byte for byte, whatever the worker count.
    let a = read_output(&format!("{prefix}.profiles_w1"));
    let b = read_output(&format!("{prefix}.profiles_w2"));
    let d = read_output(&format!("{prefix}.profiles_w4"));
    let c = read_output(&format!("{prefix}.profiles_n2"));
    assert_eq!(a.len(), expected.unwrap());
    assert_eq!(a, b);
    assert_eq!(a, d);
    assert_eq!(a, c);

    // A restart over a complete output topic writes nothing (no burst of re-emissions).
    let before = read_all(&format!("{prefix}.profiles_w2")).len();
    let log = run_ok(&[
        "run",
        two,
        "--brokers",
        &brokers,
        "--exit-when-caught-up",
        "-w",
        "2",
    ]);
    assert_eq!(
        records_read(&log),
        records as u64,
        "the restart did not read every record:\n{log}"
    );
    assert_eq!(
        read_all(&format!("{prefix}.profiles_w2")).len(),
        before,
        "a restart re-emitted documents"
    );

    // Tamper: change one document, delete another, add one that should not exist.
    let mut keys = a.keys();
    let (changed, deleted) = (keys.next().unwrap().clone(), keys.next().unwrap().clone());
    let original = &a[&changed];
    let username_at = original.find("\"username\":\"").unwrap() + "\"username\":\"".len();
    let tampered = format!("{}X{}", &original[..username_at], &original[username_at..]);
    let topic = format!("{prefix}.profiles_w1");
    produce(&[
        (topic.clone(), Some(changed.clone()), Some(tampered)),
        (topic.clone(), Some(deleted.clone()), None),
        (
            topic.clone(),
            Some("{\"email\":\"intruder@example.com\"}".into()),
            Some("{}".into()),
        ),
    ]);
    let out = finish(
        denorm().args(["verify", one, "--brokers", &brokers]),
        RUN_TIMEOUT,
    );
    let report = out.stdout;
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("MISMATCH"), "{report}");
    assert!(
        report.contains("missing 1, unexpected 1, different 1"),
        "{report}"
    );
    assert!(
        report.contains(&format!("missing    {deleted}")),
        "{report}"
    );
    assert!(
        report.contains("unexpected {\"email\":\"intruder@example.com\"}"),
        "{report}"
    );
    assert!(report.contains(".username: expected"), "{report}");
}

#[test]
fn verify_passes_for_a_four_level_product_with_many_to_one() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("shop");
    let prefix = scratch.prefix.clone();
    let brokers = brokers();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/shop_orders.toml"
    ))
    .unwrap();
    let file = dir.path().join("shop_orders.toml");
    std::fs::write(&file, text.replace("\"shop.", &format!("\"{prefix}."))).unwrap();
    let file = file.to_str().unwrap();
    run_ok(&[
        "gen",
        file,
        "--brokers",
        &brokers,
        "--scale",
        "2000",
        "--changes",
        "5000",
        "--seed",
        "3",
        "--partitions",
        "3",
    ]);
    let log = run_ok(&[
        "run",
        file,
        "--brokers",
        &brokers,
        "--exit-when-caught-up",
        "-w",
        "2",
    ]);
    let report = verify_clean(file, &brokers, &log);
    assert_eq!(records_read(&log), replayed(&report), "{log}");
    assert!(report.contains("shop_orders: OK"), "{report}");
    let docs = read_output(&format!("{prefix}.customer_orders"));
    // The nesting reached the fourth level somewhere.
    assert!(
        docs.values().any(|d| d.contains("\"tags\":[\"")),
        "no product with tags in any document"
    );
}

#[test]
fn a_dead_process_stops_the_job_and_a_restart_recovers() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("procs");
    let prefix = scratch.prefix.clone();
    let brokers = brokers();
    let file = variant(dir.path(), &prefix, "profiles");
    let file = file.to_str().unwrap();
    run_ok(&[
        "gen",
        file,
        "--brokers",
        &brokers,
        "--scale",
        "500",
        "--changes",
        "500",
        "--seed",
        "9",
        "--partitions",
        "2",
    ]);
    let [mut survivor, mut victim] =
        two_processes(dir.path(), &["run", file, "--brokers", &brokers, "-w", "1"]);
    // Let the job start and write its documents, then kill one process.
    let output = format!("{prefix}.profiles");
    assert!(
        wait_for(std::time::Duration::from_secs(60), || !read_all(&output)
            .is_empty()),
        "no documents:\n{}\n{}",
        survivor.log(),
        victim.log()
    );
    victim.kill();
    let status = survivor.wait(std::time::Duration::from_secs(120));
    let log = survivor.log();
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("lost the connection to another process of the job"),
        "{log}"
    );

    // Starting all processes again recovers to the right output.
    let mut procs = two_processes(
        dir.path(),
        &[
            "run",
            file,
            "--brokers",
            &brokers,
            "--exit-when-caught-up",
            "-w",
            "1",
        ],
    );
    for (p, process) in procs.iter_mut().enumerate() {
        let status = process.wait(RUN_TIMEOUT);
        assert!(
            status.success(),
            "process {p} of 2 failed: {status}\n{}",
            process.log()
        );
    }
    let report = verify_clean(
        file,
        &brokers,
        &format!(
            "--- process 0:\n{}\n--- process 1:\n{}",
            procs[0].log(),
            procs[1].log()
        ),
    );
    let read: u64 = procs.iter().map(|p| records_read(&p.log())).sum();
    assert_eq!(read, replayed(&report), "{report}");
}
