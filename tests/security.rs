//! Kafka security settings, end to end against the test broker: librdkafka settings pass
//! through from `-X` and `DENORM_KAFKA_*`, secrets never show in logs or `explain`, and bad
//! settings or credentials the broker refuses stop the job at once with a clear error.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "s3cr3t-value";

/// Runs `denorm ARGS` with the SASL password in the environment and debug logs everywhere;
/// returns (success, stdout + stderr), asserting the secret is not in it.
fn run_with_secret(args: &[&str]) -> (bool, String) {
    let out = finish(
        denorm()
            .args(args)
            .env("DENORM_KAFKA_SASL_PASSWORD", SECRET)
            .env("RUST_LOG", "debug"),
        RUN_TIMEOUT,
    );
    let text = out.text();
    assert!(
        !text.contains(SECRET),
        "the secret leaked with {args:?}:\n{text}"
    );
    (out.ok(), text)
}

/// librdkafka settings pass through from `-X` and `DENORM_KAFKA_*`; the password from the
/// environment appears in no log (text or JSON, debug level, librdkafka's own debug) nor in
/// `explain`; bad settings fail at once with a clear error.
#[test]
fn kafka_security_settings_pass_through_and_secrets_never_show() {
    let p = Product::new("security");
    create_topics(&p.plan, 1);
    produce(&[p.user(1, "a@x", "alice")]);
    let b = brokers();
    let base = [
        "run",
        p.path(),
        "--brokers",
        b.as_str(),
        "--exit-when-caught-up",
        "-X",
        "sasl.username=u",
    ];

    // Plaintext: the SASL settings are carried but unused; the job works. Text and JSON logs at
    // debug level, with librdkafka's own debug output (it prints its configuration).
    for extra in [
        &["-X", "debug=conf,security,broker"][..],
        &["--log-json"][..],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (ok, text) = run_with_secret(&args);
        assert!(ok, "{text}");
        // The settings are logged, the password masked.
        assert!(text.contains("sasl.password"), "{text}");
        assert!(text.contains("*****"), "{text}");
        assert!(text.contains("sasl.username"), "{text}");
    }
    assert_eq!(final_docs(&read_all(&p.output())).len(), 1);

    // The settings reach librdkafka and the broker: SASL PLAIN (a mechanism this build has)
    // over plaintext is tried, and the broker's refusal ends the job with its words, well
    // before the start-up timeout would.
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "-X",
            "security.protocol=sasl_plaintext",
            "-X",
            "sasl.mechanism=PLAIN",
            "--startup-timeout",
            "60",
        ])
        .collect();
    let started = Instant::now();
    let (ok, text) = run_with_secret(&args);
    assert!(!ok, "{text}");
    let error = text
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{text}"));
    // The broker's words: the PLAIN handshake (the mechanism set with -X) failed.
    assert!(
        error.starts_with(&format!(
            "error: the brokers {b} refused to authenticate the client: "
        )) && error.contains("SASL PLAIN mechanism handshake failed")
            && error.ends_with("(check security.protocol and the sasl.* and ssl.* settings)"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?} to fail:\n{text}",
        started.elapsed()
    );
    // A protocol this build cannot speak, and a setting that does not exist: clear errors.
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["-X", "security.protocol=sasl_ssl"])
        .collect();
    let (ok, text) = run_with_secret(&args);
    assert!(!ok);
    assert!(
        text.contains("error: ") && text.contains("\"security.protocol\""),
        "{text}"
    );
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["-X", "no.such.setting=1"])
        .collect();
    let (ok, text) = run_with_secret(&args);
    assert!(!ok);
    assert!(
        text.contains("No such configuration property: \"no.such.setting\""),
        "{text}"
    );
    let (ok, text) = run_with_secret(&["run", p.path(), "-X", "missing-equals"]);
    assert!(!ok);
    assert!(text.contains("`missing-equals` is not key=value"), "{text}");

    // explain and verify, with the secret in the environment.
    let (ok, text) = run_with_secret(&["explain", p.path()]);
    assert!(ok, "{text}");
    let (ok, text) =
        run_with_secret(&["verify", p.path(), "--brokers", &b, "-X", "sasl.username=u"]);
    assert!(
        ok && text.contains(&format!("{}: OK — expected 1, found 1", p.name))
            && text.contains("(0 undecodable)"),
        "{text}"
    );
}
