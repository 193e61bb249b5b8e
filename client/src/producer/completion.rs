//! Delivery completions: one shared cell per batch instead of a channel per
//! record. A record's [`DeliveryFuture`] holds the cell of the batch it was
//! appended to and its index there; the sender settles a range of indices
//! at once (a whole batch, or one piece of a split batch) and wakes the
//! tasks waiting on any of them. Appending a record so costs a reference
//! count increment instead of an allocation, and completing a batch one
//! lock instead of one channel send per record (a per-record oneshot was
//! the top item of the producer's profile). A batch dropped without being
//! settled (sender gone) fails its records with `Error::Closed`, as a
//! dropped channel did.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::RecordMetadata;
use crate::error::{Error, Result};

/// What a batch ended with.
pub(crate) enum BatchOutcome {
    /// Written at `base_offset` (-1 when unknown: acks=0, or a duplicate
    /// whose original offset the broker did not report).
    Done {
        base_offset: i64,
        log_append_time: i64,
    },
    Failed(Error),
}

/// How many of the most recently registered wakers a poll compares with
/// before adding its own: the usual waiter is one task polling the
/// futures of many records, and its waker needs to be kept only once.
const WAKER_DEDUP_WINDOW: usize = 4;

/// The outcome of one batch's records (all the pieces it was split into).
pub(crate) struct Cell {
    topic: Arc<str>,
    partition: i32,
    state: Mutex<CellState>,
}

#[derive(Default)]
struct CellState {
    /// Settled index ranges `[start, end)` with their outcome: one entry
    /// for a batch sent whole, one per piece for a split batch.
    settled: Vec<(u32, u32, BatchOutcome)>,
    /// Tasks waiting on a record of the batch not settled yet.
    wakers: Vec<Waker>,
}

