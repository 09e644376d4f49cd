"""Functions for the large-payload tests (payload_test.go): bytes of a
known pattern each way, and a worker that dies in the middle of writing
its result."""

import hashlib
import multiprocessing
import os
import signal
import struct
import subprocess
import sys


def pattern(n, seed):
    """n bytes: SHA-256 of (seed, i) for i = 0, 1, ... (big-endian u64s),
    concatenated; payload_test.go makes the same."""
    h = hashlib.sha256
    pack = struct.Struct(">QQ").pack
    return b"".join(h(pack(seed, i)).digest() for i in range((n + 31) // 32))[:n]


def make(batch):
    """Python -> Go: each item [n, seed] -> pattern(n, seed)."""
    return [pattern(n, seed) for n, seed in batch]


def check(batch):
    """Go -> Python: each item [data, seed] -> whether data is
    pattern(len(data), seed), and its length."""
    return [[data == pattern(len(data), seed), len(data)] for data, seed in batch]


def reverse(batch):
    """Both ways: each item (bytes) -> its bytes in reverse order."""
    return [b[::-1] for b in batch]


def reverse_or_die(batch):
    """reverse, except that the first call to reach it (the file named by
    PAYLOADTEST_MARKER does not exist yet) kills its own worker with
    SIGKILL, once its input has arrived."""
    try:
        fd = os.open(os.environ["PAYLOADTEST_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return reverse(batch)
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def die_mid_result(batch):
    """Writes the first MiB of a 3 MiB result frame to the worker's output
    pipe, then kills the worker: it dies in the middle of a transfer."""
    out = int(os.environ["SLITHER_WORKER_FDS"].split(",")[1])
    hdr = b'{"t":"result","id":0,"v":[{"$b":0}]}'
    n = 3 << 20
    head = struct.pack(">IIII", 8 + 4 + len(hdr) + n, len(hdr), 1, n)
    os.write(out, head + hdr + b"x" * (1 << 20))
    os.kill(os.getpid(), signal.SIGKILL)


def bad_shared_reference(batch):
    """Returns 300 KiB of bytes whose shared-memory reference, as sent to
    Go, is batch[0] (a [slot, offset, length] a broken worker might send)
    instead of where the bytes are."""
    from slither import _shm

    put = _shm.Arena.put

    def bad(self, b, slots):
        _shm.Arena.put = put  # this once
        return list(batch[0])

    _shm.Arena.put = bad
    return [b"x" * (300 << 10)]


def over_budget(batch):
    """Returns batch[1] byte strings of batch[2] bytes each, all sent as the
    one shared-memory reference batch[0] and not counted against the frame
    limit (what a broken worker might send); after them, as they are,
    batch[3] bytes if given (the frame's own size counts too)."""
    from slither import _shm

    put = _shm.Sharing.put
    left = [batch[1]]

    def lying(self, b):
        if len(b) != batch[2]:
            return put(self, b)
        left[0] -= 1
        if left[0] == 0:
            _shm.Sharing.put = put  # this call only
        return list(batch[0])

    _shm.Sharing.put = lying
    tail = [b"p" * batch[3]] if len(batch) > 3 else []
    return [b"y" * batch[2] for _ in range(batch[1])] + tail


def views(batch):
    """Each item [kind, n] -> a buffer of the doubles 0, 1, ... n-1 that is
    not bytes: "view" a memoryview of an array('d'), "2d" that view in two
    dimensions, "strided" every other double of a longer one, "array" the
    array itself (which has no Go mapping)."""
    from array import array

    out = []
    for kind, n in batch:
        if kind == "strided":
            out.append(memoryview(array("d", (i / 2 for i in range(2 * n))))[::2])
            continue
        a = array("d", map(float, range(n)))
        if kind == "view":
            out.append(memoryview(a))
        elif kind == "2d":
            out.append(memoryview(a).cast("B").cast("d", [n // 2, 2]))
        else:
            out.append(a)
    return out


def _sees_arena():
    """[whether SLITHER_WORKER_ARENA is set, whether the worker's shared
    memory is mapped] in this process."""
    with open("/proc/self/maps") as f:
        mapped = "memfd:slither-worker" in f.read()
    return [os.environ.get("SLITHER_WORKER_ARENA") is not None, mapped]


def _report(conn):
    conn.send(_sees_arena())
    conn.close()


_SEES_ARENA = """
import os
with open("/proc/self/maps") as f:
    mapped = "memfd:slither-worker" in f.read()
print(int(os.environ.get("SLITHER_WORKER_ARENA") is not None), int(mapped))
"""


def children(batch):
    """Each item, "self", "fork" (a multiprocessing child, forked) or
    "subprocess" -> what _sees_arena says in that process."""
    out = []
    for kind in batch:
        if kind == "self":
            out.append(_sees_arena())
        elif kind == "fork":
            ctx = multiprocessing.get_context("fork")
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_report, args=(w,))
            p.start()
            w.close()
            out.append(r.recv())
            p.join()
        else:
            got = subprocess.run([sys.executable, "-c", _SEES_ARENA], check=True, capture_output=True, text=True)
            out.append([bool(int(x)) for x in got.stdout.split()])
    return out


def bad_then_shared(batch):
    """bad_shared_reference's result (its reference batch[0]), then 300 KiB
    that really go through shared memory: Go fails on the first and must
    still free the second's piece."""
    return bad_shared_reference(batch[:1]) + [b"z" * (300 << 10)]
