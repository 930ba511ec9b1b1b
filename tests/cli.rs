//! The command line as a user meets it: `check` explains mistakes with their line before
//! anything runs, `explain` shows the plan, `--help` reads well.

mod common;

use common::{clean_env, denorm, finish, output, refused_port, RUN_TIMEOUT};

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("product.toml");
    std::fs::write(&path, text).unwrap();
    let out = finish(
        denorm().args(["check", path.to_str().unwrap()]),
        RUN_TIMEOUT,
    );
    (out.ok(), out.text())
}

const GOOD: &str = r#"[product]
name = "p"
output_topic = "out"

[sources.users]
topic = "db.users"
primary_key = ["id"]
columns = { id = "int", name = "string" }

[sources.orders]
topic = "db.orders"
primary_key = ["id"]
columns = { id = "int", user_id = "int", total = "decimal" }

[document]
source = "users"
fields = ["id", "name"]

[[document.relations]]
name = "orders"
cardinality = "many"
source = "orders"
on = { id = "user_id" }
fields = ["id", "total"]
"#;

#[test]
fn check_accepts_the_shipped_products_and_a_good_file() {
    let out = finish(
        denorm().args(["check", concat!(env!("CARGO_MANIFEST_DIR"), "/dataflows")]),
        RUN_TIMEOUT,
    );
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stdout.contains("ok: github_user_profile"),
        "{}",
        out.stdout
    );
    let (ok, text) = check(GOOD);
    assert!(ok, "{text}");
}

