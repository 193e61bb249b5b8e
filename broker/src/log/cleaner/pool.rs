//! The cleaner's own worker threads, at a lower CPU priority than the shard
//! threads. A clean is background work that Kafka's cleaner threads do
//! beside the request handlers; on a busy box ours competed with the shards
//! as an equal and took half a core from produce while it ran (produce p99
//! 2.6x during a clean in `scripts/bench --compaction`). On these threads
//! the kernel gives the shards the CPU first and the cleaner whatever is
//! idle, with a small share under full load so cleaning still progresses.
//!
//! Threads start on demand, one per cleaning pass running at once (a shard
//! runs one pass at a time, so at most one per shard), and wait for work
//! after that; the pool is process-wide because the shards' cleaners share
//! it.
#![allow(unsafe_code)]

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use futures::channel::oneshot;

/// Nice value of a cleaner thread: the CFS weight of nice 10 is about a
/// tenth of nice 0's, so under contention the cleaner gets roughly 10% of a
/// core against a busy shard, and all of any idle core.
pub const CLEANER_NICE: i32 = 10;

/// Most threads the pool starts, whatever the demand (more shards than
/// this share them).
const MAX_THREADS: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: flume::Sender<Job>,
    receiver: flume::Receiver<Job>,
    threads: AtomicUsize,
    idle: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, receiver) = flume::unbounded();
        Pool {
            jobs,
            receiver,
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
        }
    })
}

/// The job panicked; the pass that sent it fails.
#[derive(Debug)]
pub struct Panicked;

/// Runs `work` on a cleaner thread and waits for its result.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Panicked> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let result = std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|_| Panicked);
        let _ = tx.send(result);
    });
    let pool = pool();
    if pool.idle.load(Ordering::Acquire) == 0 {
        start_thread(pool);
    }
    if pool.jobs.send(job).is_err() {
        return Err(Panicked);
    }
    rx.await.unwrap_or(Err(Panicked))
}

fn start_thread(pool: &'static Pool) {
    let n = pool.threads.fetch_add(1, Ordering::AcqRel);
    if n >= MAX_THREADS {
        pool.threads.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let receiver = pool.receiver.clone();
    let started = std::thread::Builder::new()
        .name(format!("sluice-cleaner-{n}"))
        .spawn(move || {
            lower_this_threads_priority(CLEANER_NICE);
            loop {
                pool.idle.fetch_add(1, Ordering::AcqRel);
                let job = receiver.recv();
                pool.idle.fetch_sub(1, Ordering::AcqRel);
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = started {
        pool.threads.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(error = %e, "cannot start a cleaner thread; the cleaner waits for a running one");
    }
}

/// Raises the calling thread's nice value to `nice` (Linux keeps one per
/// thread); a process already running nicer keeps its own. A failure only
/// costs the priority, so it is logged, not returned.
fn lower_this_threads_priority(nice: i32) {
    // SAFETY: plain syscalls on the calling thread's own id; no memory is
    // passed.
    let rc = unsafe {
        let tid = libc::gettid() as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, nice.max(current))
    };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            nice,
            "cannot lower the cleaner thread's priority; it competes with the shards as an equal"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_at_the_cleaner_priority_and_panics_come_back_as_errors() {
        let nice = futures::executor::block_on(run(|| {
            // SAFETY: reads the calling thread's own nice value.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        }))
        .expect("ran");
        assert!(nice >= CLEANER_NICE, "nice {nice}");
        let panicked = futures::executor::block_on(run(|| -> u32 { panic!("planted") }));
        assert!(panicked.is_err());
        // The pool still works after a panic.
        assert_eq!(futures::executor::block_on(run(|| 7)).expect("ran"), 7);
    }
}
