"""Slither process-pool worker: `python -m slither.worker`.

Stdlib only; runs under any CPython >= 3.10, free-threaded or not. The Go
pool starts it with three pipes (SLITHER_WORKER_FDS): it reads frames on the
first, writes frames on the second, and reads cancel requests on the third,
which a watcher thread serves so that the hot path never waits on it
(stdin, stdout and stderr stay free for the user's code; the pool logs
stdout and stderr). The three are made non-inheritable at once, so that a
process the user's code starts can neither hold nor read them.

When the pool also passes shared memory (SLITHER_WORKER_ARENA, a memfd and
its size; see slither._shm), large byte strings of calls arrive
there and those of results go there while it has room; the hello says
whether it could be mapped. Everything else, and everything when it could
not, goes through the pipes.

With one thread per worker (SLITHER_WORKER_THREADS=1) the main thread reads
and runs calls itself: handing each call to another thread would cost more
than a small call (tens of microseconds). With more, the main thread reads
and a pool of threads runs calls.

Frames and values are described in slither._wire. Messages (header "t"):
  worker -> Go  hello   {proto, pid, version, executable, free_threaded, gil_enabled, threads, max_frame,
                         arena (it mapped the shared memory of SLITHER_WORKER_ARENA: results may use it)}
  Go -> worker  call    {id, m, f, s (session or null), tr, sp (trace and span ids, hex; when traced), v (items)}
  worker -> Go  result  {id, v} or {id, e: {type, message, traceback, kind}}
  worker -> Go  host    {h, id, n (name), v (args)}   a call into Go in mid-batch
  Go -> worker  reply   {h, v} or {h, e: message}
  Go -> worker  cancel  {id}        (third pipe) raises slither.Cancelled in that call
  Go -> worker  close_session {s}
  Go -> worker  shutdown {}         finish running calls, then exit 0

Whatever goes wrong with one call (its result has no Go mapping or is over
the frame limit, its exception cannot be printed, a cancel arrives as it
ends) fails that call alone; the worker goes on serving. A cancel is raised
only while the call runs its own code: never in the worker's, and never in
the next call. Exit status: 0 at end of input or after shutdown; 65 for
malformed input from Go (a bad frame or message: the stream cannot be
resynchronised); 74 when reading or writing a pipe fails; 70 for an error
of the worker itself; 64 for a bad setting; 3 when a preload fails. Each
non-zero exit says why on stderr.
"""

import importlib
import os
import queue
import sys
import sysconfig
import threading
import traceback

import slither
from slither import _context
from slither._wire import (
    DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT, Conn, EncodeError, FrameError, FrameTooLarge, argument_name, conversion_error,
    describe, encode, utf8_text,
)
from slither._shm import Arena, Sharing

PROTOCOL = 2  # wire.Protocol: 2 added {"$a": ...}, byte strings in shared memory
# How long a thread waiting for a host call's answer polls before it sleeps.
HOST_SPIN = 50e-6
# Integers whose decimal form is longer than this cannot cross on Pythons
# older than 3.12, whose conversion is quadratic (a million digits take tens
# of seconds); 3.12 and later convert any size the frame limit allows.
OLD_INT_MAX_DIGITS = 100_000

EXIT_USAGE = 64
EXIT_PROTOCOL = 65
EXIT_SOFTWARE = 70
EXIT_IO = 74

_CANCELLED = object()  # put in a host call's reply box by cancel()
_UNSET = object()      # no session set on this thread yet


