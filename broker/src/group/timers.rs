//! The coordinator's single timer task: a min-heap of (instant, group id)
//! checks and one task on the shard's compio runtime that sleeps until the
//! earliest of them (or the next offset-retention sweep) and then asks the
//! coordinator to check that group. Entries are hints: the check itself
//! looks at the group's real deadlines (member sessions, join phase, sync
//! phase, pending members), so heartbeats never touch the heap and stale
//! entries are harmless. The task holds only a `Weak` to the coordinator;
//! `shutdown` drops its JoinHandle, which cancels it.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::FutureExt;

use super::GroupCoordinator;

/// A queue of group checks.
#[derive(Default)]
pub(super) struct TimerQueue {
    heap: RefCell<BinaryHeap<Reverse<(Instant, u64, String)>>>,
    seq: Cell<u64>,
    pub(super) notify: Rc<Notify>,
}

impl TimerQueue {
    /// Queues a check of `group` at `at`; wakes the task if that is earlier
    /// than anything queued.
    pub(super) fn push(&self, at: Instant, group: &str) {
        let mut heap = self.heap.borrow_mut();
        let earliest = heap.peek().map(|Reverse((t, _, _))| *t);
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        heap.push(Reverse((at, seq, group.to_owned())));
        if earliest.is_none_or(|e| at < e) {
            self.notify.notify();
        }
    }

    pub(super) fn pop_due(&self, now: Instant) -> Vec<String> {
        let mut heap = self.heap.borrow_mut();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            if let Some(Reverse((_, _, g))) = heap.pop() {
                due.push(g);
            }
        }
        due
    }

    pub(super) fn earliest(&self) -> Option<Instant> {
        self.heap.borrow().peek().map(|Reverse((t, _, _))| *t)
    }

    pub(super) fn clear(&self) {
        self.heap.borrow_mut().clear();
    }
}

/// A single-waiter wake-up flag for one thread.
#[derive(Default)]
pub(super) struct Notify {
    flag: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub(super) fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn notified(self: &Rc<Self>) -> Notified {
        Notified(self.clone())
    }
}

struct Notified(Rc<Notify>);

impl Future for Notified {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.flag.replace(false) {
            Poll::Ready(())
        } else {
            *self.0.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// The timer task body.
pub(super) async fn run(coordinator: Weak<GroupCoordinator>) {
    // Without anything queued, wake up at least this often to sweep offsets.
    const IDLE: Duration = Duration::from_secs(3600);
    loop {
        let (notify, wake_at) = {
            let Some(this) = coordinator.upgrade() else {
                return;
            };
            if this.is_shut_down() {
                return;
            }
            let now = Instant::now();
            for group in this.timers.pop_due(now) {
                this.check_group(&group, now);
            }
            let retention_at = this.run_retention_if_due(now);
            let wake_at = this
                .timers
                .earliest()
                .map_or(retention_at, |t| t.min(retention_at));
            (this.timers.notify.clone(), wake_at.min(now + IDLE))
        };
        futures::select_biased! {
            _ = notify.notified().fuse() => {},
            _ = compio::time::sleep_until(wake_at).fuse() => {},
        }
    }
}
