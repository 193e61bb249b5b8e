//! Deleting old data: time- and size-based retention for
//! `cleanup.policy=delete`, and DeleteRecords moving the log start offset
//! (checkpointed so it survives a restart). Whole segments are removed; a
//! fetch already holding a segment's file handle finishes unharmed.

use sluice_protocol::clock::now_ms;

use super::recovery::write_checkpoint;
use super::{LogError, PartitionLog};

impl PartitionLog {
    /// Applies retention once; returns the number of segments deleted.
    pub fn apply_retention(&self) -> usize {
        let cfg = self.config.borrow().clone();
        if !cfg.cleanup_delete {
            return 0;
        }
        let now = now_ms();
        let mut st = self.state.borrow_mut();
        let mut total: u64 = st.size_bytes();
        let mut doomed = Vec::new();
        let active_base = st.segments.keys().next_back().copied();
        for (base, seg) in &st.segments {
            if Some(*base) == active_base || seg.next_offset > st.high_watermark {
                break;
            }
            let last_ts = if seg.max_timestamp >= 0 {
                seg.max_timestamp
            } else {
                seg.created_ms
            };
            let by_time = cfg.retention_ms >= 0 && now - last_ts > cfg.retention_ms;
            let by_size = cfg.retention_bytes >= 0
                && total.saturating_sub(seg.size) >= cfg.retention_bytes as u64;
            let below_start = seg.next_offset <= st.log_start_offset;
            if !(by_time || by_size || below_start) {
                break;
            }
            total -= seg.size;
            doomed.push(*base);
        }
        for base in &doomed {
            if let Some(seg) = st.segments.remove(base) {
                seg.delete_files();
            }
        }
        if let Some(first) = st.segments.keys().next().copied() {
            if first > st.log_start_offset {
                st.log_start_offset = first;
                if st.epochs.truncate_from_start(first) {
                    st.epochs.flush_or_warn();
                }
            }
        }
        doomed.len()
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1 = the high
    /// watermark) and drops segments wholly below it. Returns the new low
    /// watermark.
    pub fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        let (start, hw) = {
            let st = self.state.borrow();
            (st.log_start_offset, st.high_watermark)
        };
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                offset: target,
                start,
                end: hw,
            });
        }
        if target > start {
            write_checkpoint(&self.dir, target)?;
            {
                let mut st = self.state.borrow_mut();
                st.log_start_offset = target;
                if st.epochs.truncate_from_start(target) {
                    st.epochs.flush_or_warn();
                }
            }
            self.apply_retention_below_start();
        }
        Ok(self.log_start_offset())
    }

    fn apply_retention_below_start(&self) {
        let mut st = self.state.borrow_mut();
        let active_base = st.segments.keys().next_back().copied();
        let doomed: Vec<i64> = st
            .segments
            .iter()
            .filter(|(b, s)| Some(**b) != active_base && s.next_offset <= st.log_start_offset)
            .map(|(b, _)| *b)
            .collect();
        for b in doomed {
            if let Some(seg) = st.segments.remove(&b) {
                seg.delete_files();
            }
        }
    }
}
