"""Python's own ProcessPoolExecutor on the same workloads as the pool's
benchmarks: python ppe_bench.py N CHUNKSIZE WORKERS noop|payload.
Prints {"seconds": ...} for N items, pool start-up and warm-up excluded."""

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def noop(x):
    return x


def main():
    n, chunk, workers, kind = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    item = 7 if kind == "noop" else b"x" * (1 << 20)
    with ProcessPoolExecutor(workers) as ex:
        for _ in ex.map(noop, [item] * (4 * workers)):
            pass
        t = time.perf_counter()
        for _ in ex.map(noop, [item] * n, chunksize=chunk):
            pass
        dt = time.perf_counter() - t
    print(json.dumps({"seconds": dt}))


if __name__ == "__main__":
    main()
