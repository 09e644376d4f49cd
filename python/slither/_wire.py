"""The process worker's half of the wire protocol (pools/process/wire holds
the Go half): frames over pipes, the tagged JSON values inside them, and
the error records of failed calls.

Frame (integers u32 big-endian): length of the rest; length of the JSON
header; number of attachments n; n attachment lengths; the header; the
attachments, raw. The lengths must add up exactly and the frame must not
exceed the limit (SLITHER_WORKER_MAX_FRAME, default 256 MiB, the same as
the Go side's wire.DefaultMaxFrame).

Values in a header are JSON with five tags, so that nothing is lost:
{"$b": i} is attachment i (bytes), {"$f": "nan"|"inf"|"-inf"} a float,
{"$d": [[k, v], ...]} a dict whose own keys would look like a tag,
{"$a": [...]} bytes in shared memory (slither._shm), and {"$i": "123..."} is
never sent (JSON numbers carry big ints as they are).
"""

import array
import json
import math
import os
import re
import select
import struct
import sys
import threading
import time
import traceback

import slither

DEFAULT_MAX_FRAME = 256 << 20
MAX_FRAME_LIMIT = (1 << 32) - 1

_HEAD = struct.Struct(">III")  # the frame's length, the header's, the number of attachments
_LEN = struct.Struct(">I")
_COUNTS = struct.Struct(">II")
_TAGS = ("$b", "$f", "$d", "$i", "$a")
_SPECIAL_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# A connection reads frames into one buffer of its own, reused from frame to
# frame (warm memory: a fresh buffer per frame costs a page fault per 4 KiB
# page). A frame up to _EAGER bytes gets room for all of it once its lengths
# have arrived and add up; past that the buffer grows (doubling) with the
# bytes that actually arrive, so a frame's claimed length costs no more
# memory than that before its bytes are there. A buffer grown past _EAGER is
# dropped once its frame has been read.
_EAGER = 16 << 20
_START = 1 << 16


def _iov_max():
    try:
        n = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        n = -1
    return n if 16 <= n <= 1024 else 1024


_IOV_MAX = _iov_max()

# A call or reply whose header does not decode (a bad tag, an int past
# this Python's digit limit) still has its id where the Go encoder puts it:
# that message alone fails, since the frame itself was sound.
_ID_PREFIX = re.compile(rb'\{"t":"(call|reply)","(id|h)":([0-9]{1,20})[,}]')


class FrameError(Exception):
    """Malformed input from Go: the stream cannot be resynchronised."""


class FrameTooLarge(ValueError):
    """An outgoing frame over the limit; nothing was sent."""


