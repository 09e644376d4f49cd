"""A user module as a Slither user writes one: it imports slither, marks a
function thread-safe, keeps state in its session and calls a store view.
test_outside.py imports and runs it in plain Python."""

import slither


@slither.thread_safe
def squares(batch):
    """[n, ...] -> [n*n, ...]; a negative n fails on its own."""
    return [slither.failed(f"negative: {n}") if n < 0 else n * n for n in batch]


@slither.thread_safe
def running_total(batch):
    """Adds each item to a total kept in the session; returns the totals."""
    state = slither.session()
    out = []
    for n in batch:
        state["total"] = state.get("total", 0) + n
        out.append(state["total"])
    return out


def load_model(batch):
    """Keeps a "model" in the session and hands Go a ref to it."""
    return [slither.ref({"name": name}) for name in batch]


def model_name(batch):
    return [slither.deref(h)["name"] for h in batch]


def prices(batch):
    """Looks each id up in the store view "prices"."""
    return [slither.view("prices", id=i) for i in batch]


def where(batch):
    c = slither.context()
    return [[c.pool, c.in_pool, c.worker_id, c.session_id] for _ in batch]
