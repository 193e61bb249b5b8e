//! The process-wide tokio runtime the Rust client runs on, and the one way
//! Python threads wait for it: with the GIL released, in slices of at most
//! [`SLICE`], checking for signals between slices so Ctrl-C interrupts any
//! blocking call (`KeyboardInterrupt` then propagates; the abandoned
//! operation is dropped or goes on in the background as its Rust API says).

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// How long a blocked Python thread goes without checking for signals.
pub const SLICE: Duration = Duration::from_millis(100);

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The shared runtime: two worker threads, created on first use.
pub fn runtime() -> PyResult<&'static Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-runtime")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    rt.as_ref().map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the tokio runtime: {e}"))
    })
}

/// Runs `fut` to completion on the calling thread (its I/O and timers on
/// the shared runtime) with the GIL released. Returns `Ok(None)` when
/// `timeout` passes first, `Err` when a signal handler raised.
pub fn wait<F>(py: Python<'_>, timeout: Option<Duration>, fut: F) -> PyResult<Option<F::Output>>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    let deadline = timeout.map(|t| Instant::now() + t);
    py.detach(|| {
        rt.block_on(async move {
            let mut fut = std::pin::pin!(fut);
            loop {
                let slice = match deadline {
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return Ok(None);
                        }
                        SLICE.min(d - now)
                    }
                    None => SLICE,
                };
                tokio::select! {
                    r = &mut fut => return Ok(Some(r)),
                    _ = tokio::time::sleep(slice) => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    })
}

/// Like [`wait`] without a timeout.
pub fn wait_done<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    match wait(py, None, fut)? {
        Some(v) => Ok(v),
        None => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "wait without a timeout timed out",
        )),
    }
}

/// Seconds (Python's float convention; `None` = forever) as a Duration.
pub fn seconds(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s.min(1.0e9)))),
        Some(s) if s.is_infinite() && s > 0.0 => Ok(None),
        Some(s) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds, not {s}"
        ))),
    }
}
