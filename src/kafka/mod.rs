//! Kafka I/O: client settings ([`client`]), reading source partitions ([`source`]) and writing
//! product documents ([`producer`]).

pub mod admin;
pub mod client;
pub mod dlq;
pub mod producer;
pub mod source;
