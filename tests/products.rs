//! Several data products in one job (issue 10): sources read once and shared, products added,
//! removed and edited while the job runs, judged by `denorm verify` per product.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Generates the GitHub tables of `profile` (the user profile file names every source).
fn generate(profile: &Path, seed: u64) -> u64 {
    let out = run_ok(&[
        "gen",
        profile.to_str().unwrap(),
        "--brokers",
        &brokers(),
        "--scale",
        "200",
        "--changes",
        "300",
        "--partitions",
        "2",
        "--seed",
        &seed.to_string(),
    ]);
    out.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("gen said: {out}"))
}

fn verify(file: &Path) -> (bool, String) {
    verify_with(file.to_str().unwrap(), &brokers(), &[])
}

/// Verify passes, with every input record decoded.
fn verify_ok(file: &Path) -> bool {
    let (ok, report) = verify(file);
    ok && report.contains("(0 undecodable)")
}

/// The report of a fresh verify run (for failure messages).
fn verify_report(file: &Path) -> String {
    verify(file).1
}

/// Writes a product file into a watched folder all at once (write, then rename).
fn drop_in(folder: &Path, name: &str, text: &str) {
    let tmp = folder.join(format!(".{name}.partial"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, folder.join(name)).unwrap();
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Stops a job with SIGTERM; its exit status.
fn stop(mut job: Running) -> std::process::ExitStatus {
    job.signal("TERM");
    job.wait(Duration::from_secs(120))
}

#[test]
fn two_products_in_one_job_read_each_topic_once_and_both_verify() {
    let scratch = Scratch::new("two");
    let prefix = scratch.prefix.clone();
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("products");
    std::fs::create_dir(&folder).unwrap();
    let profile = product_file(&folder, "github_user_profile.toml", &prefix);
    let card = product_file(&folder, "github_repo_card.toml", &prefix);
    let records = generate(&profile, 7);

    let out = finish(
        denorm()
            .args(["run", folder.to_str().unwrap(), "--brokers", &brokers()])
            .args(["-w", "2", "--exit-when-caught-up"])
            .env("NO_COLOR", "1"),
        RUN_TIMEOUT,
    );
    assert!(out.ok(), "{}", out.stderr);
    let log = out.stderr;
    // Each source topic was consumed once for both products.
    assert_eq!(records_read(&log), records, "{log}");
    for file in [&profile, &card] {
        verify_clean(file.to_str().unwrap(), &brokers(), &log);
    }

    // explain on the folder lists each source once for both products, and each index once
    // with every relation that uses it: four are shared by the two products, two are the
    // user profile's own.
    let explained = run_ok(&["explain", folder.to_str().unwrap()]);
    for table in ["users", "repos", "stars", "pull_requests", "payment_info"] {
        let topic = format!("topic {prefix}.public.{table} ");
        assert_eq!(
            explained.matches(&topic).count(),
            1,
            "{topic} in:\n{explained}"
        );
    }
    let indexes: Vec<&str> = explained
        .lines()
        .skip_while(|l| !l.starts_with("indexes of rows by link columns"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(
        indexes,
        [
            "stars(username) used by github_repo_card:document.stargazers, github_user_profile:document.starred_repos(through stars)",
            "stars(repo_owner, repo_name) used by github_repo_card:document.stargazers(through stars), github_user_profile:document.starred_repos",
            "users(id) used by github_user_profile:document.payment_verified",
            "users(username) used by github_repo_card:document.pull_requests.author, github_repo_card:document.stargazers, github_user_profile:document.pull_requests, github_user_profile:document.starred_repos(through stars)",
            "pull_requests(repo_owner, repo) used by github_repo_card:document.pull_requests",
            "pull_requests(author) used by github_repo_card:document.pull_requests.author, github_user_profile:document.pull_requests",
        ],
        "{explained}"
    );
}

#[test]
fn products_are_added_removed_and_rebuilt_while_the_job_runs() {
    let scratch = Scratch::new("live");
    let prefix = scratch.prefix.clone();
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("products");
    let staging = data.path().join("staging");
    std::fs::create_dir(&folder).unwrap();
    std::fs::create_dir(&staging).unwrap();
    let profile = product_file(&folder, "github_user_profile.toml", &prefix);
    let card_text =
        std::fs::read_to_string(product_file(&staging, "github_repo_card.toml", &prefix)).unwrap();
    generate(&profile, 11);

    let log = data.path().join("job.log");
    let job = watching_job(&folder, &log);

    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&profile)),
        "the first product never verified: {}\n{}",
        verify_report(&profile),
        log_of(&log)
    );

    // Added: hydrated from the arrangements in memory, reading no source again.
    drop_in(&folder, "github_repo_card.toml", &card_text);
    let card = folder.join("github_repo_card.toml");
    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&card)),
        "the added product never verified: {}\n{}",
        verify_report(&card),
        log_of(&log)
    );
    let text = log_of(&log);
    assert!(
        text.contains("installed a product file") && text.contains("new_sources=0"),
        "{text}"
    );

    // Changes flow to both products.
    generate(&profile, 12);
    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&profile)
            && verify_ok(&card)),
        "after more changes: {}{}\n{}",
        verify_report(&profile),
        verify_report(&card),
        log_of(&log)
    );

    // Removed: its topic gets nothing more, the other product goes on.
    let kept = data.path().join("github_user_profile.toml");
    std::fs::rename(&profile, &kept).unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || log_of(&log)
            .contains("removed a product")),
        "{}",
        log_of(&log)
    );
    let profile_records = read_all(&format!("{prefix}.user_profile")).len();
    let sources: Vec<String> = ["users", "repos", "stars", "pull_requests", "payment_info"]
        .iter()
        .map(|t| format!("{prefix}.public.{t}"))
        .collect();
    let at_removal = ends(&sources.iter().map(String::as_str).collect::<Vec<_>>());
    generate(&kept, 13);
    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&card)),
        "after removing the other product: {}\n{}",
        verify_report(&card),
        log_of(&log)
    );
    assert_eq!(
        read_all(&format!("{prefix}.user_profile")).len(),
        profile_records,
        "a removed product wrote"
    );
    // The removed product's topic is stale: verify finds documents that differ from the inputs,
    // and no other fault (every input decoded, nothing it cannot read); and it is exactly
    // stale, holding the documents of the records there were when the product was removed.
    let (ok, report) = verify(&kept);
    assert!(
        !ok && report.contains("(0 undecodable)")
            && report.contains("github_user_profile: MISMATCH")
            && differences(&report, "github_user_profile")
                .iter()
                .sum::<usize>()
                > 0,
        "the removed product's topic should now be stale:\n{report}"
    );
    let then = compare_file_at(&kept, &at_removal);
    assert!(
        then.ok(0),
        "the removed product's topic against the records there were when it was removed:\n{}",
        then.report(0)
    );

    // Edited: rebuilt, and its topic converges to the new documents.
    let edited = card_text.replace(
        r#"fields = ["owner", "name", "description", "star_count", "fork_count"]"#,
        r#"fields = ["owner", "name", "description"]"#,
    );
    assert_ne!(edited, card_text);
    drop_in(&folder, "github_repo_card.toml", &edited);
    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&card)),
        "the edited product never verified: {}\n{}",
        verify_report(&card),
        log_of(&log)
    );
    assert!(log_of(&log).contains("product file changed"));

    // A broken file is reported and changes nothing.
    drop_in(&folder, "broken.toml", "[product]\nname = 3\n");
    assert!(wait_for(Duration::from_secs(30), || log_of(&log)
        .contains("product file not installed")));
    assert!(verify_ok(&card));

    let status = stop(job);
    assert!(status.success(), "{}", log_of(&log));
}

