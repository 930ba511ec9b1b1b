//! The helper scripts as the tests and benchmarks use them.

use std::path::Path;
use std::process::Command;

/// The scripts' Python runs in a virtual environment of its own (made once and cached) with
/// the benchmark's packages, so the test command never installs into the system's Python.
#[test]
fn scripts_python_is_a_cached_virtual_environment_with_the_benchmark_packages() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/python.sh");
    let out = Command::new(&script)
        .args([
            "-c",
            "import sys, matplotlib, psycopg; print(sys.prefix != sys.base_prefix, sys.prefix)",
        ])
        .output()
        .expect("run scripts/python.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (in_venv, prefix) = text.trim().split_once(' ').unwrap();
    assert_eq!(in_venv, "True", "not a virtual environment: {prefix}");
    let tools = std::env::var("DENORM_TOOLS")
        .unwrap_or_else(|_| format!("{}/.local/share/denorm", std::env::var("HOME").unwrap()));
    assert_eq!(Path::new(prefix), Path::new(&tools).join("venv"));
}
