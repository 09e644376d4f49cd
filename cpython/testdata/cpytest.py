"""Python functions the cpython package's tests call."""
import math
import sys


def echo(batch):
    return batch


def echo_args(*args):
    return list(args)


def types(batch):
    return [type(x).__name__ for x in batch]


def describe(batch):
    """Returns facts about each item, to check what Python received."""
    out = []
    for x in batch:
        d = {"type": type(x).__name__}
        if isinstance(x, float):
            d["nan"] = math.isnan(x)
            d["inf"] = math.isinf(x)
        if isinstance(x, (str, bytes, list, dict)):
            d["len"] = len(x)
        if isinstance(x, dict):
            d["keys"] = list(x)
        out.append(d)
    return out


def make(kind):
    """Returns a Python value of the named kind."""
    if kind == "set":
        return {1, 2}
    if kind == "object":
        return object()
    if kind == "intkey":
        return {"ok": {1: "one"}}
    if kind == "surrogate":
        return ["fine", "\udc80"]
    if kind == "tuple":
        return (1, "two", (3.0, None))
    if kind == "bytearray":
        return bytearray(b"\x00\xff")
    if kind == "bigint":
        return [2**64 + 1, -(2**70), 2**63 - 1, -(2**63)]
    if kind == "deep":
        return nest(sys.getrecursionlimit())
    raise ValueError(f"unknown kind {kind!r}")


def nest(depth):
    v = []
    for _ in range(depth):
        v = [v]
    return v


def depth_of(v):
    d = 0
    while isinstance(v, list) and v:
        v = v[0]
        d += 1
    return d


def boom(batch):
    raise ValueError(f"bad item {batch[0]!r}")


class CustomError(Exception):
    pass


def _inner():
    raise CustomError("from inner")


def custom(batch):
    _inner()


def not_a_list(batch):
    return {"a": 1}


def spin_forever(batch):
    while True:
        pass


not_callable = 42


def evaluate(expr):
    """eval() with this module's globals (a bare builtins.eval has no frame)."""
    return eval(expr)


def host(batch):
    """Each item [name, args] -> _slither_host.call(name, args), or the
    HostError's text after "error: "."""
    import _slither_host
    out = []
    for name, args in batch:
        try:
            out.append(_slither_host.call(name, args))
        except _slither_host.HostError as e:
            out.append("error: " + str(e))
    return out


def say(batch):
    """Prints each item: whole lines, then the last one without a newline."""
    for line in batch[:-1]:
        print(line)
    sys.stdout.write(batch[-1])
    return batch


def big_from_text(batch):
    """Each decimal text -> int(text): Python makes the big int."""
    return [int(s) for s in batch]


def big_to_text(batch):
    """Each int -> [str(x), x + 1]: Python got a real int."""
    return [[str(x), x + 1] for x in batch]


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str() for this exception")


_nameless = {}
# type() called from code whose globals have no __name__ leaves the class
# without __module__, so even its qualified name cannot be computed.
exec("Nameless = type('Nameless', (Exception,), {})", _nameless)
Nameless = _nameless["Nameless"]


def raise_kind(batch):
    kind = batch[0]
    if kind == "unprintable":
        raise Unprintable()
    if kind == "surrogate":
        raise ValueError("bad \udc80 byte")
    if kind == "nameless":
        raise Nameless("no module")
    raise ValueError(f"unknown kind {kind!r}")


def start_method(batch):
    import multiprocessing
    return [multiprocessing.get_start_method()] * len(batch)


def _square_into(conn, x):
    import sys as _sys
    conn.send([x * x, _sys.executable])
    conn.close()


def spawn_square(batch):
    """Squares each item in a multiprocessing child; returns [square, the
    child's sys.executable]."""
    import multiprocessing
    out = []
    for x in batch:
        parent, child = multiprocessing.Pipe()
        p = multiprocessing.Process(target=_square_into, args=(child, x))
        p.start()
        child.close()
        out.append(parent.recv())
        p.join()
    return out


def trace_ids(batch):
    """The trace ids Go set in this thread's slot, per item (or None)."""
    import _slither_host
    return [_slither_host.trace() for _ in batch]


# ---- direct calls (Caller) ----

import threading as _threading

_tl = _threading.local()
# What finalizers that make a host call saw, as their thread state was
# deleted with the OS thread.
fin_log = []


class _HostOnFinalize:
    def __del__(self):
        import _slither_host
        try:
            _slither_host.call("fin", [])
            fin_log.append("called")
        except _slither_host.HostError as e:
            fin_log.append("HostError: " + str(e))
        except BaseException as e:  # anything else is a failure the test reports
            fin_log.append("other: " + repr(e))


