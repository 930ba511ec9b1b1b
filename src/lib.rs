//! denorm: Debezium change streams in, denormalized nested documents out, on differential
//! dataflow. Data flows one way: product file ([`spec`]) → [`plan`] → [`dataflow`] → sink.

pub mod bench;
pub mod check;
pub mod dataflow;
pub mod decode;
pub mod demo;
pub mod explain;
pub mod fault;
pub mod gen;
pub mod kafka;
pub mod latency;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod row;
pub mod runtime;
pub mod spec;
pub mod suggest;
pub mod temporal;
pub mod value;
pub mod watch;
