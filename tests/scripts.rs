//! The helper scripts as the tests and benchmarks use them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The scripts' Python runs in a virtual environment of its own (made once and cached) with
/// the benchmark's packages, so the test command never installs into the system's Python.
#[test]
fn scripts_python_is_a_cached_virtual_environment_with_the_benchmark_packages() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/python.sh");
    // (A first run makes the environment: pip installs the packages.)
    let out = common::finish(
        Command::new(&script).args([
            "-c",
            "import sys, matplotlib, psycopg; print(sys.prefix != sys.base_prefix, sys.prefix)",
        ]),
        Duration::from_secs(900),
    );
    let text = &out.stdout;
    assert!(out.ok(), "{}", out.text());
    let (in_venv, prefix) = text.trim().split_once(' ').unwrap();
    assert_eq!(in_venv, "True", "not a virtual environment: {prefix}");
    let tools = std::env::var("DENORM_TOOLS")
        .unwrap_or_else(|_| format!("{}/.local/share/denorm", std::env::var("HOME").unwrap()));
    assert_eq!(Path::new(prefix), Path::new(&tools).join("venv"));
}
