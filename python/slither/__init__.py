"""Python side of Slither for Go.

Functions that Slither calls take a batch (a list) and return a list with
exactly one result per item. Inside such a function:

    slither.context()   -> Context(worker_id, pool, session_id, pid)
    @slither.thread_safe   declares a function safe to run on many threads at once

This package is stdlib-only and runs under any CPython >= 3.10, free-threaded
or not, embedded in the Go process (thread pool) or in a worker subprocess
(process pool).
"""

from ._context import Context, context, _bind, _set_session  # noqa: F401

try:  # embedded in the Go process: the host module provides the class
    from _slither_host import Cancelled
except ImportError:  # in a subprocess worker

    class Cancelled(BaseException):
        """Raised inside a function whose Go caller cancelled the call."""


def thread_safe(fn):
    """Marks fn as safe to run on many Python threads at once.

    Routing uses the mark: only marked functions may go to the embedded
    free-threaded pool automatically.
    """
    fn.__slither_thread_safe__ = True
    return fn


__all__ = ["Cancelled", "Context", "context", "thread_safe"]
