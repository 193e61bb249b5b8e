"""The one Python thread that runs user callbacks (delivery callbacks and
errbacks, commit_async callbacks): the native module queues each finished
operation's callable, and this daemon thread, started on first use, takes
them (waiting with the GIL released) and calls them in order. Callbacks thus
run on a Python thread, never on one of the Rust runtime's threads.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from . import _sluice

log = logging.getLogger("sluice")

_lock = threading.Lock()
_thread: Optional[threading.Thread] = None


def _run() -> None:
    while True:
        try:
            items = _sluice.next_completed(0.5)
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
