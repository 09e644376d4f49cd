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