/// The test data product that nests relations of both GitHub products, with topics of `prefix`.
fn repo_feed_text(prefix: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/github_repo_feed.toml"),
    )
    .unwrap()
    .replace("\"github.", &format!("\"{prefix}."))
}

#[test]
fn a_third_product_added_to_a_running_job_shares_relations_and_all_three_verify() {
    let scratch = Scratch::new("third");
    let prefix = scratch.prefix.clone();
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("products");
    std::fs::create_dir(&folder).unwrap();
    let profile = product_file(&folder, "github_user_profile.toml", &prefix);
    let card = product_file(&folder, "github_repo_card.toml", &prefix);
    generate(&profile, 21);

    let log = data.path().join("job.log");
    let job = watching_job(&folder, &log);
    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&profile)
            && verify_ok(&card)),
        "the first two products never verified: {}{}\n{}",
        verify_report(&profile),
        verify_report(&card),
        log_of(&log)
    );

    // The third nests relations of both: explain says so, and it is hydrated from them.
    drop_in(&folder, "github_repo_feed.toml", &repo_feed_text(&prefix));
    let feed = folder.join("github_repo_feed.toml");
    let explained = run_ok(&["explain", folder.to_str().unwrap()]);
    for shared in [
        "github_repo_card:document.pull_requests, github_repo_feed:document.prs",
        "github_repo_feed:document.owner_profile.starred_repos, github_user_profile:document.starred_repos",
    ] {
        assert!(explained.contains(shared), "{shared} in:\n{explained}");
    }
    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&feed)),
        "the third product never verified: {}\n{}",
        verify_report(&feed),
        log_of(&log)
    );
    let text = log_of(&log);
    assert!(
        text.contains("github_repo_feed") && text.contains("new_sources=0"),
        "{text}"
    );
    // It holds no rows of its own: of the six indexes it finds rows through, five were built
    // already for the other two products.
    assert!(
        text.contains("product=github_repo_feed indexes=6 shared_indexes=5"),
        "{text}"
    );

    // Changes flow to all three.
    generate(&profile, 22);
    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&profile)
            && verify_ok(&card)
            && verify_ok(&feed)),
        "after more changes: {}{}{}\n{}",
        verify_report(&profile),
        verify_report(&card),
        verify_report(&feed),
        log_of(&log)
    );

    // Removing the product whose relations the third one imports: the shared relations stay,
    // and changes still reach the other two.
    std::fs::remove_file(&card).unwrap();
    assert!(wait_for(Duration::from_secs(30), || log_of(&log)
        .contains("removed a product")));
    generate(&profile, 23);
    assert!(
        wait_for(Duration::from_secs(60), || verify_ok(&profile)
            && verify_ok(&feed)),
        "after removing the repo card: {}{}\n{}",
        verify_report(&profile),
        verify_report(&feed),
        log_of(&log)
    );

    let status = stop(job);
    assert!(status.success(), "{}", log_of(&log));
}

