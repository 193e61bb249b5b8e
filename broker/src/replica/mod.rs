//! The replica layer (Kafka's ReplicaManager). For now only the follower's
//! fetcher; the partition roles and leader-side follower tracking join it.

pub mod fetcher;
