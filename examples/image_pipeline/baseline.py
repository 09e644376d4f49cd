"""image_pipeline, the naive way: one thread per image, all loading (here:
allocating the decoded RGBA buffer of) their picture at once, GIL off."""

import json
import resource
import sys
import threading
import time

sizes = [(100 + i * 60, 100 + i * 40) for i in range(25)] + [(3840, 2160)] * 5
scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
sizes = sizes * scale
barrier = threading.Barrier(len(sizes))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(w, h):
    buf = bytearray(w * h * 4)  # a decoded picture
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    barrier.wait()  # everyone holds theirs at the same moment
    return len(buf)


t = time.perf_counter()
threads = [threading.Thread(target=load, args=s) for s in sizes]
for th in threads:
    th.start()
for th in threads:
    th.join()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
want = sum(w * h * 4 for w, h in sizes) / (1 << 20)
report = [f"{len(sizes)} pictures loaded by {len(sizes)} threads at once, no bound ({time.perf_counter() - t:.2f}s)",
          f"peak memory grew by {peak:.0f} MB (every decoded picture held together: {want:.0f} MB)"]
print(json.dumps({"peak_mb": peak, "report": "\n".join(report)}))
