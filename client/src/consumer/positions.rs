//! Where the consumer is: per assigned partition, the fetch position (next
//! offset to read, with the leader epoch of the record before it), a
//! pending offset reset, the high watermark, and whether the application
//! paused it. The application thread owns this state; the fetcher and the
//! coordination loop read and update it through these methods.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartition;

/// Where to reset a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetTo {
    Earliest,
    Latest,
}

impl ResetTo {
    /// The ListOffsets timestamp meaning this position.
    pub fn timestamp(self) -> i64 {
        match self {
            ResetTo::Earliest => -2,
            ResetTo::Latest => -1,
        }
    }
}

/// The next offset to fetch and the leader epoch of the last record read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub offset: i64,
    pub leader_epoch: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionState {
    pub position: Option<Position>,
    pub reset: Option<ResetTo>,
    pub paused: bool,
    pub high_watermark: Option<i64>,
}

/// The assigned partitions and their states.
#[derive(Debug, Default)]
pub(crate) struct Assignment {
    parts: BTreeMap<TopicPartition, PartitionState>,
}

impl Assignment {
    pub fn partitions(&self) -> BTreeSet<TopicPartition> {
        self.parts.keys().cloned().collect()
    }

    pub fn contains(&self, tp: &TopicPartition) -> bool {
        self.parts.contains_key(tp)
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Replaces the assignment; partitions kept keep their state.
    pub fn set(&mut self, parts: impl IntoIterator<Item = TopicPartition>) {
        let new: BTreeSet<TopicPartition> = parts.into_iter().collect();
        self.parts.retain(|tp, _| new.contains(tp));
        for tp in new {
            self.parts.entry(tp).or_default();
        }
    }

    pub fn add(&mut self, parts: impl IntoIterator<Item = TopicPartition>) {
        for tp in parts {
            self.parts.entry(tp).or_default();
        }
    }

    pub fn remove(&mut self, parts: &[TopicPartition]) {
        for tp in parts {
            self.parts.remove(tp);
        }
    }

    pub fn clear(&mut self) {
        self.parts.clear();
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.parts.get(tp)
    }

    pub fn position(&self, tp: &TopicPartition) -> Option<Position> {
        self.parts.get(tp).and_then(|s| s.position)
    }

    /// Moves the position (a seek, or records handed out); cancels a
    /// pending reset.
    pub fn set_position(&mut self, tp: &TopicPartition, pos: Position) -> bool {
        match self.parts.get_mut(tp) {
            Some(s) => {
                s.position = Some(pos);
                s.reset = None;
                true
            }
            None => false,
        }
    }

    pub fn request_reset(&mut self, tp: &TopicPartition, to: ResetTo) -> bool {
        match self.parts.get_mut(tp) {
            Some(s) => {
                s.reset = Some(to);
                s.position = None;
                true
            }
            None => false,
        }
    }

    /// Completes a reset, unless a seek or another reset replaced it.
    pub fn finish_reset(&mut self, tp: &TopicPartition, to: ResetTo, pos: Position) {
        if let Some(s) = self.parts.get_mut(tp) {
            if s.reset == Some(to) {
                s.reset = None;
                s.position = Some(pos);
            }
        }
    }

    pub fn set_paused(&mut self, tp: &TopicPartition, paused: bool) -> bool {
        match self.parts.get_mut(tp) {
            Some(s) => {
                s.paused = paused;
                true
            }
            None => false,
        }
    }

    pub fn is_paused(&self, tp: &TopicPartition) -> bool {
        self.parts.get(tp).is_some_and(|s| s.paused)
    }

    pub fn paused(&self) -> BTreeSet<TopicPartition> {
        self.parts
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    pub fn set_high_watermark(&mut self, tp: &TopicPartition, hw: i64) {
        if let Some(s) = self.parts.get_mut(tp) {
            s.high_watermark = Some(hw);
        }
    }

    /// Partitions with neither a position nor a pending reset: their
    /// committed offset must be looked up.
    pub fn needing_committed(&self) -> Vec<TopicPartition> {
        self.parts
            .iter()
            .filter(|(_, s)| s.position.is_none() && s.reset.is_none())
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    pub fn pending_resets(&self) -> Vec<(TopicPartition, ResetTo)> {
        self.parts
            .iter()
            .filter_map(|(tp, s)| s.reset.map(|r| (tp.clone(), r)))
            .collect()
    }

    /// Partitions a fetch may be sent for, with their positions.
    pub fn fetchable(&self) -> Vec<(TopicPartition, Position)> {
        self.parts
            .iter()
            .filter(|(_, s)| !s.paused && s.reset.is_none())
            .filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p)))
            .collect()
    }

    /// The positions to commit: everything handed to the application.
    pub fn consumed(&self) -> BTreeMap<TopicPartition, Position> {
        self.parts
            .iter()
            .filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p)))
            .collect()
    }

    pub fn topics(&self) -> BTreeSet<String> {
        self.parts.keys().map(|tp| tp.topic.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_resets_and_pauses() {
        let mut a = Assignment::default();
        let t0 = TopicPartition::new("t", 0);
        let t1 = TopicPartition::new("t", 1);
        a.set([t0.clone(), t1.clone()]);
        assert_eq!(a.needing_committed().len(), 2);
        a.set_position(
            &t0,
            Position {
                offset: 5,
                leader_epoch: None,
            },
        );
        a.request_reset(&t1, ResetTo::Earliest);
        assert_eq!(a.fetchable().len(), 1);
        // A seek between the reset request and its answer wins.
        a.set_position(
            &t1,
            Position {
                offset: 9,
                leader_epoch: None,
            },
        );
        a.finish_reset(
            &t1,
            ResetTo::Earliest,
            Position {
                offset: 0,
                leader_epoch: None,
            },
        );
        assert_eq!(a.position(&t1).map(|p| p.offset), Some(9));
        a.set_paused(&t0, true);
        assert_eq!(a.fetchable().len(), 1);
        assert_eq!(a.consumed().len(), 2);
        // Reassignment keeps the state of kept partitions.
        a.set([t0.clone()]);
        assert!(a.is_paused(&t0));
        assert!(!a.contains(&t1));
    }
}