impl Cell {
    fn lock(&self) -> MutexGuard<'_, CellState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A batch's share of a cell: records `start..start + len`. Owned by the
/// batch; settling consumes it, and dropping it unsettled fails them.
pub(crate) struct Records {
    cell: Arc<Cell>,
    start: u32,
    len: u32,
    settled: bool,
}

impl Records {
    /// An empty range in a new cell for a batch of `topic`-`partition`.
    pub fn new(topic: Arc<str>, partition: i32) -> Records {
        Records {
            cell: Arc::new(Cell {
                topic,
                partition,
                state: Mutex::new(CellState::default()),
            }),
            start: 0,
            len: 0,
            settled: false,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Adds the next record (created at `timestamp`) and returns its future.
    /// Only an unsplit batch takes records, so the range is `0..len`.
    pub fn push(&mut self, timestamp: i64) -> DeliveryFuture {
        let index = self.start + self.len;
        self.len += 1;
        DeliveryFuture {
            cell: self.cell.clone(),
            index,
            timestamp,
        }
    }

    /// Leaves the first `at` records here and returns the rest (for
    /// splitting a batch; both ranges keep the cell).
    pub fn split_off(&mut self, at: usize) -> Records {
        let at = (at as u32).min(self.len);
        let rest = Records {
            cell: self.cell.clone(),
            start: self.start + at,
            len: self.len - at,
            settled: false,
        };
        self.len = at;
        rest
    }

    /// Reports the outcome to the range's records and wakes their waiters.
    pub fn settle(mut self, outcome: BatchOutcome) {
        self.settle_in_place(outcome);
    }

    fn settle_in_place(&mut self, outcome: BatchOutcome) {
        self.settled = true;
        if self.len == 0 {
            return;
        }
        let wakers = {
            let mut st = self.cell.lock();
            st.settled
                .push((self.start, self.start + self.len, outcome));
            std::mem::take(&mut st.wakers)
        };
        // Waiters on other (unsettled) pieces wake too; they poll again and
        // register anew.
        for w in wakers {
            w.wake();
        }
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        if !self.settled {
            self.settle_in_place(BatchOutcome::Failed(Error::Closed));
        }
    }
}

/// Resolves when the record is delivered (or failed for good).
#[must_use = "the record is sent anyway; await this to learn its outcome"]
pub struct DeliveryFuture {
    cell: Arc<Cell>,
    index: u32,
    /// The record's create time, reported unless the broker stamps
    /// LogAppendTime.
    timestamp: i64,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("topic", &self.cell.topic)
            .field("partition", &self.cell.partition)
            .finish_non_exhaustive()
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &*self;
        let outcome = {
            let mut st = this.cell.lock();
            match st
                .settled
                .iter()
                .find(|(s, e, _)| (*s..*e).contains(&this.index))
            {
                Some((
                    start,
                    _,
                    BatchOutcome::Done {
                        base_offset,
                        log_append_time,
                    },
                )) => Ok((
                    if *base_offset >= 0 {
                        base_offset + i64::from(this.index - start)
                    } else {
                        -1
                    },
                    *log_append_time,
                )),
                Some((_, _, BatchOutcome::Failed(e))) => Err(e.clone()),
                None => {
                    let w = cx.waker();
                    if !st
                        .wakers
                        .iter()
                        .rev()
                        .take(WAKER_DEDUP_WINDOW)
                        .any(|x| x.will_wake(w))
                    {
                        st.wakers.push(w.clone());
                    }
                    return Poll::Pending;
                }
            }
        };
        // The topic string is built outside the lock.
        Poll::Ready(outcome.map(|(offset, log_append_time)| RecordMetadata {
            topic: this.cell.topic.to_string(),
            partition: this.cell.partition,
            offset,
            timestamp: if log_append_time >= 0 {
                log_append_time
            } else {
                this.timestamp
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use futures::FutureExt;

    fn records(n: usize) -> (Records, Vec<DeliveryFuture>) {
        let mut r = Records::new(Arc::from("t"), 3);
        let fs = (0..n).map(|i| r.push(100 + i as i64)).collect();
        (r, fs)
    }

    #[test]
    fn a_settled_batch_reports_each_record_its_offset_and_timestamp() {
        let (r, fs) = records(3);
        let mut fs: Vec<_> = fs.into_iter().collect();
        assert!(fs[0].now_or_never_ref().is_none());
        r.settle(BatchOutcome::Done {
            base_offset: 40,
            log_append_time: -1,
        });
        for (i, f) in fs.drain(..).enumerate() {
            let md = f.now_or_never().unwrap().unwrap();
            assert_eq!(
                (md.topic.as_str(), md.partition, md.offset, md.timestamp),
                ("t", 3, 40 + i as i64, 100 + i as i64)
            );
        }
    }

    #[test]
    fn log_append_time_and_unknown_offsets() {
        let (r, fs) = records(2);
        r.settle(BatchOutcome::Done {
            base_offset: -1,
            log_append_time: 7,
        });
        for f in fs {
            let md = f.now_or_never().unwrap().unwrap();
            assert_eq!((md.offset, md.timestamp), (-1, 7));
        }
    }

    #[test]
    fn split_pieces_settle_separately() {
        let (mut r, fs) = records(5);
        let mut second = r.split_off(2);
        let third = second.split_off(1);
        second.settle(BatchOutcome::Failed(Error::kafka(
            ErrorCode::MessageTooLarge,
        )));
        r.settle(BatchOutcome::Done {
            base_offset: 10,
            log_append_time: -1,
        });
        let mut fs = fs.into_iter();
        let a: Vec<_> = fs.by_ref().take(2).collect();
        for (i, f) in a.into_iter().enumerate() {
            assert_eq!(f.now_or_never().unwrap().unwrap().offset, 10 + i as i64);
        }
        let b = fs.next().unwrap();
        assert!(b.now_or_never().unwrap().is_err());
        let c: Vec<_> = fs.collect();
        assert!(c.iter().all(|f| f.now_or_never_ref().is_none()));
        third.settle(BatchOutcome::Done {
            base_offset: 20,
            log_append_time: -1,
        });
        for (i, f) in c.into_iter().enumerate() {
            assert_eq!(f.now_or_never().unwrap().unwrap().offset, 20 + i as i64);
        }
    }

    #[test]
    fn a_dropped_batch_fails_its_records_with_closed() {
        let (r, fs) = records(2);
        drop(r);
        for f in fs {
            assert!(matches!(f.now_or_never(), Some(Err(Error::Closed))));
        }
    }

    #[tokio::test]
    async fn waiters_are_woken() {
        let (r, fs) = records(3);
        let waiters: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        r.settle(BatchOutcome::Done {
            base_offset: 0,
            log_append_time: -1,
        });
        for (i, w) in waiters.into_iter().enumerate() {
            assert_eq!(w.await.unwrap().unwrap().offset, i as i64);
        }
    }

    impl DeliveryFuture {
        /// Polls once without consuming (tests).
        fn now_or_never_ref(&self) -> Option<Result<RecordMetadata>> {
            let mut f = DeliveryFuture {
                cell: self.cell.clone(),
                index: self.index,
                timestamp: self.timestamp,
            };
            (&mut f).now_or_never()
        }
    }
}
