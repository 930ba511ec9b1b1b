//! denorm: Debezium change streams in, denormalized nested documents out, on differential
//! dataflow. Data flows one way: product file ([`spec`]) → [`plan`] → [`dataflow`] → sink.

pub mod dataflow;
pub mod decode;
pub mod plan;
pub mod spec;
pub mod temporal;
pub mod value;
pub mod gen;
pub mod verify;
