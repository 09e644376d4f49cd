"""ml_scoring, the naive way: two "sessions" train at once on threads and
keep their model in one shared `_models` dict under the same name, GIL off
(a pure-Python threshold model: scikit-learn is not on the 3.13t build)."""

import json
import random
import sys
import threading
import time

_models = {}
results = {}


def session(name, shift, barrier):
    rng = random.Random(shift)
    xs = [(rng.gauss(shift / 2, 2), rng.gauss(shift / 2, 2)) for _ in range(400)]
    ys = [1 if a + b > shift else 0 for a, b in xs]
    # "training": the threshold that best splits the sums
    sums = sorted(a + b for a, b in xs)
    best = min(sums, key=lambda t: sum((s > t) != y for s, y in zip((a + b for a, b in xs), ys)))
    barrier.wait()
    _models["model"] = (name, best)  # both sessions use the same key
    barrier.wait()
    used = []
    for _ in range(20):
        owner, threshold = _models["model"]
        used.append(owner)
        time.sleep(0.0005)
    results[name] = used


barrier = threading.Barrier(2)
ts = [threading.Thread(target=session, args=("A", 0.0, barrier)), threading.Thread(target=session, args=("B", 3.0, barrier))]
for t in ts:
    t.start()
for t in ts:
    t.join()
wrong = {n: sum(1 for o in used if o != n) for n, used in results.items()}
report = [f"two sessions trained at once; each scored 20 records with _models['model']",
          f"session A used session B's model for {wrong['A']} of 20 records; session B used A's for {wrong['B']} of 20",
          "cross-session contamination: one of them always scores with the other's model" if sum(wrong.values())
          else "no contamination showed in this run"]
print(json.dumps({"contaminated": sum(wrong.values()), "report": "\n".join(report)}))
