//! A graceful stop, end to end against the test broker with `denorm verify` as the judge: SIGINT
//! while the job hydrates writes nothing; SIGTERM mid-stream writes the documents of exactly
//! the records read and says where it stopped; a restart takes up the rest.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// The positions of the job's stop log line (which must say the output is written).
fn stop_positions(job: &Job) -> HashMap<(String, i32), i64> {
    let lines = log_lines(
        &job.log(),
        "stopped on request (Ctrl-C/SIGTERM), the output of every record read is written",
    );
    assert_eq!(lines.len(), 1, "{}", job.log());
    parse_positions(lines[0]["fields"]["positions"].as_str().unwrap())
}

/// SIGINT while hydrating over an existing output topic exits 0 and writes nothing (the
/// documents would reflect part of the sources); SIGTERM mid-stream exits 0, says where it
/// stopped, and has written the documents of exactly the records it read; a restart resumes.
#[test]
fn a_signal_stops_the_job_gracefully_and_it_says_where() {
    let _heavy = heavy();
    let p = Product::new("stop");
    create_topics(&p.plan, 2);
    let b = brokers();
    let (records, snapshot) = p.generate(3000, 6000, 11);
    let (first, rest) = records.split_at(snapshot + 1000);
    produce(first);
    let first_log = run_ok(&[
        "run",
        p.path(),
        "--brokers",
        &b,
        "--exit-when-caught-up",
        "--log-json",
    ]);
    // One record per document: exactly the documents of the records so far.
    let written = read_all(&p.output()).len();
    let report = verify_clean(p.path(), &b, &first_log);
    assert_eq!(written, expected_documents(&report, &p.name), "{report}");
    assert_eq!(replayed(&report), first.len() as u64, "{report}");
    let (changes, rest) = rest.split_at(2000);
    produce(changes);

    // SIGINT while hydrating (small times, one in flight: hydration takes a while). The job is
    // frozen (SIGSTOP) once it has read records and before it caught up, and gets the signal
    // while frozen, so the stop comes while it hydrates however fast the machine is.
    let mut job = Job::start(
        &p,
        &b,
        &[
            "--batch-size",
            "16",
            "--max-epoch-records",
            "16",
            "--max-in-flight",
            "1",
        ],
    );
    wait_metrics(&mut job, Duration::from_secs(60), "reading", |m| {
        metric(m, "denorm_records_read_total") > 0.0
    });
    job.signal("STOP");
    let log = job.log();
    assert!(
        !log.contains("job caught up:"),
        "it caught up before it could be stopped, try a bigger data set:\n{log}"
    );
    job.signal("INT");
    job.signal("CONT");
    let status = job.wait_exit(Duration::from_secs(60));
    let log = job.log();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(
        !log.contains("job caught up:"),
        "it caught up before SIGINT:\n{log}"
    );
    let lines = log_lines(
        &log,
        "stopped on request (Ctrl-C/SIGTERM), before the job caught up",
    );
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0]["fields"]["positions"]
        .as_str()
        .unwrap()
        .contains(&p.topic("users")));
    assert_eq!(
        read_all(&p.output()).len(),
        written,
        "a stop while hydrating wrote to the output topic"
    );

    // SIGTERM mid-stream: changes are streaming in when it comes, and the last of them are
    // produced only after the job has exited (so the stop is mid-stream however fast it reads).
    let (streamed, after_stop) = rest.split_at(rest.len() / 2);
    let mut job = Job::start(&p, &b, &["--batch-size", "256"]);
    job.wait_log("job caught up", Duration::from_secs(60));
    let read_before = job.metric("denorm_records_read_total");
    let streamer = stream_in(streamed);
    wait_metrics(
        &mut job,
        Duration::from_secs(30),
        "reading the stream",
        |m| metric(m, "denorm_records_read_total") > read_before,
    );
    job.signal("TERM");
    let status = job.wait_exit(Duration::from_secs(60));
    streamer.join().unwrap();
    assert!(status.success(), "exit {status}:\n{}", job.log());
    let positions = stop_positions(&job);
    let read: i64 = positions.values().sum();
    assert!(
        read > (records.len() - rest.len()) as i64 && read < records.len() as i64,
        "the stop was not mid-stream: read {read} of {} records",
        records.len()
    );
    assert_eq!(records_read(&job.log()), read as u64, "{}", job.log());
    // Everything read before the stop is in the output, nothing more.
    let run = compare_at(&p, &positions);
    assert!(
        run.ok(0),
        "output after SIGTERM vs the records read before it:\n{}",
        run.report(0)
    );

    // A restart takes up the rest.
    produce(after_stop);
    let restart_log = run_ok(&["run", p.path(), "--brokers", &b, "--exit-when-caught-up"]);
    assert_eq!(
        records_read(&restart_log),
        records.len() as u64,
        "{restart_log}"
    );
    let report = verify_clean(p.path(), &b, &restart_log);
    assert_eq!(replayed(&report), records.len() as u64, "{report}");
}