class EncodeError(TypeError):
    """A value has no mapping to Go; path says where it is inside the value
    ("[3][name]", "" for the value itself)."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


# The embedded pool's words for the same failures (cpython/shim.c).
_SUPPORTED = "supported: None, bool, int, float, str, bytes, bytearray, list, tuple, dict with str keys"
_PLAIN = frozenset((int, str, bool, type(None)))
_PLAIN_OR_FLOAT = _PLAIN | {float}


def encode(v, atts, path, share=None):
    """Returns a JSON-able form of v, moving bytes into atts (or, large
    ones, into shared memory when share, a slither._shm.Sharing, takes
    them). Raises EncodeError for a value with no Go mapping."""
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
        return [encode(x, atts, f"{path}[{i}]", share) for i, x in enumerate(v)]
    if t is dict:
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise EncodeError(path, f"dict key {k!r} of type {type(k).__name__} is not a str")
            out[k] = encode(x, atts, f"{path}[{k}]", share)
        if len(out) == 1 and next(iter(out)) in _TAGS:
            return {"$d": [[k, x] for k, x in out.items()]}
        return out
    if t is bytes or t is bytearray or t is memoryview:
        if share is not None:
            ref = share.put(v)
            if ref is not None:
                return {"$a": ref}
        atts.append(bytes(v))
        return {"$b": len(atts) - 1}
    # Subclasses (IntEnum, OrderedDict, ...) map like their base.
    for base in (bool, int, float, str, list, tuple, dict, bytes, bytearray):
        if isinstance(v, base):
            return encode(base(v), atts, path, share)
    raise EncodeError(path, f"Python type '{t.__name__}' has no Go mapping ({_SUPPORTED})")


def _decoder(atts, arena):
    n = len(atts)

    def hook(d):
        if len(d) == 1:
            (k, x), = d.items()
            if k == "$a":
                if arena is None:
                    raise ValueError(f"shared-memory reference {x!r}, but no shared memory")
                return arena.load(x)
            if k == "$b":
                if type(x) is not int or not 0 <= x < n:
                    raise ValueError(f"attachment tag {x!r} is out of range ({n} attachments)")
                return atts[x]
            if k == "$f":
                f = _SPECIAL_FLOATS.get(x) if type(x) is str else None
                if f is None:
                    raise ValueError(f"bad float tag {x!r}")
                return f
            if k == "$d":
                if type(x) is not list or not all(type(p) is list and len(p) == 2 and type(p[0]) is str for p in x):
                    raise ValueError("bad dict tag: not a list of [str, value] pairs")
                return {kk: vv for kk, vv in x}
        return d
    return hook


def _is_id(x):
    return type(x) is int and x >= 0


_STR_OR_NONE = (str, type(None))
_LIST_OR_NONE = (list, type(None))


def _check(msg):
    """Raises FrameError unless msg is a message Go sends, well formed."""
    if type(msg) is not dict:
        raise FrameError(f"a message must be a JSON object, not a {type(msg).__name__}")
    get = msg.get
    t = get("t")
    if t == "call":
        if "$error" in msg:
            return
        cid = get("id")
        if not (type(cid) is int and cid >= 0 and type(get("m")) is str and type(get("f")) is str
                and type(get("s")) in _STR_OR_NONE and type(get("v")) in _LIST_OR_NONE):
            raise FrameError("a call needs id (an int), m and f (str), and may have s (a str) and v (a list)")
    elif t == "reply":
        if not _is_id(msg.get("h")) or type(msg.get("e", "")) is not str:
            raise FrameError("a reply needs h (an int) and may have e (a str)")
    elif t == "cancel":
        if not _is_id(msg.get("id")):
            raise FrameError("a cancel needs id (an int)")
    elif t == "close_session":
        if type(msg.get("s")) is not str:
            raise FrameError("a close_session needs s (a str)")
    elif t != "shutdown":
        raise FrameError(f"unknown message type {t!r}")


def _u32s(b):
    """Big-endian u32s from b, as a compact array (4 bytes each)."""
    a = array.array("I")
    if a.itemsize != 4:
        a = array.array("L")
    a.frombytes(b)
    if sys.byteorder == "little":
        a.byteswap()
    return a


def _u32s_bytes(xs):
    """xs as big-endian u32s."""
    a = array.array("I")
    if a.itemsize != 4:
        a = array.array("L")
    a.extend(xs)
    if sys.byteorder == "little":
        a.byteswap()
    return a.tobytes()


class Conn:
    """Frames over two pipe fds. write() is safe from any thread; recv() is
    called by one thread at a time."""

    def __init__(self, rfd, wfd, max_frame=DEFAULT_MAX_FRAME, arena=None):
        self.arena = arena  # byte strings of calls may be there
        self._rfd = rfd
        self._rb = bytearray(_START)  # the read buffer: frames land here
        self._mv = memoryview(self._rb)
        self._pos = 0  # the next unconsumed byte in _rb
        self._end = 0  # the end of the bytes read into _rb
        self._wfd = wfd
        self._wlock = threading.Lock()
        self._poll = None
        self.max_frame = max_frame

    def _fill(self, k):
        """Makes k bytes available at self._pos, reading as needed (as much
        as the pipe holds, into the buffer's free room); returns False if
        the input ends first."""
        while self._end - self._pos < k:
            if self._end == len(self._rb):
                self._room(k)
            n = os.readv(self._rfd, [self._mv[self._end:]])
            if not n:
                return False
            self._end += n
        return True

    def _room(self, k):
        """Makes room after the unconsumed bytes of a full buffer, for k
        bytes in all: moves them to the front if k fits, else grows the
        buffer (to k up to _EAGER, past it doubling)."""
        have = self._end - self._pos
        size = len(self._rb)
        if k <= size:  # the buffer is full and _pos > 0: move the rest to the front
            self._mv[:have] = self._mv[self._pos:self._end]
        else:
            size = k if k <= _EAGER else min(k, max(2 * size, _EAGER))
            rb = bytearray(size)
            mv = memoryview(rb)
            mv[:have] = self._mv[self._pos:self._end]
            self._rb, self._mv = rb, mv
        self._pos, self._end = 0, have

    def _need(self, k, n):
        """Returns the view of the next k bytes of an n-byte frame and
        consumes them."""
        if not self._fill(k):
            raise FrameError(f"input ended inside a {n}-byte frame")
        at = self._pos
        self._pos += k
        return self._mv[at:at + k]

    def wait(self, spin):
        """Polls for input for up to spin seconds without blocking, so that
        an answer expected within microseconds does not cost a sleep and a
        wake-up of this thread (tens of microseconds on a loaded VM)."""
        if self._end > self._pos:
            return
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self._rfd, select.POLLIN)
        end = time.perf_counter() + spin
        while time.perf_counter() < end:
            if self._poll.poll(0):
                return

    def recv(self):
        """Returns the next message, or None at end of input between frames.
        Raises FrameError for malformed input (the lengths are checked
        before the bytes they announce are read) and OSError when reading
        fails. A call or reply whose values do not decode comes back with
        "$error" (the exception) in place of its values."""
        if self._end == self._pos:  # nothing left over: start at the front
            self._pos = self._end = 0
            if len(self._rb) > _EAGER:
                self._rb = bytearray(_START)
                self._mv = memoryview(self._rb)
        # The length first: one over the limit must not wait for more.
        if not self._fill(4):
            if self._end == self._pos:
                return None
            raise FrameError("input ended inside a frame's length")
        n, = _LEN.unpack_from(self._rb, self._pos)
        self._check_length(n)
        self._pos += 4
        hl, na = _COUNTS.unpack(self._need(8, n))
        if 8 + 4 * na + hl > n:
            raise FrameError(f"a header of {hl} bytes and {na} attachment lengths overrun the {n}-byte frame")
        lens = _u32s(self._need(4 * na, n)) if na else ()
        rest = hl + sum(lens)
        if 8 + 4 * na + rest != n:
            raise FrameError(f"the frame's parts (a header of {hl} bytes and {na} attachments) add up to "
                             f"{8 + 4 * na + rest} bytes, not the {n} it announces")
        # The rest of the frame, read into the buffer whole. Counted from
        # _pos, not from where the frame began: reading its lengths may
        # have moved the bytes in the buffer (_room).
        if not self._fill(rest):
            raise FrameError(f"input ended inside a {n}-byte frame")
        hdr = bytes(self._need(hl, n))
        atts = [bytes(self._need(ln, n)) for ln in lens]
        try:
            msg = json.loads(hdr, object_hook=_decoder(atts, self.arena) if atts or b"$" in hdr else None)
        except Exception as exc:  # noqa: BLE001 - any failure to decode is reported, not raised through
            m = _ID_PREFIX.match(hdr)
            if m is None:
                raise FrameError(f"message header is not valid tagged JSON: {safe_str(exc)}") from None
            t, key, ident = m.group(1).decode(), m.group(2).decode(), int(m.group(3))
            return {"t": t, key: ident, "$error": exc}
        _check(msg)
        return msg

    def _check_length(self, n):
        if n < 8:
            raise FrameError(f"frame length {n} is shorter than the 8 bytes every frame starts with")
        if n > self.max_frame:
            raise FrameError(f"frame length {n} exceeds the {self.max_frame}-byte limit (SLITHER_WORKER_MAX_FRAME)")

    def pack(self, msg, atts=(), shared=0):
        """Returns msg's frame as a list of buffers to write; shared is the
        size of its byte strings in shared memory, which count against the
        limit too. Raises UnicodeEncodeError for a str that is not valid
        UTF-8, ValueError for what JSON cannot say, FrameTooLarge past the
        limit."""
        hdr = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        na = len(atts)
        total = 8 + 4 * na + len(hdr) + sum(map(len, atts))
        if total + shared > self.max_frame:
            raise FrameTooLarge(f"{total + shared} bytes exceed the frame limit of {self.max_frame} bytes "
                                f"(SLITHER_WORKER_MAX_FRAME)")
        head = _HEAD.pack(total, len(hdr), na)
        if na:
            head += _u32s_bytes(map(len, atts))
        return [head, hdr, *atts]

    def write(self, parts):
        """Writes the buffers of one frame; raises OSError. writev takes at
        most IOV_MAX buffers at a time."""
        i, end = 0, len(parts)
        with self._wlock:
            while i < end:
                n = os.writev(self._wfd, parts[i:i + _IOV_MAX])
                while i < end and n >= len(parts[i]):
                    n -= len(parts[i])
                    i += 1
                if n:
                    parts[i] = memoryview(parts[i])[n:]


def safe_str(x):
    """str(x), or a placeholder when str() itself fails."""
    try:
        return str(x)
    except BaseException:  # noqa: BLE001 - the text of an error must never raise
        return f"<{type(x).__name__} str() failed>"


def utf8_text(s):
    """s as a plain str, with anything that is not valid UTF-8 (lone
    surrogates) escaped; a str subclass's own methods are not called."""
    s = str.__str__(s)
    try:
        str.encode(s, "utf-8")
        return s
    except UnicodeEncodeError:
        return str.encode(s, "utf-8", "backslashreplace").decode("utf-8")


# -- error records: what Go is told about a failed call ------------------------

def type_name(exc):
    t = type(exc)
    if t.__module__ in ("builtins", "__main__"):
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


def describe(exc, with_traceback=True):
    """The error record of exc for Go. Never raises: an exception whose
    str() or traceback cannot be formatted is described as such."""
    try:
        name = type_name(exc)
    except BaseException:  # noqa: BLE001
        name = "BaseException"
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001
        message = "<exception str() failed>"
    tb = ""
    if with_traceback:
        try:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip("\n")
        except BaseException as e:  # noqa: BLE001
            tb = f"<formatting the traceback failed: {safe_str(e)}>"
    try:
        kind = "cancelled" if isinstance(exc, slither.Cancelled) else "exception"
    except BaseException:  # noqa: BLE001
        kind = "exception"
    return {"type": utf8_text(name), "message": utf8_text(message), "traceback": utf8_text(tb), "kind": kind}


def conversion_error(exc):
    """The error record of a result that cannot go to Go: message says
    "result" + path + ": " + reason; path locates the value in the result
    list the way the embedded pool's errors do ("[3][name]")."""
    path = ""
    if isinstance(exc, EncodeError):
        path, reason = exc.path, exc.reason
    elif isinstance(exc, UnicodeEncodeError):
        reason = "str is not valid UTF-8 (it holds a lone surrogate)"
    elif isinstance(exc, RecursionError):
        reason = "nesting too deep (or a list or dict that contains itself)"
    elif isinstance(exc, FrameTooLarge):
        reason = str(exc)
    else:
        try:
            reason = f"{type_name(exc)}: {safe_str(exc)}"
        except BaseException:  # noqa: BLE001
            reason = "it could not be converted"
    path, reason = utf8_text(path), utf8_text(reason)
    return {"type": "TypeError", "message": f"result{path}: {reason}", "path": path, "reason": reason,
            "traceback": "", "kind": "conversion"}


def argument_name(what, path):
    """Names the argument at path the way the embedded pool does."""
    if what == "slither.view" and path.startswith("[1]["):
        key, _, rest = path[4:].partition("]")  # [name, kwargs]: the keyword's name
        return f"argument {key}{rest}"
    return f"argument {path}" if path else "arguments"
