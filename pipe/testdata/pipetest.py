"""Python functions the pipe and engine tests call."""

import os
import threading
import time
import weakref

import slither


@slither.thread_safe
def score(batch):
    """Items {"id", "amount", "risk"} -> the item with a "score" in [0, 1]."""
    out = []
    for it in batch:
        s = max(0.0, min(1.0, 1.0 - it["risk"] * 0.8 - (0.2 if it["amount"] > 1000 else 0.0)))
        out.append({**it, "score": round(s, 3)})
    return out


def fail_negative(batch):
    for x in batch:
        if x < 0:
            raise ValueError(f"negative: {x}")
    return [x * 10 for x in batch]


def noop(batch):
    return batch


def sleepy(batch):
    time.sleep(0.0002 * len(batch))
    return batch


def where(batch):
    c = slither.context()
    return [{"pool": c.pool, "worker": c.worker_id, "pid": os.getpid(), "session": c.session_id} for _ in batch]


def run_info(batch):
    return [slither.view("run_info", item=x) for x in batch]


# Refs: a "model" kept in the session.
_live = weakref.WeakSet()
_lock = threading.Lock()


class Model:
    def __init__(self, bias):
        self.bias = bias
        self.calls = 0

    def predict(self, x):
        self.calls += 1
        return x + self.bias


def train(batch):
    """[bias] -> a ref to a new Model."""
    m = Model(batch[0])
    with _lock:
        _live.add(m)
    return [slither.ref(m)]


def predict(batch):
    """[[ref, x], ...] -> [model.predict(x), id(model), model.calls]."""
    out = []
    for handle, x in batch:
        m = slither.deref(handle)
        out.append([m.predict(x), id(m), m.calls])
    return out


def use_ref(batch):
    """[ref] -> the RefError text, if using it fails."""
    try:
        slither.deref(batch[0])
        return ["ok"]
    except slither.RefError as e:
        return [str(e)]


def models_alive(batch):
    import gc
    gc.collect()
    with _lock:
        return [len(_live)] * len(batch)
