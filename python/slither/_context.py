"""Per-thread call context and per-session state that the host sets up
before it calls user code."""

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

# Session state: a session is pinned to one worker, so one dict per session
# id in this process is private to that session on that worker.
_sessions = {}
_sessions_lock = threading.Lock()


def context() -> Context:
    """Returns the context of the batch this thread is running."""
    return getattr(_local, "ctx", _NONE)


def session() -> dict:
    """Returns the state dict of the current batch's session.

    It lives on this worker until the Go side closes the session (or its
    context ends). Raises RuntimeError when the batch has no session.
    """
    sid = context().session_id
    if sid is None:
        raise RuntimeError("slither.session(): this batch has no session (submit it with a session id)")
    with _sessions_lock:
        d = _sessions.get(sid)
        if d is None:
            d = _sessions[sid] = {}
        return d


def _bind(worker_id, pool):
    """Called by the host once per worker thread."""
    _local.ctx = Context(worker_id, pool, None, os.getpid())


def _set_session(session_id):
    """Called by the host before a batch whose session differs from the last."""
    c = getattr(_local, "ctx", _NONE)
    _local.ctx = c._replace(session_id=session_id or None)


def _drop_session(session_id):
    """Called by the host when a session closes: frees its state.

    Returns whether the session had state here."""
    with _sessions_lock:
        return _sessions.pop(session_id, None) is not None


def _session_count():
    with _sessions_lock:
        return len(_sessions)
