//! A tansu broker of a test's own, with sqlite storage (data survive a restart): for outages.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::finish;
use super::wait_for;

pub struct OwnBroker {
    pub port: u16,
    state: tempfile::TempDir,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        // A port outside the ephemeral range, so that no client connection takes it while the
        // broker is down. A port found free can be taken before tansu binds it (another suite
        // starting its own broker): then broker.sh finds something listening there, which is not
        // ours, and the next port is tried.
        let base = 19300 + (std::process::id() % 50) as u16 * 10;
        for port in base..base + 500 {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let broker = OwnBroker {
                port,
                state: tempfile::tempdir().unwrap(),
            };
            if broker.try_up() {
                return broker;
            }
        }
        panic!("no port from {base} on could take a broker of the test's own");
    }
    /// Starts this broker; false if its port was taken by something else meanwhile.
    fn try_up(&self) -> bool {
        let out = self.run_script(&["start", "sqlite"]);
        out.ok() && out.stderr.contains("tansu (sqlite) listening")
    }
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn run_script(&self, args: &[&str]) -> super::process::Finished {
        finish(
            Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker.sh"))
                .args(args)
                .env("DENORM_BROKER_PORT", self.port.to_string())
                .env("DENORM_BROKER_STATE", self.state.path()),
            Duration::from_secs(120),
        )
    }
    fn script(&self, args: &[&str]) {
        let out = self.run_script(args);
        assert!(out.ok(), "broker.sh {args:?}: {}", out.stderr);
    }
    /// Starts the broker again on its port (after [`OwnBroker::down`]).
    pub fn up(&self) {
        assert!(
            self.try_up(),
            "the broker's port {} was taken while it was down",
            self.port
        );
    }
    pub fn down(&self) {
        self.script(&["stop"]);
        assert!(
            wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(
                self.addr()
            )
            .is_err()),
            "the broker still accepts connections"
        );
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = super::process::wait_until(
            &mut Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker.sh"))
                .arg("stop")
                .env("DENORM_BROKER_PORT", self.port.to_string())
                .env("DENORM_BROKER_STATE", self.state.path())
                .spawn()
                .unwrap(),
            Duration::from_secs(60),
        );
    }
}
