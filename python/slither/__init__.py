"""Python side of Slither for Go.

Functions that Slither calls take a batch (a list) and return a list with
exactly one result per item. Inside such a function:

    slither.context()      -> Context(worker_id, pool, session_id, pid)
    slither.session()      -> dict private to the batch's session on this worker
    slither.host_call(name, *args)   calls a function the Go side registered
    @slither.thread_safe   declares a function safe to run on many threads at once

This package is stdlib-only and runs under any CPython >= 3.10, free-threaded
or not, embedded in the Go process (thread pool) or in a worker subprocess
(process pool, `python -m slither.worker`).
"""

from ._context import Context, context, session, _bind, _set_session, _drop_session  # noqa: F401

try:  # embedded in the Go process: the host module provides the class
    from _slither_host import Cancelled
except ImportError:  # in a subprocess worker

    class Cancelled(BaseException):
        """Raised inside a function whose Go caller cancelled the call."""


class HostError(Exception):
    """A host call failed on the Go side; the message is the Go error text."""


# Set by the process worker; the embedded pool gets host calls with store
# views (issue #6).
_host = None


def host_call(name, *args):
    """Calls the Go-side host function `name` with args and returns its result.

    Blocks this thread (not the worker) until Go answers. Raises HostError
    with the Go error's text when the Go side fails.
    """
    if _host is None:
        raise RuntimeError("slither.host_call: no host connection in this process "
                           "(host calls are available in process-pool workers)")
    return _host(name, list(args))


def thread_safe(fn):
    """Marks fn as safe to run on many Python threads at once.

    Routing uses the mark: only marked functions may go to the embedded
    free-threaded pool automatically.
    """
    fn.__slither_thread_safe__ = True
    return fn


__all__ = ["Cancelled", "Context", "HostError", "context", "host_call", "session", "thread_safe"]
