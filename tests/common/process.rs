//! Child processes: `denorm` with a clean environment; every run and every wait bounded by a
//! timeout (a test fails saying what hung, it does not hang the suite); long-running children
//! logging to a file; jobs of two processes on free ports; the lock that serialises the heavy
//! tests.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a child run may take unless the test says otherwise.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Removes the developer's `DENORM_*` variables (settings, Kafka settings, faults) and
/// `RUST_LOG` from a child's environment: the test sets what it means.
pub fn clean_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("DENORM_")) || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// The `denorm` binary of this build, with a clean environment.
pub fn denorm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_denorm"));
    clean_env(&mut command);
    command
}

/// How a child run ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    /// stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` up to `timeout`; after that kills it and returns `None`.
pub fn wait_until(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `command` to its end, its output captured; kills it and fails the test, with what it
/// printed, if it takes longer than `timeout`.
pub fn finish(command: &mut Command, timeout: Duration) -> Finished {
    let described = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_until(&mut child, timeout);
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => Finished {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{described} did not finish within {timeout:?} and was killed; it printed:\n{stdout}{stderr}"
        ),
    }
}

/// Runs `denorm ARGS` (within [`RUN_TIMEOUT`]): whether it succeeded, and its stdout then stderr.
pub fn output(args: &[&str]) -> (bool, String) {
    let out = finish(denorm().args(args), RUN_TIMEOUT);
    (out.ok(), out.text())
}

/// Runs `denorm ARGS`, asserts it succeeded, and returns its stdout and stderr.
pub fn run_ok(args: &[&str]) -> String {
    let (ok, text) = output(args);
    assert!(ok, "denorm {args:?} failed:\n{text}");
    text
}

/// A child that runs while the test goes on, its stdout and stderr in a log file; killed when
/// dropped.
pub struct Running {
    child: Child,
    pub log_path: PathBuf,
    what: String,
}

impl Running {
    /// Starts `command` with its output going to `log`.
    pub fn spawn(command: &mut Command, log: &Path) -> Running {
        let what = format!("{command:?}");
        let file = std::fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Running {
            child,
            log_path: log.to_owned(),
            what,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The exit status if it has ended.
    pub fn ended(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends `kill -SIGNAL` (INT, TERM, KILL, STOP, CONT…).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for it to exit; kills it and fails the test, with its log, after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match wait_until(&mut self.child, timeout) {
            Some(status) => status,
            None => panic!(
                "{} did not exit within {timeout:?} and was killed; its log:\n{}",
                self.what,
                self.log()
            ),
        }
    }

    /// Waits until its log contains `needle`; fails the test, with the log, if it exits first or
    /// `timeout` passes.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if let Some(status) = self.ended() {
                // It may have written the line just before it exited.
                assert!(
                    self.log().contains(needle),
                    "it exited ({status}) without `{needle}` in its log:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < end,
                "no `{needle}` in the log within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two ports of 127.0.0.1 that nothing listens on now, below the ephemeral range (so no
/// outgoing connection takes them meanwhile), chosen at random (so parallel tests and other
/// checkouts seldom pick the same).
fn two_free_ports() -> [u16; 2] {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ ((std::process::id() as u64) << 32);
    let mut next = || {
        // xorshift
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        20_000 + (seed % 12_000) as u16
    };
    let mut ports = [0u16; 2];
    let mut found = 0;
    while found < 2 {
        let port = next();
        if ports[..found].contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports[found] = port;
            found += 1;
        }
    }
    ports
}

/// Starts a job of two processes on this machine (`denorm ARGS -n 2 -p P -h HOSTFILE`), logs
/// `process0.log` and `process1.log` in `dir`. The ports of the hostfile are free when chosen;
/// if one is taken before its process binds it, that process fails with `Address already in
/// use`: both are stopped and started again on other ports. Returns once both processes have
/// their workers running (their networking is up), or one has ended for another reason.
pub fn two_processes(dir: &Path, args: &[&str]) -> [Running; 2] {
    let hosts = dir.join("hosts");
    for _attempt in 0..5 {
        let ports = two_free_ports();
        std::fs::write(
            &hosts,
            format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
        )
        .unwrap();
        let start = |p: usize| {
            Running::spawn(
                denorm().args(args).args([
                    "-n",
                    "2",
                    "-p",
                    &p.to_string(),
                    "-h",
                    hosts.to_str().unwrap(),
                ]),
                &dir.join(format!("process{p}.log")),
            )
        };
        let mut procs = [start(0), start(1)];
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            // (Whether one ended, before reading the logs: then its log is complete.)
            let ended = procs.iter_mut().any(|p| p.ended().is_some());
            let logs = [procs[0].log(), procs[1].log()];
            if logs.iter().any(|l| l.contains("Address already in use")) {
                break;
            }
            // Each worker says which partitions it reads only once the processes are connected.
            if ended || logs.iter().all(|l| l.contains("worker reading")) {
                return procs;
            }
            assert!(
                Instant::now() < end,
                "the two processes did not start within 120 s:\n--- process 0:\n{}\n--- process 1:\n{}",
                logs[0],
                logs[1]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("a port of {ports:?} was taken before its process bound it: starting again");
    }
    panic!("five attempts to start two processes found a port taken every time");
}

/// A port of 127.0.0.1 that refuses connections for as long as the guard lives: the local end
/// of a connection the test holds. No socket listens on it, and none can be bound to it while
/// the connection is open.
pub struct RefusedPort {
    pub port: u16,
    _ends: (std::net::TcpStream, std::net::TcpStream),
}

pub fn refused_port() -> RefusedPort {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    RefusedPort {
        port: client.local_addr().unwrap().port(),
        _ends: (client, server),
    }
}

/// Held by a heavy test (big data, timing-sensitive measurements, brokers of its own) while it
/// runs: one at a time in a test binary, and across the test binaries of this target directory
/// (a file lock), so that they do not slow each other into timeouts.
pub struct Heavy {
    _file: std::fs::File,
    _process: MutexGuard<'static, ()>,
}

pub fn heavy() -> Heavy {
    static ONE: Mutex<()> = Mutex::new(());
    let process = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("denorm-heavy-tests.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    file.lock().unwrap();
    Heavy {
        _file: file,
        _process: process,
    }
}
