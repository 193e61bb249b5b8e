//! Which logs need cleaning and what a pass covers, by Kafka's rules (pure
//! functions over a summary of the segments, so they are tested alone).
//!
//! The clean section runs from the log start to the first dirty offset (the
//! cleaner checkpoint); the dirty section from there to the first
//! uncleanable offset: the active segment's base, or earlier the base of
//! the first segment reaching past the high watermark or (with
//! `min.compaction.lag.ms`) holding a record younger than the lag. A log is
//! cleaned when its dirty ratio (dirty bytes over clean plus dirty bytes)
//! reaches `min.cleanable.dirty.ratio`, when its first dirty record is older
//! than `max.compaction.lag.ms`, or when a delete horizon it holds has
//! passed (its tombstones can go).

use std::ops::Range;

use crate::log::LogConfig;

/// What selection needs to know of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
}

/// A log's state as selection sees it. `segments` are in offset order and
/// the last one is the active segment.
#[derive(Debug, Clone)]
pub struct LogSummary {
    pub segments: Vec<SegmentSummary>,
    pub log_start: i64,
    /// The cleaner checkpoint (where the last pass ended).
    pub first_dirty: i64,
    pub high_watermark: i64,
    /// Max timestamp of the batch at the first dirty offset.
    pub first_dirty_timestamp: Option<i64>,
    /// The earliest delete horizon of a batch still holding tombstones.
    pub earliest_delete_horizon: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    DirtyRatio,
    MaxCompactionLag,
    TombstonesExpired,
}

/// A log worth cleaning now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    pub first_dirty: i64,
    pub first_uncleanable: i64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    pub dirty_ratio: f64,
    pub reason: Reason,
}

impl LogSummary {
    /// Where the dirty section starts: the checkpoint, but never below the
    /// log start or the first segment.
    pub fn first_dirty(&self) -> i64 {
        let first_base = self.segments.first().map_or(0, |s| s.base);
        self.first_dirty.max(self.log_start).max(first_base)
    }

    /// Where cleaning must stop this time.
    pub fn first_uncleanable(&self, cfg: &LogConfig, now_ms: i64) -> i64 {
        let Some((active, done)) = self.segments.split_last() else {
            return self.log_start;
        };
        let first_dirty = self.first_dirty();
        let mut limit = active.base;
        if let Some(s) = done.iter().find(|s| s.next_offset > self.high_watermark) {
            limit = limit.min(s.base);
        }
        if cfg.min_compaction_lag_ms > 0 {
            let youngest_allowed = now_ms.saturating_sub(cfg.min_compaction_lag_ms);
            if let Some(s) = done
                .iter()
                .find(|s| s.next_offset > first_dirty && s.max_timestamp > youngest_allowed)
            {
                limit = limit.min(s.base);
            }
        }
        limit
    }
}

/// Whether (and why) the log should be cleaned now.
pub fn cleanable(log: &LogSummary, cfg: &LogConfig, now_ms: i64) -> Option<Cleanable> {
    if !cfg.cleanup_compact || log.segments.len() < 2 {
        return None;
    }
    let first_dirty = log.first_dirty();
    let first_uncleanable = log.first_uncleanable(cfg, now_ms);
    let below = log
        .segments
        .iter()
        .filter(|s| s.base < first_uncleanable && s.next_offset > log.log_start);
    let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
    for s in below {
        if s.next_offset <= first_dirty {
            clean_bytes += s.size;
        } else {
            dirty_bytes += s.size;
        }
    }
    let total = clean_bytes + dirty_bytes;
    let dirty_ratio = if total == 0 {
        0.0
    } else {
        dirty_bytes as f64 / total as f64
    };
    let lag_exceeded = dirty_bytes > 0
        && log
            .first_dirty_timestamp
            .is_some_and(|t| t >= 0 && now_ms.saturating_sub(t) > cfg.max_compaction_lag_ms);
    let tombstones_due = total > 0 && log.earliest_delete_horizon.is_some_and(|h| now_ms >= h);
    let reason = if dirty_bytes > 0 && dirty_ratio >= cfg.min_cleanable_dirty_ratio {
        Reason::DirtyRatio
    } else if lag_exceeded {
        Reason::MaxCompactionLag
    } else if tombstones_due {
        Reason::TombstonesExpired
    } else {
        return None;
    };
    Some(Cleanable {
        first_dirty,
        first_uncleanable,
        clean_bytes,
        dirty_bytes,
        dirty_ratio,
        reason,
    })
}

/// Splits consecutive segments into groups each rewritten as one segment:
/// a group's original sizes stay within `max_bytes` (`segment.bytes`) and
/// its offsets within what a u32 relative offset in the index can hold.
/// Every segment is in exactly one group; an oversized one alone.
pub fn group_segments(segments: &[SegmentSummary], max_bytes: u64) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let base = segments[start].base;
        let mut size = segments[start].size;
        let mut end = start + 1;
        while let Some(next) = segments.get(end) {
            let fits = size + next.size <= max_bytes;
            let in_index_range = next.next_offset - 1 - base <= i64::from(u32::MAX);
            if !(fits && in_index_range) {
                break;
            }
            size += next.size;
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}
