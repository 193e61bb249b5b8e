//! Networking: connections to brokers (pipelined by correlation id), API
//! version negotiation, and the cluster view (metadata cache, one
//! connection per broker, reconnect backoff, group coordinators).

pub mod cluster;
pub mod connection;
pub mod sasl;
mod secure;
pub mod tls;
pub mod versions;

pub use cluster::{Cluster, CoordinatorType, PartitionInfo, TopicInfo};
pub use connection::Connection;