#[test]
fn check_points_at_each_mistake() {
    let cases = [
        (
            GOOD.replace(r#"fields = ["id", "total"]"#, r#"fields = ["id", "totl"]"#),
            ":24:",
            "source `orders` has no column `totl`",
        ),
        (
            GOOD.replace(
                r#"source = "orders"
on"#,
                r#"source = "order"
on"#,
            ),
            ":22:",
            "unknown source `order`",
        ),
        (
            GOOD.replace(r#"on = { id = "user_id" }"#, r#"on = { name = "user_id" }"#),
            ":23:",
            "the types differ",
        ),
        (
            GOOD.replace(r#"total = "decimal""#, r#"total = "money""#),
            ":13:",
            "unknown column type `money`",
        ),
        (
            GOOD.replace(
                r#"primary_key = ["id"]
columns = { id = "int", name"#,
                r#"primary_key = ["uid"]
columns = { id = "int", name"#,
            ),
            ":7:",
            "primary key column `uid`",
        ),
        (
            GOOD.replace("cardinality = \"many\"", "cardinality = \"lots\""),
            ":21:",
            "unknown variant `lots`",
        ),
        (
            GOOD.replace("[document]", "[documents]"),
            ":15:2:",
            "unknown field `documents`",
        ),
        (
            GOOD.replace(
                r#"fields = ["id", "name"]"#,
                r#"fields = ["id", "name", "id"]"#,
            ),
            ":17:",
            "field `id` is output twice",
        ),
        (
            GOOD.replace(r#"output_topic = "out""#, r#"output_topic = "db.users""#),
            ":3:",
            "also a source topic",
        ),
        (
            GOOD.replace("name = \"orders\"", "name = \"orders"),
            ":20:",
            "invalid basic string",
        ),
    ];
    for (text, line, message) in cases {
        let (ok, out) = check(&text);
        assert!(!ok, "accepted a bad file:\n{text}");
        assert!(
            out.contains(line) && out.contains(message),
            "expected `{line}` and `{message}` in:\n{out}"
        );
    }
}

#[test]
fn explain_shows_sources_arrangements_and_tree() {
    let out = finish(
        denorm().args([
            "explain",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/dataflows/github_user_profile.toml"
            ),
        ]),
        RUN_TIMEOUT,
    );
    assert!(out.ok(), "{}", out.stderr);
    let text = out.stdout;
    for expected in [
        "users(username) used by",
        "starred_repos: many stars on users(username) = stars(username)",
        "pull_requests: many pull_requests on users(username) = pull_requests(author)",
        "payment_verified: one payment_info on users(id) = payment_info(id)",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["run", "demo", "check", "explain", "gen", "verify"] {
        let out = finish(denorm().args([sub, "--help"]), RUN_TIMEOUT);
        assert!(out.ok(), "{sub} --help failed");
        let text = out.stdout;
        assert!(text.contains("Usage"), "{sub}");
        // Every flag is explained: on its line, or (long help) on the next; a default or an
        // environment variable alone is no explanation.
        let words = |text: &str| {
            let mut depth = 0;
            text.chars()
                .filter(|c| {
                    match c {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => return depth == 0 && c.is_alphabetic(),
                    }
                    false
                })
                .count()
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with('-') || line.starts_with("- ") {
                continue;
            }
            let described = match line.split_once("  ") {
                Some((_, description)) => words(description) > 0,
                None => lines.get(i + 1).is_some_and(|next| words(next) > 0),
            };
            assert!(
                described,
                "`{line}` of `{sub} --help` has no description:\n{text}"
            );
        }
        if sub != "demo" && sub != "explain" {
            assert!(text.contains("[env: DENORM_BROKERS="), "{sub}:\n{text}");
        }
    }
}

/// The README's first command: the embedded demo runs, streams, and verifies its own output.
#[test]
fn the_demo_runs_and_verifies() {
    let (ok, text) = output(&["demo", "--seconds", "2", "--scale", "10"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("github_user_profile: OK") && text.contains("(0 undecodable)"),
        "{text}"
    );
}

#[test]
fn configuration_comes_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = common::Scratch::new("envcfg");
    let prefix = scratch.prefix.clone();
    let file = common::product_file(dir.path(), "github_user_profile.toml", &prefix);
    let file = file.to_str().unwrap();
    let env = [
        ("DENORM_BROKERS", common::brokers()),
        ("DENORM_WORKERS", "2".to_owned()),
        ("DENORM_EXIT_WHEN_CAUGHT_UP", "true".to_owned()),
        ("DENORM_QUIET", "true".to_owned()),
        ("DENORM_LOG_FORMAT", "json".to_owned()),
    ];
    let run = |args: &[&str]| {
        let out = finish(denorm().args(args).envs(env.clone()), RUN_TIMEOUT);
        let text = out.text();
        assert!(out.ok(), "denorm {args:?}:\n{text}");
        text
    };
    run(&["gen", file, "--scale", "30", "--changes", "60"]);
    let job = run(&["run", file]);
    assert!(
        job.contains("\"worker\":1") && job.contains("\"message\":\"stopped, "),
        "two workers, JSON logs, exit when caught up:\n{job}"
    );
    let report = run(&["verify", file]);
    assert!(
        report.contains("github_user_profile: OK") && report.contains("(0 undecodable)"),
        "{report}"
    );
}

/// Runs `denorm check` on the good file with extra arguments and environment; returns stderr.
fn check_logs(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("product.toml");
    std::fs::write(&path, GOOD).unwrap();
    let mut command = denorm();
    command.args(args).args(["check", path.to_str().unwrap()]);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = finish(&mut command, RUN_TIMEOUT);
    assert!(out.ok(), "{}", out.text());
    out.stderr
}

#[test]
fn log_level_comes_from_the_flag_then_denorm_log_then_rust_log() {
    // Default: info, so the debug line that every command logs at start is not shown.
    assert!(!check_logs(&[], &[]).contains("denorm starting"));
    let text = check_logs(&[], &[("RUST_LOG", "debug")]);
    assert!(
        text.contains("DEBUG") && text.contains("denorm starting"),
        "{text}"
    );
    assert!(check_logs(&["--log-level", "debug"], &[]).contains("denorm starting"));
    assert!(check_logs(&[], &[("DENORM_LOG", "denorm=debug")]).contains("denorm starting"));
    // The flag wins over the environment.
    let text = check_logs(&["--log-level", "warn"], &[("RUST_LOG", "debug")]);
    assert!(!text.contains("denorm starting"), "{text}");
    let text = check_logs(&["--log-level", "warn"], &[("DENORM_LOG", "debug")]);
    assert!(!text.contains("denorm starting"), "{text}");
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    for (args, env) in [
        (vec!["--log-format", "json", "--log-level", "debug"], vec![]),
        (
            vec!["--log-level", "debug"],
            vec![("DENORM_LOG_FORMAT", "json")],
        ),
    ] {
        let text = check_logs(&args, &env);
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines.is_empty(), "no log lines");
        for line in &lines {
            let json: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(
                json["level"].is_string() && json["fields"].is_object(),
                "{line}"
            );
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains("\"denorm starting\"") && l.contains("\"command\":\"check\"")),
            "{text}"
        );
    }
    // A bad filter is an error, not silently ignored.
    let out = finish(
        denorm().args(["--log-level", "info,=[", "check", "x.toml"]),
        RUN_TIMEOUT,
    );
    // A usage error: exit code 2.
    assert_eq!(out.status.code(), Some(2), "{}", out.text());
    assert!(out.stderr.contains("bad log filter"), "{}", out.stderr);
}

/// The node ids a DOT text declares (`id [..];`) and its edges (`a -> b`), after checking that
/// its braces balance and it is one digraph.
fn dot_structure(text: &str) -> (Vec<String>, Vec<(String, String)>) {
    assert!(text.starts_with("digraph "), "{text}");
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' if !in_string => depth += 1,
            '}' if !in_string => {
                depth -= 1;
                assert!(depth >= 0, "unbalanced braces:\n{text}");
            }
            _ => {}
        }
    }
    assert!(depth == 0 && !in_string, "unbalanced:\n{text}");
    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim) {
        let head = line.split(" [").next().unwrap().trim_end_matches(';');
        if let Some((a, b)) = head.split_once(" -> ") {
            edges.push((a.trim().to_owned(), b.trim().to_owned()));
        } else if line.contains(" [")
            && !["node ", "edge ", "graph "]
                .iter()
                .any(|k| line.starts_with(k))
        {
            nodes.push(head.to_owned());
        }
    }
    (nodes, edges)
}

#[test]
fn explain_dot_is_a_graph_of_the_plan() {
    // Nodes: the sources, the indexes, a build, a nest and a find per nested relation, the
    // root's build and the output topic. Edges: source → index, source → build, build → nest →
    // find, index (or the source, when the link is its primary key) → find, find → parent
    // build, root → output. An index is a source by link columns that are not its primary key,
    // for finding children or following a change to its parents, built once however many
    // relations use it.
    for (file, expected_nodes, expected_edges) in [
        // 5 sources; 5 indexes: users by id (payment_info follows to users) and by username
        // (stars and pull requests follow to users), stars by username (found from users) and by
        // (repo_owner, repo_name) (repos follow to stars), pull_requests by author; 4 nested
        // relations (the many-to-many counts twice: the link and its target): 5 + 5 + 12 + 2
        // nodes; 5 + 5 + 4 × 4 + 1 edges.
        ("dataflows/github_user_profile.toml", 24, 27),
        // 5 sources; 4 indexes: orders by customer_id, order_lines by order_id and by sku
        // (products follow to lines), product_tags by sku; 4 nested relations: 5 + 4 + 12 + 2
        // nodes; 4 + 5 + 4 × 4 + 1 edges.
        ("tests/data/shop_orders.toml", 23, 26),
    ] {
        let out = finish(
            denorm().args([
                "explain",
                "--dot",
                &format!("{}/{file}", env!("CARGO_MANIFEST_DIR")),
            ]),
            RUN_TIMEOUT,
        );
        assert!(out.ok(), "{}", out.stderr);
        let text = out.stdout;
        let (nodes, edges) = dot_structure(&text);
        assert_eq!(
            (nodes.len(), edges.len()),
            (expected_nodes, expected_edges),
            "nodes and edges of {file}:\n{text}"
        );
        for (a, b) in &edges {
            assert!(
                nodes.contains(a) && nodes.contains(b),
                "edge {a} -> {b} has an undeclared end:\n{text}"
            );
        }
        let mut sorted = nodes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            nodes.len(),
            "a node is declared twice:\n{text}"
        );
        // Every node is connected, and the output is reached.
        for n in &nodes {
            assert!(
                edges.iter().any(|(a, b)| a == n || b == n),
                "{n} has no edge:\n{text}"
            );
        }
        assert!(edges.iter().any(|(_, b)| b == "output_0"), "{text}");
    }
    let out = finish(
        denorm().args([
            "explain",
            "--dot",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/dataflows/github_user_profile.toml"
            ),
        ]),
        RUN_TIMEOUT,
    );
    let text = out.stdout;
    for expected in [
        r#"label="index\nusers by (username)""#,
        r#"label="index\nusers by (id)""#,
        r#"label="index\npull_requests by (author)""#,
        r#"find\nusers(username) = pull_requests(author)"#,
        r#"find\nstars(repo_owner, repo_name) = repos(owner, name)"#,
        r#"output topic github.user_profile\nkey (email)"#,
        r#"github.public.stars"#,
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

/// `check --brokers` with the good file's topics renamed: users → `users`, orders → `orders`.
fn check_topics(users: &str, orders: &str, broker_flag: bool) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.toml");
    std::fs::write(
        &path,
        GOOD.replace("\"db.users\"", &format!("\"{users}\""))
            .replace("\"db.orders\"", &format!("\"{orders}\"")),
    )
    .unwrap();
    let mut command = denorm();
    command.args(["check", path.to_str().unwrap(), "--sample", "2"]);
    if broker_flag {
        command.args(["--brokers", &common::brokers()]);
    } else {
        command.env("DENORM_BROKERS", common::brokers());
    }
    let out = finish(&mut command, RUN_TIMEOUT);
    (out.ok(), out.text())
}