def _fatal(code, text):
    """Says why on stderr and exits with code, at once."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass
    try:
        os.write(2, f"slither.worker: {text}\n".encode("utf-8", "backslashreplace"))
    except BaseException:  # noqa: BLE001 - nowhere left to say it
        pass
    os._exit(code)


_set_async = None


def _async_exc():
    """Returns f(ident, exc) that raises exc in thread ident (exc None
    clears one pending), or False where ctypes is missing."""
    global _set_async
    if _set_async is None:
        try:
            import ctypes
            fn = ctypes.pythonapi.PyThreadState_SetAsyncExc

            def set_async(ident, exc):
                fn(ctypes.c_ulong(ident), ctypes.py_object(exc) if exc is not None else None)
            _set_async = set_async
        except Exception:  # noqa: BLE001 - no ctypes: a call runs to its end
            _set_async = False
    return _set_async


class _Call:
    """A call while it runs on a thread; the fields are guarded by
    Worker.running_lock."""

    __slots__ = ("id", "ident", "cancelled", "pending", "in_host", "box")

    def __init__(self, cid, ident):
        self.id = cid
        self.ident = ident
        self.cancelled = False  # a cancel arrived
        self.pending = False    # an async Cancelled was set on the thread
        self.in_host = False    # waiting for a host call's answer: no async exceptions
        self.box = None         # that answer's box (threaded mode)


class Worker:
    def __init__(self, conn, worker_id, threads):
        self.conn = conn
        self.worker_id = worker_id
        self.threads = threads
        self.calls = queue.SimpleQueue()
        self.fns = {}
        self.fns_lock = threading.Lock()
        self.running = {}  # call id -> _Call
        self.running_lock = threading.Lock()
        self.host_waiters = {}  # host request id -> SimpleQueue
        self.host_lock = threading.Lock()
        self.host_seq = 0
        self.local = threading.local()
        self.deferred = []  # inline mode: calls that arrived during a host call
        self.exiting = False

    # -- pipes --------------------------------------------------------------
    def write(self, parts):
        try:
            self.conn.write(parts)
        except OSError as exc:
            _fatal(EXIT_IO, f"writing to the Go process failed ({exc}); exiting")

    @staticmethod
    def read(conn, what):
        try:
            return conn.recv()
        except FrameError as exc:
            _fatal(EXIT_PROTOCOL, f"malformed input from Go on {what}: {exc}; the stream cannot be "
                                  f"resynchronised, exiting")
        except OSError as exc:
            _fatal(EXIT_IO, f"reading {what} failed ({exc}); exiting")
        except BaseException:  # noqa: BLE001
            _fatal(EXIT_SOFTWARE, f"reading {what} failed:\n{traceback.format_exc()}")

    # -- executor threads ---------------------------------------------------
    def serve(self):
        _context._bind(self.worker_id, "process")
        session = _UNSET
        while True:
            try:
                msg = self.calls.get()
                if msg is None:
                    return
                session = self.execute_safely(msg, session)
            except BaseException:  # noqa: BLE001 - a stray exception between calls must not cost a thread
                session = _UNSET
                self.stray("an executor thread")

    def execute_safely(self, msg, session):
        """execute(), and an error for the call should the worker itself
        fail: the thread lives on either way."""
        try:
            return self.execute(msg, session)
        except BaseException as exc:  # noqa: BLE001 - a bug of ours must not cost a thread
            try:
                sys.stderr.write(f"slither.worker: internal error in call {msg.get('id')}:\n"
                                 f"{''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))}")
            except BaseException:  # noqa: BLE001
                pass
            err = describe(exc, with_traceback=False)
            err["message"] = "slither.worker internal error: " + err["message"]
            try:
                parts = self.conn.pack({"t": "result", "id": msg.get("id"), "e": err})
            except BaseException:  # noqa: BLE001 - the call cannot be answered: Go must see a crash
                _fatal(EXIT_SOFTWARE, f"cannot answer call {msg.get('id')} after an internal error")
            self.write(parts)
            return _UNSET

    def execute(self, msg, session):
        """Runs one call on this thread and sends its result; returns the
        session this thread is now in. However it ends, the call is taken
        off the running calls first, so that a late cancel for it finds
        nothing to raise."""
        c = _Call(msg["id"], threading.get_ident())
        self.local.call = c
        traced = "tr" in msg
        try:
            try:
                s = msg.get("s")
                if s != session:
                    session = _UNSET
                    _context._set_session(s)
                    session = s
                if traced:  # validated there: a bad id is ignored, never fatal
                    _context._set_trace(msg.get("tr"), msg.get("sp"))
                with self.running_lock:
                    self.running[c.id] = c
                reply = self.run(msg)
            except BaseException as exc:  # noqa: BLE001 - a cancel that landed around the call, not in it
                reply = ("err", describe(exc))
        finally:
            while True:
                try:
                    self.end(c)
                    break
                except BaseException:  # noqa: BLE001 - the pending cancel landed here (as end() began): it is spent
                    pass
            self.local.call = None
            if traced:  # after end(): no cancel can land in it any more
                _context._set_trace(None, None)
        self.send_result(c.id, reply)
        return session

    def end(self, c):
        """Takes c off the running calls and clears a cancel still pending
        on this thread, so that it cannot land in the worker's code or in
        the next call. The cancel may land in here, once: call it again."""
        with self.running_lock:
            self.running.pop(c.id, None)
            if c.pending:
                c.pending = False
                _set_async(c.ident, None)

    def lookup(self, mod, fn):
        key = (mod, fn)
        f = self.fns.get(key)
        if f is None:
            m = importlib.import_module(mod)
            f = getattr(m, fn)
            with self.fns_lock:
                self.fns[key] = f
        return f

    def run(self, msg):
        try:
            if "$error" in msg:  # its items did not decode
                exc = msg["$error"]
                return ("err", describe(exc, with_traceback=False))
            items = msg.get("v") or []
            out = self.lookup(msg["m"], msg["f"])(items)
            if not isinstance(out, (list, tuple)):
                raise TypeError(f"{msg['m']}.{msg['f']} returned a {type(out).__name__}, not a list")
            return ("ok", out)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to Go
            return ("err", describe(exc))

    def send_result(self, cid, reply):
        status, val = reply
        share = Sharing(self.conn.arena) if self.conn.arena is not None else None
        try:
            if status == "ok":
                atts = []
                v = encode(val, atts, "", share)
                parts = self.conn.pack({"t": "result", "id": cid, "v": v}, atts, share.size if share else 0)
            else:
                parts = self.conn.pack({"t": "result", "id": cid, "e": val})
        except BaseException as exc:  # noqa: BLE001 - a result that cannot go fails its call only
            if share is not None:
                share.drop()
            parts = self.conn.pack({"t": "result", "id": cid, "e": conversion_error(exc)})
        self.write(parts)

    # -- host calls (from executor threads) ---------------------------------
    def host(self, name, args):
        c = getattr(self.local, "call", None)
        if c is None:
            raise RuntimeError("slither.host_call: only from inside a batch call")
        what = "slither.view" if name == "slither.view" else "slither.host_call"
        if type(name) is not str:
            raise TypeError(f"slither.host_call: the name must be a str, not {type(name).__name__}")
        atts = []
        with self.host_lock:
            self.host_seq += 1
            h = self.host_seq
        try:
            v = encode(args, atts, "")
            parts = self.conn.pack({"t": "host", "h": h, "id": c.id, "n": name, "v": v}, atts)
        except EncodeError as exc:
            raise TypeError(f"{what}: {argument_name(what, exc.path)} cannot go to Go: {exc.reason}") from None
        except UnicodeEncodeError:
            raise TypeError(f"{what}: arguments cannot go to Go: str is not valid UTF-8 "
                            f"(it holds a lone surrogate)") from None
        except RecursionError:
            raise TypeError(f"{what}: arguments cannot go to Go: nesting too deep") from None
        except FrameTooLarge as exc:
            raise ValueError(f"{what}: arguments of {exc}") from None
        box = queue.SimpleQueue()
        # From here on no cancel may be raised as an exception on this
        # thread: it would cut a frame in two. A cancel that arrives while
        # Go answers is raised when the answer is in.
        with self.running_lock:
            if c.cancelled:
                if c.pending:
                    c.pending = False
                    _set_async(c.ident, None)
                raise slither.Cancelled()
            c.in_host = True
            if self.threads > 1:
                c.box = box
        try:
            with self.host_lock:
                self.host_waiters[h] = box
            self.write(parts)
            msg = self.pump(h) if self.threads == 1 else box.get()
        finally:
            with self.host_lock:
                self.host_waiters.pop(h, None)
            with self.running_lock:
                c.in_host = False
                c.box = None
                cancelled = c.cancelled
        if msg is _CANCELLED or cancelled:
            raise slither.Cancelled()
        if "$error" in msg:
            raise msg["$error"]
        if "e" in msg:
            raise slither.HostError(msg["e"])
        return msg.get("v")

    # -- main thread --------------------------------------------------------
    def cancel(self, cid):
        """Raises slither.Cancelled in call cid, if it runs its own code;
        if it waits for a host call, that call raises it."""
        set_async = _async_exc()
        with self.running_lock:
            c = self.running.get(cid)
            if c is None or c.cancelled:
                return
            c.cancelled = True
            if c.box is not None:
                c.box.put(_CANCELLED)
            elif not c.in_host and set_async:
                set_async(c.ident, slither.Cancelled)
                c.pending = True

    def control(self, msg):
        """Handles a message other than a call. Returns False on shutdown."""
        t = msg.get("t")
        if t == "reply":
            with self.host_lock:
                box = self.host_waiters.get(msg["h"])
            if box is not None:
                box.put(msg)
        elif t == "close_session":
            _context._drop_session(msg["s"])
        elif t == "shutdown":
            return False
        elif t == "cancel":
            self.cancel(msg["id"])
        else:
            _fatal(EXIT_PROTOCOL, f"malformed input from Go: a {t!r} message on the call pipe")
        return True

    def hello(self):
        self.write(self.conn.pack({
            "t": "hello", "proto": PROTOCOL, "pid": os.getpid(),
            "version": sys.version.split()[0], "executable": utf8_text(sys.executable or ""),
            "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            "gil_enabled": bool(sys._is_gil_enabled()) if hasattr(sys, "_is_gil_enabled") else True,
            "threads": self.threads, "max_frame": self.conn.max_frame, "arena": self.conn.arena is not None,
        }))

    def watch_cancels(self, fd):
        """Serves the cancel pipe (a daemon thread)."""
        conn = Conn(fd, -1, self.conn.max_frame)
        while True:
            msg = self.read(conn, "the cancel pipe")
            if msg is None:
                return
            if msg.get("t") != "cancel":
                _fatal(EXIT_PROTOCOL, f"malformed input from Go: a {msg.get('t')!r} message on the cancel pipe")
            self.cancel(msg["id"])

    def main(self):
        if self.threads == 1:
            return self.main_inline()
        pool = [threading.Thread(target=self.serve, name=f"slither-worker-{i}", daemon=True)
                for i in range(self.threads)]
        for t in pool:
            t.start()
        self.hello()
        while True:
            msg = self.read(self.conn, "the call pipe")
            if msg is None:
                self.exit()  # the Go side is gone
            if msg.get("t") == "call":
                self.calls.put(msg)
            elif not self.control(msg):
                for _ in pool:
                    self.calls.put(None)
                for th in pool:
                    th.join()
                self.exit()

    def main_inline(self):
        _context._bind(self.worker_id, "process")
        self.hello()
        session = _UNSET
        while True:
            try:
                msg = self.deferred.pop(0) if self.deferred else self.read(self.conn, "the call pipe")
                if msg is None:
                    self.exit()  # the Go side is gone
                if msg.get("t") != "call":
                    if not self.control(msg):
                        self.exit()
                    continue
                session = self.execute_safely(msg, session)
                if self.exiting:
                    self.exit()
            except BaseException:  # noqa: BLE001 - a stray exception between calls must not end the worker
                session = _UNSET
                self.stray("the main thread")

    @staticmethod
    def stray(where):
        """Reports an exception that reached a serving loop, outside any
        call: a bug of ours (no cancel is left pending once its call ends).
        The loop serves on; a message it was taking when the exception
        landed may be lost, which is why none may land there."""
        try:
            sys.stderr.write(f"slither.worker: stray exception in {where}, outside any call (serving on):\n"
                             f"{traceback.format_exc()}")
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - nowhere to say it
            pass

    def pump(self, h):
        """Inline mode: reads frames until the reply to host request h."""
        while True:
            self.conn.wait(HOST_SPIN)
            msg = self.read(self.conn, "the call pipe")
            if msg is None:
                self.exit()
            t = msg.get("t")
            if t == "reply" and msg.get("h") == h:
                return msg
            if t == "call":
                self.deferred.append(msg)
            elif not self.control(msg):
                self.exiting = True

    @staticmethod
    def exit():
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except BaseException:  # noqa: BLE001 - exiting anyway
                pass
        os._exit(0)


def _env_int(name, default):
    s = os.environ.get(name, "")
    if not s:
        return default
    try:
        return int(s)
    except ValueError:
        _fatal(EXIT_USAGE, f"{name}={s!r} is not an integer")


def main():
    fds = [int(f) for f in os.environ.get("SLITHER_WORKER_FDS", "3,4,5").split(",")]
    rfd, wfd, cfd = fds[0], fds[1], fds[2] if len(fds) > 2 else -1
    for fd in (rfd, wfd, cfd):
        if fd >= 0:
            try:
                os.set_inheritable(fd, False)
            except OSError as exc:
                _fatal(EXIT_IO, f"protocol fd {fd} ({exc}): start it from the Go pool")
    # Mapped (and its fd closed) before any user code runs: a process that
    # code starts must not hold it, nor be told of an fd it does not have.
    arena = Arena.from_env(os.environ.pop("SLITHER_WORKER_ARENA", ""))
    threads = max(1, _env_int("SLITHER_WORKER_THREADS", 1))
    worker_id = _env_int("SLITHER_WORKER_ID", 0)
    max_frame = _env_int("SLITHER_WORKER_MAX_FRAME", 0)
    max_frame = DEFAULT_MAX_FRAME if max_frame <= 0 else min(max_frame, MAX_FRAME_LIMIT)
    if hasattr(sys, "set_int_max_str_digits"):  # the frame limit bounds sizes
        sys.set_int_max_str_digits(0 if sys.version_info >= (3, 12) else OLD_INT_MAX_DIGITS)
    for mod in filter(None, os.environ.get("SLITHER_WORKER_PRELOAD", "").split(",")):
        try:
            importlib.import_module(mod)
        except BaseException:
            traceback.print_exc()
            print(f"slither.worker: preloading {mod!r} failed", file=sys.stderr)
            sys.exit(3)
    w = Worker(Conn(rfd, wfd, max_frame, arena), worker_id, threads)
    slither._host = w.host
    if cfd >= 0:
        threading.Thread(target=w.watch_cancels, args=(cfd,), name="slither-cancels", daemon=True).start()
    w.main()


if __name__ == "__main__":
    main()
