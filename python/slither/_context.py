"""Per-thread call context and per-session state that the host sets up
before it calls user code."""

import os
import threading
from typing import NamedTuple, Optional


class Context(NamedTuple):
    """Where the current call runs.

    worker_id: the pool worker's index (0-based), or None outside a pool.
    pool: "thread" (embedded in the Go process), "process", or "none"
        outside a pool (plain Python, a unit test, a thread of the user's own).
    session_id: the session the current batch belongs to, or None.
    pid: the process id.
    trace_id, span_id: the OpenTelemetry trace and span of the Go side's
        batch (32 and 16 lowercase hex digits), for correlating Python logs
        with Go traces; None when the batch is not traced.
    """

    worker_id: Optional[int]
    pool: str
    session_id: Optional[str]
    pid: int
    trace_id: Optional[str] = None
    span_id: Optional[str] = None

    @property
    def in_pool(self) -> bool:
        """Whether this call runs on a Slither pool worker."""
        return self.pool != "none"


_local = threading.local()

try:  # the embedded pool's built-in module; absent in a subprocess or plain Python
    from _slither_host import trace as _native_trace
except ImportError:
    _native_trace = None
try:  # the context of a direct call (cpython.Caller), kept in C thread-local memory
    from _slither_host import context as _native_context
except ImportError:
    _native_context = None

# Whether a Slither host (the embedded pool or a worker process) runs in
# this process: it binds each worker thread before any call. Without one
# the package runs in plain Python, where session() and ref() work on a
# per-thread dict instead of failing, so user modules run and unit-test
# as they are.
_hosted = False

# Session state: one dict per session and worker, {session id: {worker id:
# dict}}. A pinned session runs on one worker, so its dict is private to it;
# an unpinned batch gets the dict of the worker it runs on. In the embedded
# pool each worker is a thread, and its dicts are made and dropped on that
# thread: a free-threaded build frees an object at once only on the thread
# that created it.
_sessions = {}
_sessions_lock = threading.Lock()


def _none() -> Context:
    return Context(None, "none", None, os.getpid())  # the pid now: a fork changes it


def _direct() -> Optional[Context]:
    """The context of the direct call running on this thread, or None.

    A direct call (the embedded pool's default mode) runs on whichever
    thread its Go caller is on: its worker and session ids travel with the
    call in C memory, read here only when asked, so no batch pays a Python
    call for them."""
    if _native_context is None:
        return None
    n = _native_context()
    if n is None:
        return None
    worker_id, session_id, trace_id, span_id = n
    pool = "thread" if worker_id is not None or session_id is not None else "none"
    return Context(worker_id, pool, session_id, os.getpid(), trace_id, span_id)


def context() -> Context:
    """Returns the context of the batch this thread is running.

    Outside a pool it is Context(None, "none", None, pid), whose in_pool is
    False.
    """
    d = _direct()
    if d is not None:
        return d
    c = getattr(_local, "ctx", None)
    if c is None:
        return _none()
    if c.pool == "thread" and _native_trace is not None:
        # The embedded pool keeps the batch's trace ids in C memory that Go
        # writes per batch: read only when asked, so batches pay nothing
        # for tracing.
        ids = _native_trace()
        if ids is not None:
            return c._replace(trace_id=ids[0], span_id=ids[1])
    return c


def _bound() -> Context:
    """This thread's context as the host bound it in Python (_bind,
    _set_session, _set_trace): a worker thread's own, never a direct call's."""
    c = getattr(_local, "ctx", None)
    return c if c is not None else _none()


def _raw() -> Context:
    """This thread's context: the direct call's running here (trace ids
    included), else the one the host bound (without the native trace ids)."""
    d = _direct()
    return d if d is not None else _bound()


def _plain() -> bool:
    """Whether this call runs outside any pool, with no session."""
    c = _raw()
    return not _hosted and c.pool == "none" and c.session_id is None


def _plain_state() -> dict:
    """This thread's session dict outside a pool."""
    d = getattr(_local, "plain", None)
    if d is None:
        d = _local.plain = {}
    return d


def session() -> dict:
    """Returns the state dict of the current batch's session.

    It lives on this worker until the Go side closes the session (or its
    context ends). Raises RuntimeError when the batch has no session.

    Outside a pool (plain Python, unit tests) it is a plain dict, one per
    thread and kept for the thread's life, as a pool worker keeps one per
    session: clear() it to start a fresh session.
    """
    if _plain():
        return _plain_state()
    c = _raw()
    if c.session_id is None:
        raise RuntimeError("slither.session(): this batch has no session (submit it with a session id)")
    with _sessions_lock:
        per_worker = _sessions.get(c.session_id)
        if per_worker is None:
            per_worker = _sessions[c.session_id] = {}
        d = per_worker.get(c.worker_id)
        if d is None:
            d = per_worker[c.worker_id] = {}
        return d


def _state(session_id, worker_id):
    """The state dict of a session on a worker, or None."""
    with _sessions_lock:
        return _sessions.get(session_id, {}).get(worker_id)