#[test]
fn check_with_brokers_samples_the_topics() {
    let scratch = common::Scratch::new("check");
    let prefix = scratch.prefix.clone();
    let (users, orders, bad_orders) = (
        format!("{prefix}.users"),
        format!("{prefix}.orders"),
        format!("{prefix}.orders_typo"),
    );
    denorm::kafka::admin::ensure_topics(&common::kafka(), &[&users, &orders, &bad_orders], 2)
        .unwrap();
    let record = |topic: &str, key: serde_json::Value, row: serde_json::Value| {
        let value = serde_json::json!({"before": null, "after": row, "op": "c", "source": {}});
        (
            topic.to_owned(),
            Some(key.to_string()),
            Some(value.to_string()),
        )
    };
    let mut records = Vec::new();
    for i in 0..8 {
        records.push(record(
            &users,
            serde_json::json!({"id": i}),
            serde_json::json!({"id": i, "name": format!("u{i}"), "email": "e"}),
        ));
        records.push(record(
            &orders,
            serde_json::json!({"id": i}),
            serde_json::json!({"id": i, "user_id": i, "total": "1.50"}),
        ));
        // The table's column is `totl`, the product says `total`.
        records.push(record(
            &bad_orders,
            serde_json::json!({"id": i}),
            serde_json::json!({"id": i, "user_id": i, "totl": "1.50"}),
        ));
    }
    common::produce(&records);

    let (ok, text) = check_topics(&users, &orders, true);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("ok   {users} (source `users`): 2 partitions")),
        "{text}"
    );
    assert!(
        text.contains(&format!("ok   {orders} (source `orders`)")),
        "{text}"
    );
    // Columns the records have but the product does not declare are a note, not a failure.
    assert!(text.contains("not declare (ignored): email"), "{text}");

    // DENORM_BROKERS stands for --brokers.
    let (ok, text) = check_topics(&users, &bad_orders, false);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("FAIL {bad_orders} (source `orders`)")),
        "{text}"
    );
    assert!(
        text.contains("shop.toml:13:"),
        "the problem points at the columns line:\n{text}"
    );
    // Every record lacks the column: the problem names the first one sampled (offset 0 of the
    // first partition that has records) and counts the others sampled.
    let first = common::read_placed(&bad_orders)
        .into_iter()
        .next()
        .expect("records in the topic");
    assert_eq!(first.offset, 0);
    let sampled: usize = text
        .lines()
        .find(|l| l.starts_with(&format!("FAIL {bad_orders} ")))
        .and_then(|l| l.split(", ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sampled count:\n{text}"));
    assert!(
        text.contains(&format!(
            "the records have no column `total`, which the product declares (at topic {bad_orders} partition {} offset 0, and {} more sampled records)",
            first.partition,
            sampled - 1
        )) && text.contains("Did you mean `totl`?"),
        "{text}"
    );

    // A misspelt topic: it does not exist, and the one meant does.
    let (ok, text) = check_topics(&users, &format!("{prefix}.order"), true);
    assert!(!ok, "{text}");
    assert!(
        text.contains("shop.toml:11:")
            && text.contains("does not exist")
            && text.contains(&format!("Did you mean `{orders}`?")),
        "{text}"
    );
}

