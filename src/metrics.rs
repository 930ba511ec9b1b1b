//! Prometheus metrics of a job, served as text on `--metrics-addr`: records read, decode
//! errors and dead letters per source topic, documents written per output topic, and whether (and after how
//! long) the job caught up with its sources.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

pub struct Metrics {
    pub records_read: Family<TopicLabel, Counter>,
    pub decode_errors: Family<TopicLabel, Counter>,
    /// Undecodable records written to the dead-letter topic, per source topic they came from.
    pub dead_letters: Family<TopicLabel, Counter>,
    pub documents_written: Family<TopicLabel, Counter>,
    /// 1 once every worker has read its partitions to the end they had at start and the
    /// output is written.
    pub caught_up: Gauge,
    pub hydration_seconds: Gauge<f64, AtomicU64>,
    registry: Registry,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("denorm");
        let records_read = Family::<TopicLabel, Counter>::default();
        let decode_errors = Family::<TopicLabel, Counter>::default();
        let dead_letters = Family::<TopicLabel, Counter>::default();
        let documents_written = Family::<TopicLabel, Counter>::default();
        let caught_up = Gauge::default();
        let hydration_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register("records_read", "Source records read", records_read.clone());
        registry.register(
            "decode_errors",
            "Source records that could not be decoded",
            decode_errors.clone(),
        );
        registry.register(
            "dead_letters",
            "Undecodable source records written to the dead-letter topic, by source topic",
            dead_letters.clone(),
        );
        registry.register(
            "documents_written",
            "Documents and tombstones written",
            documents_written.clone(),
        );
        registry.register(
            "caught_up",
            "Whether the job has caught up with its sources (0 or 1)",
            caught_up.clone(),
        );
        registry.register(
            "hydration_seconds",
            "Seconds from start until the job caught up",
            hydration_seconds.clone(),
        );
        Metrics {
            records_read,
            decode_errors,
            dead_letters,
            documents_written,
            caught_up,
            hydration_seconds,
            registry,
        }
    })
}

pub fn topic(topic: &str) -> TopicLabel {
    TopicLabel {
        topic: topic.to_owned(),
    }
}

/// The metrics in Prometheus' text format.
pub fn render() -> String {
    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}

/// Serves the metrics over HTTP on `addr` from a background thread.
pub fn serve(addr: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    tracing::info!(%addr, "serving metrics at /metrics");
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let body = render();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(())
}