def _bind(worker_id, pool):
    """Called by the host once per worker thread."""
    global _hosted
    _hosted = True
    _local.ctx = Context(worker_id, pool, None, os.getpid())


def _set_session(session_id):
    """Called by the host before a batch whose session differs from the last."""
    c = _bound()
    _local.ctx = c._replace(session_id=session_id or None)


_HEX = frozenset("0123456789abcdef")


def _hex_id(v, n):
    """v if it is n lowercase hex digits, not all zero (a valid W3C id), else None."""
    if type(v) is not str or len(v) != n or not _HEX.issuperset(v) or v == "0" * n:
        return None
    return v


def _set_trace(trace_id, span_id):
    """Called by the process worker before a batch traced on the Go side
    (the embedded pool uses _slither_host.trace instead). The ids come
    from outside: a value that is not a valid id clears both, it never
    fails the batch."""
    t, s = _hex_id(trace_id, 32), _hex_id(span_id, 16)
    if t is None or s is None:
        t = s = None
    c = _bound()
    if c.trace_id != t or c.span_id != s:
        _local.ctx = c._replace(trace_id=t, span_id=s)


_ALL = object()


def _drop_session(session_id, worker_id=_ALL):
    """Called by the host when a session closes: frees its state on worker
    worker_id, or on every worker of this process when it is omitted.

    Returns whether the session had state there."""
    with _sessions_lock:
        if worker_id is _ALL:
            dropped = _sessions.pop(session_id, None)
        else:
            per_worker = _sessions.get(session_id, {})
            dropped = per_worker.pop(worker_id, None)
            if not per_worker:
                _sessions.pop(session_id, None)
    # The state is freed when this frame ends, outside the lock: its
    # finalizers may run Python code that needs it.
    return dropped is not None


def _session_count():
    with _sessions_lock:
        return len(_sessions)


# Refs: long-lived objects (a model, a cache, a connection) kept in a
# session's state on its worker, handed to Go as a small dict and found
# again when Go passes that dict back.

_REF_KEY = "__slither_ref__"
_ref_lock = threading.Lock()
_ref_seq = [0]


class RefError(Exception):
    """A ref was used outside its session or worker, or after its session
    was closed."""


def ref(obj):
    """Keeps obj in the current session's state and returns a handle for Go.

    Outside a pool it keeps obj in this thread's session() dict; deref
    finds it again on the same thread.
    """
    c = _raw()
    if _plain():
        with _ref_lock:
            _ref_seq[0] += 1
            rid = f"local:{c.pid}:{threading.get_ident()}:{_ref_seq[0]}"
        _plain_state().setdefault("__refs__", {})[rid] = obj
        return {_REF_KEY: rid, "session": None, "worker": None, "pid": c.pid}
    if c.session_id is None:
        raise RuntimeError("slither.ref: this batch has no session (refs live in a session's state)")
    with _ref_lock:
        _ref_seq[0] += 1
        rid = f"{c.session_id}:{c.pid}:{c.worker_id}:{_ref_seq[0]}"
    session().setdefault("__refs__", {})[rid] = obj
    return {_REF_KEY: rid, "session": c.session_id, "worker": c.worker_id, "pid": c.pid}


def deref(handle):
    """Returns the object a handle from slither.ref stands for."""
    if not isinstance(handle, dict) or _REF_KEY not in handle:
        raise TypeError(f"slither.deref: not a ref: {handle!r}")
    rid = handle[_REF_KEY]
    c = _raw()
    if handle.get("session") != c.session_id:
        raise RefError(f"ref {rid} belongs to session {handle.get('session')}; this batch runs in "
                       f"session {c.session_id}")
    if handle.get("pid") != c.pid or handle.get("worker") != c.worker_id:
        raise RefError(f"ref {rid} lives on worker {handle.get('worker')} (pid {handle.get('pid')}); this "
                       f"batch runs on worker {c.worker_id} (pid {c.pid}): run the session's batches pinned "
                       f"to its worker")
    if _plain():
        obj = _plain_state().get("__refs__", {}).get(rid, _MISSING)
        if obj is _MISSING:
            raise RefError(f"ref {rid} is not in this thread's session (outside a pool each thread has its own): "
                           f"it was made on another thread, released, or its session dict cleared")
        return obj
    d = _state(c.session_id, c.worker_id)
    obj = d.get("__refs__", {}).get(rid, _MISSING) if d is not None else _MISSING
    if obj is _MISSING:
        raise RefError(f"ref {rid} is gone: its session was closed or the ref released")
    return obj


def release(handle):
    """Drops a ref before its session closes."""
    if _plain():
        _plain_state().get("__refs__", {}).pop(handle.get(_REF_KEY), None)
        return
    c = _raw()
    d = _state(c.session_id, c.worker_id)
    if d is not None:
        d.get("__refs__", {}).pop(handle.get(_REF_KEY), None)


_MISSING = object()
