"""text_analysis, the naive way: 8 threads add word counts into one shared
dict with `d[k] = d.get(k, 0) + n`, no lock, GIL off."""

import json
import random
import sys
import threading
import time

scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
rng = random.Random(7)
vocab = [f"w{i}" for i in range(30)]
docs = [[rng.choice(vocab) for _ in range(1000)] for _ in range(40 * scale)]
reference = {}
for d in docs:
    for w in d:
        reference[w] = reference.get(w, 0) + 1

shared = {}


def work(part):
    for d in part:
        for w in d:
            shared[w] = shared.get(w, 0) + 1  # read-modify-write, racing


t = time.perf_counter()
threads = [threading.Thread(target=work, args=(docs[i::8],)) for i in range(8)]
for th in threads:
    th.start()
for th in threads:
    th.join()
elapsed = time.perf_counter() - t
expected, observed = sum(reference.values()), sum(shared.values())
lost = expected - observed
report = [f"{len(docs)} documents, 8 threads, one shared dict of word counts, no lock ({elapsed:.2f}s)",
          f"word counts: expected {expected}, observed {observed}, lost {lost} ({100 * lost / expected:.2f}%)"]
if lost == 0:
    report.append("no update was lost in this run: the race is real but did not show (run again or --scale up)")
wrong = sum(1 for w in reference if shared.get(w) != reference[w])
report.append(f"words with a wrong count: {wrong} of {len(reference)}")
print(json.dumps({"lost": lost, "expected": expected, "report": "\n".join(report)}))
