"""Slither process-pool worker: `python -m slither.worker`.

Stdlib only; runs under any CPython >= 3.10, free-threaded or not. The Go
pool starts it with three pipes (SLITHER_WORKER_FDS): it reads frames on the
first, writes frames on the second, and reads cancel requests on the third,
which a watcher thread serves so that the hot path never waits on it
(stdin, stdout and stderr stay free for the user's code; the pool logs
stdout and stderr).

With one thread per worker (SLITHER_WORKER_THREADS=1) the main thread reads
and runs calls itself: handing each call to another thread would cost more
than a small call (tens of microseconds). With more, the main thread reads
and a pool of threads runs calls.

Frame (integers u32 big-endian): length of the rest; length of the JSON
header; number of attachments n; n attachment lengths; the header; the
attachments, raw.
Values in a header are JSON with four tags, so that nothing is lost:
{"$b": i} is attachment i (bytes), {"$f": "nan"|"inf"|"-inf"} a float,
{"$d": [[k, v], ...]} a dict whose own keys would look like a tag, and
{"$i": "123..."} is never sent (JSON numbers carry big ints as they are).

Messages (header "t"):
  worker -> Go  hello   {proto, pid, version, executable, free_threaded, gil_enabled, threads}
  Go -> worker  call    {id, m, f, s (session or null), v (items)}
  worker -> Go  result  {id, v} or {id, e: {type, message, traceback, kind}}
  worker -> Go  host    {h, id, n (name), v (args)}   a call into Go in mid-batch
  Go -> worker  reply   {h, v} or {h, e: message}
  Go -> worker  cancel  {id}        (third pipe) raises slither.Cancelled in that call
  Go -> worker  close_session {s}
  Go -> worker  shutdown {}         finish running calls, then exit 0
The worker exits at once when its input pipe closes: the Go process is gone.
"""

import importlib
import json
import math
import os
import queue
import select
import struct
import sys
import sysconfig
import threading
import time
import traceback

import slither
from slither import _context

PROTOCOL = 1
MAX_FRAME = 1 << 31
# How long a thread waiting for a host call's answer polls before it sleeps.
HOST_SPIN = 50e-6
_LEN = struct.Struct(">I")
_TAGS = ("$b", "$f", "$d", "$i")


_PLAIN = frozenset((int, str, bool, type(None)))
_PLAIN_OR_FLOAT = _PLAIN | {float}


class EncodeError(Exception):
    """A value has no mapping to Go; the message names where it is."""


