//! The controller quorum: a KRaft-like replicated metadata log. So far the
//! metadata (`records`, `image`), openraft's type configuration (`types`)
//! and the durable storage of one controller (`log_store`, `state_machine`).

pub mod image;
pub mod log_store;
pub mod records;
pub mod state_machine;
pub mod types;
