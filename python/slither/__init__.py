"""Python side of Slither for Go.

Functions that Slither calls take a batch (a list) and return a list with
exactly one result per item. Inside such a function:

    slither.context()      -> Context(worker_id, pool, session_id, pid, trace_id, span_id); .in_pool
    slither.session()      -> dict private to the batch's session on this worker
    slither.ref(obj) / slither.deref(handle)   keep an object in the session, hand Go a ref
    slither.host_call(name, *args)   calls a function the Go side registered
    slither.view(name, **args)       calls a store view (raises slither.ViewError)
    @slither.thread_safe   declares a function safe to run on many threads at once

This package is stdlib-only and runs under any CPython >= 3.10, free-threaded
or not, embedded in the Go process (thread pool) or in a worker subprocess
(process pool, `python -m slither.worker`).

Outside a pool (plain Python, unittest, pytest; install it with
`pip install ./python` or put that directory on PYTHONPATH) a user module
imports and runs as it is: @slither.thread_safe marks as usual,
slither.context().in_pool is False (pool "none"), slither.session() is a
plain dict per thread, ref/deref keep objects in it, slither.failed works,
and slither.view / slither.host_call raise slither.NotInPool (patch them,
e.g. with unittest.mock, to test code that uses them).
"""

from ._context import (  # noqa: F401
    Context, RefError, context, deref, ref, release, session, _bind, _set_session, _drop_session,
)

try:  # embedded in the Go process: the host module provides these, in C
    from _slither_host import Cancelled, HostError, ViewError
    from _slither_host import call as _host
    from _slither_host import view as _view
except ImportError:  # in a subprocess worker (which sets _host) or plain Python

    class Cancelled(BaseException):
        """Raised inside a function whose Go caller cancelled the call."""

    class HostError(Exception):
        """A host call failed on the Go side; the message is the Go error text."""

    class ViewError(HostError):
        """A store view failed, was unknown or out of scope, or timed out; the
        message is the Go error text."""

    _host = None
    _view = None


class NotInPool(RuntimeError):
    """Raised by slither.view and slither.host_call outside a Slither pool:
    only a pool worker has a Go side to answer them."""


def host_call(name, *args):
    """Calls the Go-side host function `name` with args and returns its result.

    In the embedded pool this is a direct call into Go on this thread; in a
    process worker, a request over the worker's pipe. Blocks this thread
    until Go answers. Raises HostError with the Go error's text when the Go
    side fails, and NotInPool outside a Slither pool.
    """
    if _host is None:
        raise NotInPool(f"slither.host_call({name!r}): not running in a Slither pool (host calls are answered by "
                        f"the Go side of a pool worker)")
    return _host(name, list(args))


def _process_view(name, **args):
    if not isinstance(name, str):  # the embedded pool's check, word for word
        raise TypeError("slither.view(name, **args): pass the view's name (a str) by position and its arguments "
                        "by keyword")
    try:
        return _host("slither.view", [name, args])
    except HostError as e:
        raise ViewError(str(e)) from None


def view(name, **args):
    """Calls the store view `name` with keyword arguments and returns its
    result. Views registered for the current batch's session are found
    first, then global ones. Raises ViewError with the Go error's text,
    and NotInPool outside a Slither pool."""
    if _host is None:
        raise NotInPool(f"slither.view({name!r}): not running in a Slither pool (store views are served by the "
                        f"Go side of a pool worker)")
    return _process_view(name, **args)


if _view is not None:  # embedded: one C call, no Python frame
    view = _view  # noqa: F811


def failed(message):
    """The result for one item that failed on its own: return it in that
    item's place and the rest of the batch stays good; the Go side applies
    the run's error policy to that item alone (skip it, route it to an
    error bucket with this message, retry it, or halt)."""
    return {"__slither_failed__": str(message)}


def thread_safe(fn):
    """Marks fn as safe to run on many Python threads at once.

    Routing uses the mark: only marked functions may go to the embedded
    free-threaded pool automatically. Outside a pool it only marks: fn is
    returned as it is and runs as plain Python.
    """
    fn.__slither_thread_safe__ = True
    return fn


__all__ = ["Cancelled", "Context", "HostError", "NotInPool", "RefError", "ViewError", "context", "deref", "failed", "host_call",
           "ref", "release", "session", "thread_safe", "view"]
