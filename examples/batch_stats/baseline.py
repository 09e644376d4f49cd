"""batch_stats, the naive way: 8 threads feed one shared Welford
accumulator with no lock, GIL off."""

import json
import random
import sys
import threading
import time

scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
rng = random.Random(3)
data = [[rng.gauss(10, 3) for _ in range(2000)] for _ in range(50 * scale)]
flat = [x for d in data for x in d]
n_ref = len(flat)
mean_ref = sum(flat) / n_ref
var_ref = sum((x - mean_ref) ** 2 for x in flat) / (n_ref - 1)

acc = {"n": 0, "mean": 0.0, "m2": 0.0}


def feed(part):
    for d in part:
        for x in d:
            acc["n"] += 1
            delta = x - acc["mean"]
            acc["mean"] += delta / acc["n"]
            acc["m2"] += delta * (x - acc["mean"])


t = time.perf_counter()
threads = [threading.Thread(target=feed, args=(data[i::8],)) for i in range(8)]
for th in threads:
    th.start()
for th in threads:
    th.join()
elapsed = time.perf_counter() - t
var = acc["m2"] / (acc["n"] - 1)
report = [f"{len(data)} datasets, 8 threads, one shared Welford accumulator, no lock ({elapsed:.2f}s)",
          f"count: expected {n_ref}, observed {acc['n']} ({n_ref - acc['n']} updates lost)",
          f"mean: expected {mean_ref:.6f}, observed {acc['mean']:.6f}",
          f"variance: expected {var_ref:.6f}, observed {var:.6f} ({100 * abs(var - var_ref) / var_ref:.3f}% off)"]
if acc["n"] == n_ref:
    report.append("no count was lost in this run: the race is real but did not show")
print(json.dumps({"lost": n_ref - acc["n"], "report": "\n".join(report)}))
