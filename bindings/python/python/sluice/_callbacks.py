"""The one Python thread that runs user callbacks (delivery callbacks and
errbacks, commit_async callbacks): the native module queues each finished
operation's callable, and this daemon thread, started on first use, takes
them (waiting with the GIL released) and calls them in order. Callbacks thus
run on a Python thread, never on one of the Rust runtime's threads.

At interpreter exit an ``atexit`` hook stops the thread before Python
finalizes: a daemon thread that wakes inside the native module during
finalization would be torn down through Rust frames, which aborts.
"""

from __future__ import annotations

import atexit
import logging
import threading

from . import _sluice

log = logging.getLogger("sluice")

_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def _run() -> None:
    while not _stop.is_set():
        try:
            items = _sluice.next_completed(0.2)
        except BaseException:  # noqa: BLE001 - interpreter shutting down
            return
        for fn, arg in items:
            try:
                fn(arg)
            except Exception:  # noqa: BLE001 - a user callback failed: log it, keep going
                log.exception("sluice: callback %r raised", fn)


def ensure_started() -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="sluice-callbacks", daemon=True)
            _thread.start()


@atexit.register
def _shutdown() -> None:
    _stop.set()
    t = _thread
    if t is not None and t.is_alive():
        t.join(5.0)