/// `check` samples the end of a partition written in large record batches. Such a partition's
/// last records lie inside a batch, and the test broker returns nothing for a fetch that starts
/// there (it took `check` 20 s and then failed); `check` now reads on. The record that makes
/// the check fail is the very last one, so the test fails unless the end was sampled.
#[test]
fn check_samples_the_end_of_a_partition_written_in_large_batches() {
    let scratch = common::Scratch::new("checkbatches");
    let prefix = scratch.prefix.clone();
    let (users, orders) = (format!("{prefix}.users"), format!("{prefix}.orders"));
    let kafka = common::kafka();
    denorm::kafka::admin::ensure_topics(&kafka, &[&users], 2).unwrap();
    denorm::kafka::admin::ensure_topics(&kafka, &[&orders], 1).unwrap();
    // librdkafka's usual batching for a bulk load.
    let mut batching = kafka.clone();
    batching.properties = vec![
        ("linger.ms".into(), "20".into()),
        ("batch.num.messages".into(), "10000".into()),
        ("batch.size".into(), "16000000".into()),
    ];
    let mut producer = denorm::kafka::admin::RecordProducer::new(&batching).unwrap();
    let record = |key: serde_json::Value, row: serde_json::Value| {
        (
            key.to_string(),
            serde_json::json!({"before": null, "after": row, "op": "c", "source": {}}).to_string(),
        )
    };
    let (key, value) = record(
        serde_json::json!({"id": 1}),
        serde_json::json!({"id": 1, "name": "u"}),
    );
    producer.send(&users, Some(&key), Some(&value)).unwrap();
    const ORDERS: i64 = 120_000;
    for i in 0..ORDERS {
        let total = if i == ORDERS - 1 {
            "not a number"
        } else {
            "1.50"
        };
        let (key, value) = record(
            serde_json::json!({"id": i}),
            serde_json::json!({"id": i, "user_id": 1, "total": total}),
        );
        producer.send(&orders, Some(&key), Some(&value)).unwrap();
    }
    producer.flush().unwrap();

    let (ok, text) = check_topics(&users, &orders, true);
    assert!(!ok, "the last record's total is not a decimal:\n{text}");
    assert!(
        text.contains(&format!("FAIL {orders} (source `orders`)"))
            && text.contains(&format!(
                "at topic {orders} partition 0 offset {}",
                ORDERS - 1
            )),
        "the problem names the partition's last record:\n{text}"
    );
}