/// A 2-worker job over the products of `folder`, watching it every 0.3 s, logging to `log`;
/// stopped when the guard drops.
fn watching_job(folder: &Path, log: &Path) -> Running {
    Running::spawn(
        denorm()
            .args([
                "run",
                folder.to_str().unwrap(),
                "--brokers",
                &brokers(),
                "-w",
                "2",
                "--watch-interval",
                "0.3",
            ])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1"),
        log,
    )
}

/// A product that declares only the columns it uses of two shared topics, in another order
/// than the user profile does. Named to load first, so the shared sources start with its
/// columns and grow by the profile's: both products' column numbers are renumbered.
const PR_AUTHORS: &str = r#"[product]
name = "pr_authors"
output_topic = "PREFIX.pr_authors"

[sources.prs]
topic = "PREFIX.public.pull_requests"
primary_key = ["repo", "repo_owner", "index"]
columns = { author = "string", index = "int", repo_owner = "string", repo = "string" }

[sources.people]
topic = "PREFIX.public.users"
primary_key = ["email"]
columns = { username = "string", email = "string" }

[document]
source = "prs"
fields = ["repo", "index"]

[[document.relations]]
name = "author"
cardinality = "one"
source = "people"
on = { author = "username" }
fields = ["email"]
"#;

#[test]
fn products_may_declare_different_columns_of_a_shared_topic() {
    let scratch = Scratch::new("cols");
    let prefix = scratch.prefix.clone();
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("products");
    std::fs::create_dir(&folder).unwrap();
    let profile = product_file(&folder, "github_user_profile.toml", &prefix);
    let authors = folder.join("a_pr_authors.toml");
    std::fs::write(&authors, PR_AUTHORS.replace("PREFIX", &prefix)).unwrap();
    let records = generate(&profile, 11);

    let explained = run_ok(&["explain", folder.to_str().unwrap()]);
    assert!(
        explained.contains("key (repo, repo_owner, index) columns: author string, index int, repo_owner string, repo string, title string, status string, created_at timestamp"),
        "the shared source holds the union, the first file's columns first:\n{explained}"
    );
    let out = finish(
        denorm()
            .args(["run", folder.to_str().unwrap(), "--brokers", &brokers()])
            .args(["-w", "2", "--exit-when-caught-up", "--watch-interval", "0"])
            .env("NO_COLOR", "1"),
        RUN_TIMEOUT,
    );
    assert!(out.ok(), "{}", out.stderr);
    let log = out.stderr;
    // Each topic read once.
    assert_eq!(records_read(&log), records, "{log}");
    for file in [&profile, &authors] {
        verify_clean(file.to_str().unwrap(), &brokers(), &log);
    }
    // Another type for a column both declare is refused, saying which.
    let clash = PR_AUTHORS
        .replace("PREFIX", &prefix)
        .replace(r#"index = "int""#, r#"index = "string""#);
    std::fs::write(&authors, clash).unwrap();
    let (ok, text) = output(&["check", folder.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(text.contains("`index` is string there, int here"), "{text}");
}
