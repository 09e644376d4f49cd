"""data_etl, the naive way: 8 threads validate rows reading a shared schema
dict while another thread swaps it from v1 to v2 key by key, GIL off."""

import json
import sys
import threading
import time

scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
V1 = {"version": 1, "required": ("name",), "email_at": False}
V2 = {"version": 2, "required": ("name", "email"), "email_at": True}
schema = dict(V1)
seen = []
lock = threading.Lock()
stop = False


def validate(n):
    local = []
    for _ in range(n):
        local.append((schema["version"], schema["required"], schema["email_at"]))
    with lock:
        seen.extend(local)


def swapper():
    for i in range(2000 * scale):
        new = V2 if i % 2 == 0 else V1
        for k, v in new.items():  # one key at a time, as an update in place does
            schema[k] = v


t = time.perf_counter()
threads = [threading.Thread(target=validate, args=(20000 * scale,)) for _ in range(8)]
sw = threading.Thread(target=swapper)
for th in threads:
    th.start()
sw.start()
for th in threads + [sw]:
    th.join()
elapsed = time.perf_counter() - t
ok = {tuple(V1.values()), tuple(V2.values())}
torn = sum(1 for s in seen if s not in ok)
report = [f"{len(seen)} rows validated by 8 threads while a 9th swapped the schema v1<->v2 in place ({elapsed:.2f}s)",
          f"torn reads (a mix of v1 and v2 rules): {torn} ({100 * torn / len(seen):.2f}%)"]
if torn == 0:
    report.append("no torn read showed in this run: the race is real but did not show")
print(json.dumps({"torn": torn, "report": "\n".join(report)}))
