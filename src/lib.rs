//! denorm: Debezium change streams in, denormalized nested documents out, on differential
//! dataflow. Data flows one way: product file ([`spec`]) → [`plan`] → [`dataflow`] → sink.

pub mod dataflow;
pub mod decode;
pub mod fault;
pub mod kafka;
pub mod plan;
pub mod row;
pub mod runtime;
pub mod tools;
pub mod value;