def tlocal(batch):
    """Keeps per-thread state (a threading.local) alive on this thread; with
    "finalizer" first, an object whose finalizer makes a host call."""
    _tl.x = [object() for _ in range(100)]
    if batch and batch[0] == "finalizer":
        _tl.fin = _HostOnFinalize()
    return batch


def fin_results(batch):
    return list(fin_log)


def gc_collect(batch):
    import gc
    gc.collect()
    return batch


def ident(batch):
    """[threading.get_ident(), the value this thread's threading.local got
    from mark (or None)] per item."""
    return [[_threading.get_ident(), getattr(_tl, "mark", None)] for _ in batch]


def mark(batch):
    _tl.mark = batch[0]
    return batch


def ctx(batch):
    """slither.context() as a list, per item."""
    import slither
    out = []
    for _ in batch:
        c = slither.context()
        out.append([c.worker_id, c.pool, c.session_id, c.trace_id, c.span_id, c.in_pool])
    return out


def session_put(batch):
    """Stores each [key, value] in slither.session(); returns the dict's items."""
    import slither
    s = slither.session()
    for k, v in batch:
        s[k] = v
    return sorted(s.items())


def ident_host(batch):
    """[threading.get_ident(), the thread-local mark] followed by host(batch)."""
    return [[_threading.get_ident(), getattr(_tl, "mark", None)]] + host(batch)


def ctx_around_host(batch):
    """[slither.context() as ctx gives it, host(batch), the same after]."""
    before = ctx([0])[0]
    mid = host(batch)
    return [before, mid, ctx([0])[0]]


def host_last(batch):
    """Ends right after a host call (an interrupt sent from it may still be
    pending when the call returns)."""
    import _slither_host
    return [_slither_host.call("last", [])]


def started_then_spin(batch):
    """Tells Go, by a host call, that it has begun; then spins."""
    import _slither_host
    _slither_host.call("started", [])
    while True:
        pass


# ---- large bytes by reference ----

_big = b"\x01" * (1 << 20)
_kept = []


def big_refcount(batch):
    return sys.getrefcount(_big)


def big_results(batch):
    """kind "ok": [_big, _big, {"k": _big}]; "bad": [_big, {1}] (fails to
    convert after _big was kept)."""
    if batch[0] == "bad":
        return [_big, {1}]
    return [_big, _big, {"k": _big}]


def keep_first(batch):
    """Keeps the first item (bytes) in a global; returns its first bytes."""
    _kept[:] = [batch[0]]
    return [bytes(batch[0][:4])]


def kept_head(batch):
    return [bytes(_kept[0][:4])]


def big_bytearray(batch):
    return [bytearray(b"\x02" * batch[0])]


_views = []


def hash_and_id(batch):
    """[hash(b), id(b), b[:4]] of the first item (bytes)."""
    b = batch[0]
    return [hash(b), id(b), bytes(b[:4])]


def keep_view(batch):
    """Keeps a memoryview of the first item; returns its first bytes."""
    _views[:] = [memoryview(batch[0])]
    return [bytes(_views[0][:4])]


def view_head(batch):
    return [bytes(_views[0][:4])]


# ---- re-entry while a result is written or read (reentry_test.go) ----

def spin_for(batch):
    """Spins for batch[0] seconds (a call an interrupt can hit)."""
    import time
    end = time.monotonic() + batch[0]
    while time.monotonic() < end:
        pass
    return ["done"]


def fresh_big(batch):
    """bytes([v]) * n for each [n, v]: new objects, held by nothing else."""
    return [bytes([v]) * n for n, v in batch]


class _NestingError(Exception):
    """Its str() makes a host call, while C writes the error record."""

    def __str__(self):
        import _slither_host
        try:
            return "nested: " + repr(_slither_host.call("nested", []))
        except _slither_host.HostError as e:
            return "refused: " + str(e)


def raise_nesting(batch):
    raise _NestingError()


def session_bytes(batch):
    """slither.context().session_id as bytes (surrogateescape), or None."""
    import slither
    s = slither.context().session_id
    return [None if s is None else s.encode("utf-8", "surrogateescape")]


def started_then_spin_bounded(batch):
    """Tells the host it started, then spins batch[0] seconds."""
    import time
    import _slither_host
    _slither_host.call("started", [])
    end = time.monotonic() + batch[0]
    while time.monotonic() < end:
        pass
    return ["not interrupted"]


def host_then_spin(batch):
    """Makes a host call, then spins batch[0] seconds."""
    import time
    import _slither_host
    r = _slither_host.call("inner", [])
    end = time.monotonic() + batch[0]
    while time.monotonic() < end:
        pass
    return [r, "finished"]


def ids(batch):
    """id() of each item."""
    return [id(x) for x in batch]
