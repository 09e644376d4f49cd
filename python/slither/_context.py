"""Per-thread call context that the host sets before it calls user code."""

import os
import threading
from typing import NamedTuple, Optional


class Context(NamedTuple):
    """Where the current call runs.

    worker_id: the pool worker's index (0-based), or None outside a pool.
    pool: "thread" (embedded in the Go process), "process", or "none".
    session_id: the session the current batch belongs to, or None.
    pid: the process id.
    """

    worker_id: Optional[int]
    pool: str
    session_id: Optional[str]
    pid: int


_local = threading.local()
_NONE = Context(None, "none", None, os.getpid())


def context() -> Context:
    """Returns the context of the batch this thread is running."""
    return getattr(_local, "ctx", _NONE)


def _bind(worker_id, pool):
    """Called by the host once per worker thread."""
    _local.ctx = Context(worker_id, pool, None, os.getpid())


def _set_session(session_id):
    """Called by the host before a batch whose session differs from the last."""
    c = getattr(_local, "ctx", _NONE)
    _local.ctx = c._replace(session_id=session_id or None)
