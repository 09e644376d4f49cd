"""Workloads of `slither bench`, the same functions for every executor: the
Slither pools call them with a batch, and _bench_runner (Python's own
executors and the serial baseline) calls them the same way."""

import hashlib
import os
import threading
import time
import zlib

import slither

_MB = None
_lock = threading.Lock()
_counter = [0]
_models = {}


@slither.thread_safe
def noop(batch):
    return batch


@slither.thread_safe
def cpu(batch):
    """A pure-Python loop of n iterations per item; returns a checksum."""
    out = []
    for n in batch:
        acc = 0
        for i in range(n):
            acc = (acc * 31 + i) & 0xFFFFFFFF
        out.append(acc)
    return out


def expected_cpu(n):
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


def _megabyte():
    global _MB
    if _MB is None:
        _MB = bytes(range(256)) * 4096  # 1 MiB, the same in every process
    return _MB


@slither.thread_safe
def digest(batch):
    """sha256, and a zlib round trip checked by CRC-32, of 1 MiB per item:
    C code that releases the GIL on its own."""
    data = _megabyte()
    out = []
    for seed in batch:
        h = hashlib.sha256(data)
        h.update(str(seed).encode())
        crc = zlib.crc32(zlib.decompress(zlib.compress(data, 1)))
        out.append(h.hexdigest()[:16] + ":" + str(crc))
    return out


def expected_digest(seed):
    return digest([seed])[0]


@slither.thread_safe
def sleep(batch):
    """I/O wait: 1 ms per item."""
    for _ in batch:
        time.sleep(0.001)
    return batch


def incr_view(batch):
    """Read-modify-write through the Go store (slither.view "bench.incr")."""
    for _ in batch:
        slither.view("bench.incr")
    return batch


def incr_dict(batch):
    """The same on a module dict with no lock: threads race."""
    for _ in batch:
        _counter[0] = _counter[0] + 1
    return batch


def incr_dict_locked(batch):
    for _ in batch:
        with _lock:
            _counter[0] = _counter[0] + 1
    return batch


def counter(batch=None):
    with _lock:
        c = _counter[0]
        _counter[0] = 0
    return [c]


@slither.thread_safe
def echo(batch):
    return batch


def model(batch):
    """A stateful "model": built once per session (or per process outside
    a session), then used for every item."""
    key = slither.context().session_id or "process"
    try:
        st = slither.session() if slither.context().session_id else _models
    except RuntimeError:
        st = _models
    m = st.get(key)
    if m is None:
        m = st[key] = [((i * 7919) % 1000) / 1000 for i in range(100_000)]  # ~1 MB of weights
    return [m[x % len(m)] + x for x in batch]


def expected_model(x):
    return ((x % 100_000) * 7919 % 1000) / 1000 + x


def crash(batch):
    """A segfault, as a buggy C extension would make."""
    import ctypes
    ctypes.string_at(0)
    return batch


def pid(batch):
    return [os.getpid()] * len(batch)
