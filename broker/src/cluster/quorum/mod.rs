//! The controller quorum: a KRaft-like replicated metadata log. This first
//! step holds the metadata itself: the log's record types (`records`) and
//! the deterministic image they build (`image`).

pub mod image;
pub mod records;
