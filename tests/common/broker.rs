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
        // broker is down.
        let base = 19300 + (std::process::id() % 50) as u16 * 10;
        let port = (base..base + 500)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .unwrap();
        let broker = OwnBroker {
            port,
            state: tempfile::tempdir().unwrap(),
        };
        broker.up();
        broker
    }
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn script(&self, args: &[&str]) {
        let out = finish(
            Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker.sh"))
                .args(args)
                .env("DENORM_BROKER_PORT", self.port.to_string())
                .env("DENORM_BROKER_STATE", self.state.path()),
            Duration::from_secs(120),
        );
        assert!(out.ok(), "broker.sh {args:?}: {}", out.stderr);
    }
    pub fn up(&self) {
        self.script(&["start", "sqlite"]);
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