def _encode(v, atts, path):
    """Returns a JSON-able form of v, moving bytes into atts."""
    t = type(v)
    if v is None or t is bool or t is str:
        return v
    if t is int:
        return v
    if t is float:
        if math.isfinite(v):
            return v
        return {"$f": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if t is list or t is tuple:
        kinds = set(map(type, v))
        if kinds <= _PLAIN:  # JSON as it is: no copy, no per-item call
            return v
        if kinds <= _PLAIN_OR_FLOAT and all(map(math.isfinite, (x for x in v if type(x) is float))):
            return v
        return [_encode(x, atts, f"{path}[{i}]") for i, x in enumerate(v)]
    if t is dict:
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise EncodeError(f"{path}: dict key {k!r} is a {type(k).__name__}, not a str")
            out[k] = _encode(x, atts, f"{path}[{k!r}]")
        if len(out) == 1 and next(iter(out)) in _TAGS:
            return {"$d": [[k, x] for k, x in out.items()]}
        return out
    if t is bytes or t is bytearray or t is memoryview:
        atts.append(bytes(v))
        return {"$b": len(atts) - 1}
    # Subclasses (IntEnum, OrderedDict, ...) map like their base.
    for base in (bool, int, float, str, list, tuple, dict, bytes, bytearray):
        if isinstance(v, base):
            return _encode(base(v), atts, path)
    raise EncodeError(f"{path}: a {t.__module__}.{t.__qualname__} has no Go mapping")


def _decoder(atts):
    def hook(d):
        if len(d) == 1:
            (k, x), = d.items()
            if k == "$b":
                return atts[x]
            if k == "$f":
                return float(x)
            if k == "$d":
                return {kk: vv for kk, vv in x}
        return d
    return hook


class Conn:
    """Frames over two pipe fds. send() is safe from any thread; recv() is
    called by one thread at a time."""

    def __init__(self, rfd, wfd):
        self._rfd = rfd
        self._buf = b""  # bytes read from the pipe and not yet consumed
        self._pos = 0
        self._wfd = wfd
        self._wlock = threading.Lock()
        self._poll = None

    def _read(self, n):
        """Returns exactly n bytes, or fewer at end of input."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            b = self._buf[self._pos:self._pos + n]
            self._pos += n
            return b
        parts = [self._buf[self._pos:]]
        self._buf, self._pos = b"", 0
        need = n - avail
        while need > 0:
            chunk = os.read(self._rfd, max(need, 1 << 16))
            if not chunk:
                break
            if len(chunk) > need:  # keep the rest for the next frames
                parts.append(chunk[:need])
                self._buf = chunk[need:]
                need = 0
            else:
                parts.append(chunk)
                need -= len(chunk)
        return b"".join(parts)

    def wait(self, spin):
        """Polls for input for up to spin seconds without blocking, so that
        an answer expected within microseconds does not cost a sleep and a
        wake-up of this thread (tens of microseconds on a loaded VM)."""
        if len(self._buf) > self._pos:
            return
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self._rfd, select.POLLIN)
        end = time.perf_counter() + spin
        while time.perf_counter() < end:
            if self._poll.poll(0):
                return

    def recv(self):
        """Returns the decoded header, or None at end of input."""
        b = self._read(12)
        if len(b) < 12:
            return None
        n, hl, na = struct.unpack(">III", b)
        if n < 8 or n > MAX_FRAME:
            raise ValueError(f"bad frame length {n}")
        lens = struct.unpack(f">{na}I", self._read(4 * na)) if na else ()
        hdr = self._read(hl)
        if len(hdr) < hl:
            return None
        atts = []
        for ln in lens:
            a = self._read(ln)
            if len(a) < ln:
                return None
            atts.append(a)
        return json.loads(hdr, object_hook=_decoder(atts) if atts or b"$" in hdr else None)

    def send(self, msg, atts=()):
        """Sends msg; raises EncodeError if a str in it is not valid UTF-8."""
        try:
            hdr = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except UnicodeEncodeError:
            raise EncodeError("a str holds a lone surrogate, which is not valid UTF-8") from None
        na = len(atts)
        total = 8 + 4 * na + len(hdr) + sum(len(a) for a in atts)
        head = struct.pack(f">III{na}I", total, len(hdr), na, *(len(a) for a in atts))
        parts = [head, hdr, *atts]
        with self._wlock:
            while parts:
                n = os.writev(self._wfd, parts)
                while parts and n >= len(parts[0]):
                    n -= len(parts[0])
                    parts.pop(0)
                if n:
                    parts[0] = parts[0][n:]


def _type_name(exc):
    t = type(exc)
    if t.__module__ in ("builtins", "__main__"):
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


class Worker:
    def __init__(self, conn, worker_id, threads):
        self.conn = conn
        self.worker_id = worker_id
        self.threads = threads
        self.calls = queue.SimpleQueue()
        self.fns = {}
        self.fns_lock = threading.Lock()
        self.running = {}  # call id -> thread ident
        self.running_lock = threading.Lock()
        self.host_waiters = {}  # host request id -> SimpleQueue
        self.host_lock = threading.Lock()
        self.host_seq = 0
        self.local = threading.local()
        self.deferred = []  # inline mode: calls that arrived during a host call
        self.exiting = False

    # -- executor threads -------------------------------------------------
    def serve(self):
        _context._bind(self.worker_id, "process")
        session = None
        while True:
            msg = self.calls.get()
            if msg is None:
                return
            session = self.execute(msg, session)

    def execute(self, msg, session):
        """Runs one call on this thread and sends its result; returns the
        session this thread is now in."""
        cid = msg["id"]
        self.local.call_id = cid
        if msg.get("s") != session:
            session = msg.get("s")
            _context._set_session(session)
        with self.running_lock:
            self.running[cid] = threading.get_ident()
        try:
            reply = self.run(msg)
        finally:
            with self.running_lock:
                self.running.pop(cid, None)
        try:
            self.send_result(cid, reply)
        except OSError:
            os._exit(0)  # the Go side is gone
        return session

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
            items = msg.get("v") or []
            out = self.lookup(msg["m"], msg["f"])(items)
            if not isinstance(out, (list, tuple)):
                raise TypeError(f"{msg['m']}.{msg['f']} returned a {type(out).__name__}, not a list")
            return ("ok", out)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to Go
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return ("err", {"type": _type_name(exc), "message": str(exc), "traceback": tb.rstrip("\n"),
                            "kind": "cancelled" if isinstance(exc, slither.Cancelled) else "exception"})

    def send_result(self, cid, reply):
        status, val = reply
        if status == "ok":
            atts = []
            try:
                v = _encode(val, atts, "result")
                self.conn.send({"t": "result", "id": cid, "v": v}, atts)
            except EncodeError as exc:
                self.conn.send({"t": "result", "id": cid,
                                "e": {"type": "EncodeError", "message": str(exc), "traceback": "", "kind": "conversion"}})
        else:
            self.conn.send({"t": "result", "id": cid, "e": val})

    # -- host calls (from executor threads) ------------------------------
    def host(self, name, args):
        cid = getattr(self.local, "call_id", None)
        if cid is None:
            raise RuntimeError("slither.host_call: only from inside a batch call")
        atts = []
        v = _encode(args, atts, "args")
        box = queue.SimpleQueue()
        with self.host_lock:
            self.host_seq += 1
            h = self.host_seq
            self.host_waiters[h] = box
        try:
            self.conn.send({"t": "host", "h": h, "id": cid, "n": name, "v": v}, atts)
            msg = self.pump(h) if self.threads == 1 else box.get()
        finally:
            with self.host_lock:
                self.host_waiters.pop(h, None)
        if "e" in msg:
            raise slither.HostError(msg["e"])
        return msg.get("v")

    # -- main thread ------------------------------------------------------
    def cancel(self, cid):
        with self.running_lock:
            ident = self.running.get(cid)
        if ident is None:
            return
        try:
            import ctypes
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(slither.Cancelled))
        except Exception:  # noqa: BLE001 - no ctypes: the call runs to its end
            pass

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
        return True

    def hello(self):
        self.conn.send({
            "t": "hello", "proto": PROTOCOL, "pid": os.getpid(),
            "version": sys.version.split()[0], "executable": sys.executable,
            "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            "gil_enabled": bool(sys._is_gil_enabled()) if hasattr(sys, "_is_gil_enabled") else True,
            "threads": self.threads,
        })

    def watch_cancels(self, fd):
        """Serves the cancel pipe (a daemon thread)."""
        conn = Conn(fd, -1)
        while True:
            try:
                msg = conn.recv()
            except Exception:  # noqa: BLE001 - a broken cancel pipe ends cancels only
                return
            if msg is None:
                return
            if msg.get("t") == "cancel":
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
            msg = self.conn.recv()
            if msg is None:
                os._exit(0)  # the Go side is gone
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
        session = None
        while True:
            msg = self.deferred.pop(0) if self.deferred else self.conn.recv()
            if msg is None:
                os._exit(0)  # the Go side is gone
            if msg.get("t") != "call":
                if not self.control(msg):
                    self.exit()
                continue
            session = self.execute(msg, session)
            if self.exiting:
                self.exit()

    def pump(self, h):
        """Inline mode: reads frames until the reply to host request h."""
        while True:
            self.conn.wait(HOST_SPIN)
            msg = self.conn.recv()
            if msg is None:
                os._exit(0)
            t = msg.get("t")
            if t == "reply" and msg.get("h") == h:
                return msg
            if t == "call":
                self.deferred.append(msg)
            elif not self.control(msg):
                self.exiting = True

    @staticmethod
    def exit():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main():
    fds = [int(f) for f in os.environ.get("SLITHER_WORKER_FDS", "3,4,5").split(",")]
    rfd, wfd, cfd = fds[0], fds[1], fds[2] if len(fds) > 2 else -1
    threads = max(1, int(os.environ.get("SLITHER_WORKER_THREADS", "1")))
    worker_id = int(os.environ.get("SLITHER_WORKER_ID", "0"))
    for mod in filter(None, os.environ.get("SLITHER_WORKER_PRELOAD", "").split(",")):
        try:
            importlib.import_module(mod)
        except BaseException:
            traceback.print_exc()
            print(f"slither.worker: preloading {mod!r} failed", file=sys.stderr)
            sys.exit(3)
    w = Worker(Conn(rfd, wfd), worker_id, threads)
    slither._host = w.host
    if cfd >= 0:
        threading.Thread(target=w.watch_cancels, args=(cfd,), name="slither-cancels", daemon=True).start()
    w.main()


if __name__ == "__main__":
    main()
