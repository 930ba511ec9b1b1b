//! Prometheus metrics of a job, served as text on `--metrics-addr`: records read, decode errors
//! and dead letters per source topic, consumer lag per source partition, rows held per source
//! and updates held in arrangements, documents written and end-to-end latency per output topic,
//! and whether (and after how long) the job caught up with its sources. Every value is this
//! process's share; a multi-process job is the sum over its processes (the lag of a partition
//! comes from the one process that reads it).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// The buckets of the end-to-end latency, in seconds: 1 ms to 60 s.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct Metrics {
    pub records_read: Family<TopicLabel, Counter>,
    pub decode_errors: Family<TopicLabel, Counter>,
    /// Undecodable records written to the dead-letter topic, by the topic they came from.
    pub dead_letters: Family<TopicLabel, Counter>,
    /// The partition's high watermark (as the consumer last saw it) minus the next offset to read.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Current rows (one per primary key) held by each source's upsert state.
    pub source_rows: Family<SourceLabel, Gauge>,
    /// Updates held in all differential arrangements (joins and nesting state).
    pub arrangement_records: Gauge,
    pub documents_written: Family<TopicLabel, Counter>,
    /// From the oldest source record of the batches a window of output came from, to the
    /// delivery of each record of that window (see the README).
    pub latency: Family<TopicLabel, Histogram, fn() -> Histogram>,
    /// 1 once every worker has read its partitions to the end they had at start and their
    /// documents are handed to the producer (`workers_behind` says when they are delivered).
    pub caught_up: Gauge,
    /// Workers of this process that have read records whose documents are not yet written and
    /// delivered (all of them until they caught up); 0: the output shows everything read.
    pub workers_behind: Gauge,
    pub hydration_seconds: Gauge<f64, AtomicU64>,
    registry: Registry,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("denorm");
        let metrics = Metrics {
            records_read: Family::default(),
            decode_errors: Family::default(),
            dead_letters: Family::default(),
            consumer_lag: Family::default(),
            source_rows: Family::default(),
            arrangement_records: Gauge::default(),
            documents_written: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            caught_up: Gauge::default(),
            workers_behind: Gauge::default(),
            hydration_seconds: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "records_read",
            "Source records read",
            metrics.records_read.clone(),
        );
        registry.register(
            "decode_errors",
            "Source records that could not be decoded",
            metrics.decode_errors.clone(),
        );
        registry.register(
            "dead_letters",
            "Undecodable source records written to the dead-letter topic",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records of a source partition not read yet: its high watermark minus the next offset",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "source_rows",
            "Rows (one per primary key) held by a source's upsert state",
            metrics.source_rows.clone(),
        );
        registry.register(
            "arrangement_records",
            "Updates held in the differential arrangements (join and nesting state)",
            metrics.arrangement_records.clone(),
        );
        registry.register(
            "documents_written",
            "Documents and tombstones written",
            metrics.documents_written.clone(),
        );
        registry.register_with_unit(
            "end_to_end_latency",
            "From the Kafka timestamp of the oldest source record of the input batches an output \
             window came from, to the delivery of each output record of that window",
            Unit::Seconds,
            metrics.latency.clone(),
        );
        registry.register(
            "workers_behind",
            "Workers that have read records whose documents are not yet written and delivered",
            metrics.workers_behind.clone(),
        );
        registry.register(
            "caught_up",
            "Whether the job has caught up with its sources (0 or 1)",
            metrics.caught_up.clone(),
        );
        registry.register(
            "hydration_seconds",
            "Seconds from start until the job caught up",
            metrics.hydration_seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    })
}

pub fn topic(topic: &str) -> TopicLabel {
    TopicLabel {
        topic: topic.to_owned(),
    }
}

pub fn source(source: &str) -> SourceLabel {
    SourceLabel {
        source: source.to_owned(),
    }
}

/// Counts, in `arrangement_records`, the updates held by the arrangements this worker builds
/// from now on (from differential's batch, merge and drop events). Call before building the
/// dataflow.
pub fn track_arrangements(worker: &mut timely::worker::Worker) {
    use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
    let Some(mut register) = worker.log_register() else {
        return;
    };
    let gauge = metrics().arrangement_records.clone();
    register.insert::<DifferentialEventBuilder, _>("differential/arrange", move |_time, events| {
        let Some(events) = events else { return };
        let mut change = 0i64;
        for (_, event) in events.iter() {
            change += match event {
                DifferentialEvent::Batch(b) => b.length as i64,
                DifferentialEvent::Merge(m) => match m.complete {
                    Some(merged) => merged as i64 - m.length1 as i64 - m.length2 as i64,
                    None => 0,
                },
                DifferentialEvent::Drop(d) => -(d.length as i64),
                _ => 0,
            };
        }
        if change != 0 {
            gauge.inc_by(change);
        }
    });
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
    // The address bound: with port 0, the one the system chose.
    let addr = listener
        .local_addr()
        .map_or(addr.to_owned(), |a| a.to_string());
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
