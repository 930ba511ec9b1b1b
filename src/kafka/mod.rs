//! Kafka I/O: client settings ([`client`]), reading source partitions ([`source`]) and where
//! each reader is ([`position`]), writing product documents ([`producer`]) and dead letters
//! ([`dlq`]), topic administration ([`admin`]).

pub mod admin;
pub mod client;
pub mod dlq;
pub mod output;
pub mod position;
pub mod producer;
pub mod source;
