//! `denorm verify` is independent of the engine: a deliberately broken engine makes it fail.
//!
//! Built with `--features fault-injection` (see `src/fault.rs`): `DENORM_FAULT=<name>` gives the
//! engine one bug. The shop product (`tests/data/shop_orders.toml`: a `timestamp(us)` column,
//! `decimal(2)` columns, a `desc` order_by, four levels) is generated once; each fault's engine
//! run writes its own output topic, and verify must fail on it with exit code 1 and name the
//! difference. The same binary without a fault must pass, so the hooks change nothing when off.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A copy of the shop product on topics `<prefix>.*`, writing to `<prefix>.<output>`.
fn shop_file(dir: &Path, prefix: &str, output: &str) -> PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/shop_orders.toml"
    ))
    .unwrap()
    .replace(
        "\"shop.customer_orders\"",
        &format!("\"{prefix}.{output}\""),
    )
    .replace("\"shop.", &format!("\"{prefix}."));
    let path = dir.join(format!("{output}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the engine over `file` until caught up, with `fault` switched on; returns its log.
fn run_engine(file: &Path, fault: Option<&str>) -> String {
    let mut command = denorm();
    command.args([
        "run",
        file.to_str().unwrap(),
        "--brokers",
        &brokers(),
        "--exit-when-caught-up",
        "-w",
        "2",
    ]);
    if let Some(fault) = fault {
        command.env("DENORM_FAULT", fault);
    }
    let out = finish(&mut command, RUN_TIMEOUT);
    assert!(
        out.ok(),
        "denorm run with {fault:?} failed:\n{}",
        out.stderr
    );
    out.stderr
}

/// Runs `denorm verify` (never with a fault); returns its exit code and report.
fn verify(file: &Path) -> (Option<i32>, String) {
    let out = finish(
        denorm().args(["verify", file.to_str().unwrap(), "--brokers", &brokers()]),
        RUN_TIMEOUT,
    );
    (out.status.code(), out.text())
}

/// Each fault, and what verify's report must say about its output.
const FAULTS: [(&str, &[&str]); 5] = [
    // A timestamp(us) column read as milliseconds: every order's placed_at is far off.
    ("timestamp-unit", &[".placed_at: expected \""]),
    // The customer's id and name columns swapped in lowering.
    ("field-index", &[".id: expected ", ".name: expected "]),
    // `placed_at desc` sorts oldest first, `line_no` largest first.
    ("order-direction", &["items in another order"]),
    // Decimals ten times too small.
    ("decimal-scale", &[".total: expected "]),
    // Deleted customers get an empty value instead of a tombstone.
    ("empty-tombstone", &["bad record", "has an empty value"]),
];

#[test]
fn verify_fails_for_each_deliberate_engine_bug_and_passes_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::new("catch");
    let prefix = scratch.prefix.clone();
    let brokers = brokers();
    let clean = shop_file(dir.path(), &prefix, "clean");
    let gen = |extra: &[&str]| {
        let mut args = vec![
            "gen",
            clean.to_str().unwrap(),
            "--brokers",
            &brokers,
            "--scale",
            "300",
            "--seed",
            "11",
            "--partitions",
            "2",
        ];
        args.extend_from_slice(extra);
        run_ok(&args)
    };
    gen(&["--changes", "0"]);
    // The tombstone fault needs documents to delete: its product hydrates on the snapshot, and
    // its faulty run then writes the deletes of the changes that follow.
    let tombstones = shop_file(dir.path(), &prefix, "empty_tombstone");
    run_engine(&tombstones, None);
    gen(&["--only-changes", "--changes", "1500"]);

    // No fault: the same binary writes what verify expects.
    let log = run_engine(&clean, None);
    let (code, report) = verify(&clean);
    assert!(
        code == Some(0)
            && report.contains("(0 undecodable)")
            && report.contains("shop_orders: OK")
            && report.contains("missing 0, unexpected 0, different 0"),
        "{report}\n--- the job's log:\n{log}"
    );
    assert_eq!(records_read(&log), replayed(&report), "{log}");

    for (fault, evidence) in FAULTS {
        let file = shop_file(dir.path(), &prefix, &fault.replace('-', "_"));
        let log = run_engine(&file, Some(fault));
        assert!(
            log.contains("deliberate bug") && log.contains(fault),
            "the engine did not say {fault} is on:\n{log}"
        );
        let (code, report) = verify(&file);
        println!("DENORM_FAULT={fault}: verify says\n{report}");
        assert_eq!(code, Some(1), "verify passed despite {fault}:\n{report}");
        assert!(
            report.contains("shop_orders: MISMATCH"),
            "{fault}:\n{report}"
        );
        assert!(report.contains("(0 undecodable)"), "{fault}:\n{report}");
        for text in evidence {
            assert!(report.contains(text), "{fault}: no `{text}` in:\n{report}");
        }
    }
}
