"""Python functions the store tests and the shared-data benchmark call."""

import threading

import slither


def views(batch):
    """Items [view_name, kwargs] -> slither.view(view_name, **kwargs), or the
    ViewError's text after "error: "."""
    out = []
    for name, kw in batch:
        try:
            out.append(slither.view(name, **kw))
        except slither.ViewError as e:
            out.append("error: " + str(e))
    return out


def host_views(batch):
    """Items [name, kwargs] -> the raw host call slither.view makes, with
    any name and arguments, or the HostError's text after "error: "."""
    out = []
    for name, kw in batch:
        try:
            out.append(slither.host_call("slither.view", name, kw))
        except slither.HostError as e:
            out.append("error: " + str(e))
    return out


def view_name_errors(batch):
    """Items: view names of any type -> what slither.view(name) raised, as
    "Type: message"."""
    out = []
    for name in batch:
        try:
            slither.view(name)
            out.append("no error")
        except Exception as e:  # noqa: BLE001 - the test compares types
            out.append(f"{type(e).__name__}: {e}")
    return out


# The shared-data benchmark: N reads of K keys, and N read-modify-writes of
# one counter, through a Go store view or a Python dict.
_data = {f"k{i}": i for i in range(1000)}
_lock = threading.Lock()
_counter = {"c": 0}


def read_view(batch):
    n, keys = batch[0]
    view = slither.view
    for i in range(n):
        view("get", key=f"k{i % keys}")
    return [n]


def read_dict_locked(batch):
    n, keys = batch[0]
    for i in range(n):
        with _lock:
            _data[f"k{i % keys}"]
    return [n]


def read_dict(batch):
    n, keys = batch[0]
    for i in range(n):
        _data[f"k{i % keys}"]
    return [n]


def incr_view(batch):
    n = batch[0]
    view = slither.view
    for _ in range(n):
        view("incr", key="c")
    return [n]


def incr_dict_locked(batch):
    n = batch[0]
    for _ in range(n):
        with _lock:
            _counter["c"] = _counter["c"] + 1
    return [n]


def incr_dict(batch):
    n = batch[0]
    for _ in range(n):
        _counter["c"] = _counter["c"] + 1  # unguarded: threads race
    return [n]


def counter(batch):
    """Returns the dict counter and resets it."""
    c = _counter["c"]
    _counter["c"] = 0
    return [c]
