"""Runs one `slither bench` cell on Python's own executors:

    python -m slither._bench_runner EXECUTOR < WORKLOAD_JSON

EXECUTOR is threads (ThreadPoolExecutor), processes (ProcessPoolExecutor)
or serial. The workload JSON gives the function, the batches and the number
of workers. Prints one JSON line: seconds, per-batch latencies, results (or
an error), and what survived a crash.

A payload row ("make_bytes": N) gives every item the same N-byte source, as
the Go side does. The Slither pools copy at their boundary: the function
gets a bytes object of its own and its result is copied into a new one.
ProcessPoolExecutor copies the same way (pickle and a pipe); for threads and
serial, which share memory and would copy nothing, the call is wrapped in
the same two copies (_own_bytes), timed with the rest, in the worker thread
as the embedded pool's copies run in its calling thread.
"""

import functools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait, FIRST_COMPLETED

from slither import _bench


def _own_bytes(fn, batch):
    """Calls fn with bytes of its own and returns new copies of its results:
    one copy each way, as a call through the embedded pool makes."""
    out = fn([bytes(memoryview(x)) for x in batch])
    return [bytes(memoryview(x)) for x in out]


def main():
    kind = sys.argv[1]
    w = json.loads(sys.stdin.read())
    fn = getattr(_bench, w["function"])
    batches = w["batches"]
    src = None
    if w.get("make_bytes"):
        n = w["make_bytes"]
        src = (_bench._megabyte() * (n // (1 << 20) + 1))[:n]
        batches = [[src for _ in b] for b in batches]
        if kind != "processes":
            fn = functools.partial(_own_bytes, fn)
    workers = w["workers"]
    inflight = 2 * workers
    lat = []
    results = []
    out = {"executor": kind}
    if w["function"] == "incr_dict":
        _bench.counter()
    if kind == "serial":
        t0 = time.perf_counter()
        for b in batches:
            s = time.perf_counter()
            results.append(fn(b))
            lat.append(time.perf_counter() - s)
        out["seconds"] = time.perf_counter() - t0
    else:
        ex = ThreadPoolExecutor(workers) if kind == "threads" else ProcessPoolExecutor(workers)
        with ex:
            list(ex.map(_bench.noop, [[0]] * (2 * workers)))  # start the workers first
            t0 = time.perf_counter()
            pending = {}
            results = [None] * len(batches)
            i = 0
            try:
                while i < len(batches) or pending:
                    while i < len(batches) and len(pending) < inflight:
                        pending[ex.submit(fn, batches[i])] = (i, time.perf_counter())
                        i += 1
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        k, s = pending.pop(f)
                        results[k] = f.result()
                        lat.append(time.perf_counter() - s)
            except Exception as e:  # noqa: BLE001 - reported, with what still works
                out["error"] = f"{type(e).__name__}: {e}"
                try:
                    ex.submit(_bench.noop, [1]).result(timeout=10)
                    out["after"] = "the executor still works"
                except Exception as e2:  # noqa: BLE001
                    out["after"] = f"the executor is broken: {type(e2).__name__}"
            out["seconds"] = time.perf_counter() - t0
    if w["function"] == "incr_dict":
        out["counter"] = _bench.counter()[0]
    out["latencies"] = lat
    if w.get("make_bytes") and results:
        # The length of each result, or -1 for one that is the source
        # itself: nothing was copied, and the row would not be what it says.
        results = [[-1 if x is src else len(x) for x in r] if r else r for r in results]
    out["results"] = results if w.get("return_results") else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