/// Log lines carry colour codes only on a terminal, and not when NO_COLOR is set: a log file, a
/// pipe or a container log gets plain text. (`script` runs the command on a pseudo-terminal.)
#[test]
fn logs_are_coloured_only_on_a_terminal_without_no_color() {
    let text = check_logs(&["--log-level", "debug"], &[]);
    assert!(text.contains("denorm starting"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "colour codes in logs written to a pipe:\n{text:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("product.toml");
    std::fs::write(&path, GOOD).unwrap();
    let on_terminal = |no_color: Option<&str>| {
        let line = format!(
            "{} --log-level debug check {}",
            env!("CARGO_BIN_EXE_denorm"),
            path.display()
        );
        let mut command = std::process::Command::new("script");
        clean_env(&mut command)
            .args(["-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let out = finish(&mut command, RUN_TIMEOUT);
        assert!(out.ok(), "{}", out.text());
        out.stdout
    };
    let coloured = on_terminal(None);
    assert!(
        coloured.contains("denorm starting") && coloured.contains("\x1b["),
        "{coloured:?}"
    );
    let plain = on_terminal(Some("1"));
    assert!(
        plain.contains("denorm starting") && !plain.contains('\x1b'),
        "{plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_terminal(Some("")).contains("\x1b["));
}

/// With no broker reachable, `run` gives up after `--startup-timeout` with the brokers it tried
/// and the client's last error (it waited for ever, or blamed a missing topic), and the client's
/// own complaints while it waits are warnings, each once per 10 s (librdkafka logged
/// `FAIL … Connection refused` at ERROR about once a second).
#[test]
fn run_without_a_reachable_broker_gives_up_at_start_without_flooding_the_log() {
    // A port nothing listens on (nor can, while the test holds it).
    let refused = refused_port();
    let brokers = format!("127.0.0.1:{}", refused.port);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("product.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = finish(
        denorm()
            .args(["run", path.to_str().unwrap(), "--brokers", &brokers])
            .args(["--startup-timeout", "12", "--exit-when-caught-up"]),
        RUN_TIMEOUT,
    );
    let text = out.stderr;
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "error: no broker of {brokers} answered within 12s"
        )) && text.contains("Connection refused")
            && text.contains("--startup-timeout"),
        "{text}"
    );
    assert!(
        !text.contains("ERROR"),
        "client complaints are warnings:\n{text}"
    );
    // Each of the two kinds (librdkafka's FAIL line, its error callback) at most twice in 12 s.
    let refused = text
        .lines()
        .filter(|l| l.contains("Connection refused"))
        .count();
    assert!(
        (1..=5).contains(&refused),
        "{refused} lines about the refused connection:\n{text}"
    );
}

#[test]
fn check_reports_a_wrong_type_and_a_primary_key_unlike_the_record_key() {
    let scratch = common::Scratch::new("checktypes");
    let prefix = scratch.prefix.clone();
    let (users, orders) = (format!("{prefix}.users"), format!("{prefix}.orders"));
    denorm::kafka::admin::ensure_topics(&common::kafka(), &[&users, &orders], 1).unwrap();
    let value = |row: serde_json::Value| {
        Some(serde_json::json!({"before": null, "after": row, "op": "r", "source": {}}).to_string())
    };
    common::produce(&[
        // The users table is keyed by (id, region), not by id as the product says.
        (
            users.clone(),
            Some(r#"{"id": 1, "region": "eu"}"#.into()),
            value(serde_json::json!({"id": 1, "region": "eu", "name": "a"})),
        ),
        // user_id is a string in the table, an int in the product.
        (
            orders.clone(),
            Some(r#"{"id": 1}"#.into()),
            value(serde_json::json!({"id": 1, "user_id": "u1", "total": 2.5})),
        ),
    ]);
    let (ok, text) = check_topics(&users, &orders, true);
    assert!(!ok, "{text}");
    assert!(
        text.contains("shop.toml:7:")
            && text.contains("the record key has columns (id, region) but `primary_key` is [id]")
            && text.contains(r#"write primary_key = ["id", "region"]"#),
        "{text}"
    );
    assert!(
        text.contains("shop.toml:13:")
            && text.contains("column `user_id` does not fit its declared type `int`")
            && text.contains("the records carry a string"),
        "{text}"
    );
}

#[test]
fn check_warns_about_likely_mistakes_without_failing() {
    // `one` on a relation whose `on` is not the child's primary key: a customer has many orders.
    let (ok, text) = check(&GOOD.replace("cardinality = \"many\"", "cardinality = \"one\""));
    assert!(ok, "{text}");
    assert!(
        text.contains("product.toml:21:15: warning: relation `orders` is `one`, but several `orders` rows can match one `users` row")
            && text.contains("write cardinality = \"many\" for a list"),
        "{text}"
    );
    // A source nothing uses is not read.
    let (ok, text) = check(&GOOD.replace(
        "[document]",
        "[sources.refunds]\ntopic = \"db.refunds\"\nprimary_key = [\"id\"]\ncolumns = { id = \"int\" }\n\n[document]",
    ));
    assert!(ok, "{text}");
    assert!(
        text.contains("product.toml:15:1: warning: source `refunds` is declared but the document does not use it"),
        "{text}"
    );
    let (_, text) = check(GOOD);
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn the_readme_shop_example_checks_and_its_swapped_join_is_explained() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let from = readme
        .find("A shop with customers")
        .expect("the shop walk-through");
    let start = readme[from..].find("```toml\n").unwrap() + from + "```toml\n".len();
    let shop = &readme[start..start + readme[start..].find("```").unwrap()];
    let (ok, text) = check(shop);
    assert!(ok && !text.contains("warning"), "{text}");
    // The error the README shows is the one check gives.
    let (ok, text) = check(&shop.replace(
        r#"on = { id = "customer_id" }"#,
        r#"on = { customer_id = "id" }"#,
    ));
    assert!(!ok);
    let shown = readme
        .lines()
        .find(|l| l.starts_with("error: shop.toml:"))
        .unwrap()
        .trim_start_matches("error: shop.toml");
    assert!(
        text.contains(shown),
        "README shows `{shown}`, check says:\n{text}"
    );
}
