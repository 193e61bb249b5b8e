//! pending
use super::*;
pub struct OffsetFetchGroupResult; pub struct OffsetFetchPartitionResult; pub struct OffsetFetchTopicResult;
impl GroupCoordinator { pub(crate) fn expire_offsets(&self, _n: i64) {} pub fn load(&self, _r: Vec<(Bytes, Option<Bytes>)>) {} }
