"""batch_stats: per-worker Welford accumulators, in worker processes (a
poison pill crashes its process for real, so this runs in a process pool)."""

import math
import os

_acc = {"n": 0, "mean": 0.0, "m2": 0.0}  # this worker process's accumulator


def summarize(batch):
    """Items {"id", "values"} -> {"id", "n", "mean", "var", "pid"}. Poison:
    None values, NaN, empty lists raise; {"crash": true} kills the process."""
    out = []
    for ds in batch:
        if ds.get("crash"):
            os._exit(70)  # a worker dying mid-batch
        values = ds["values"]
        if values is None:
            raise TypeError(f"dataset {ds['id']}: no values")
        if len(values) == 0:
            raise ValueError(f"dataset {ds['id']}: empty")
        n, mean, m2 = 0, 0.0, 0.0
        for x in values:
            if isinstance(x, float) and math.isnan(x):
                raise ValueError(f"dataset {ds['id']}: NaN")
            n += 1
            d = x - mean
            mean += d / n
            m2 += d * (x - mean)
            _acc["n"] += 1
            da = x - _acc["mean"]
            _acc["mean"] += da / _acc["n"]
            _acc["m2"] += da * (x - _acc["mean"])
        out.append({"id": ds["id"], "n": n, "mean": mean, "var": m2 / (n - 1) if n > 1 else 0.0,
                    "pid": os.getpid(), "worker_n": _acc["n"]})
    return out
