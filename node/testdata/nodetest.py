"""Python functions the node tests run through a node's local pools."""

import slither


def double(batch):
    return [x * 2 for x in batch]


def fail(batch):
    raise ValueError(f"no good: {batch[0]!r}")


def lookup(batch):
    # A host call: on a node it goes to the batch's coordinator.
    return [slither.host_call("lookup", x) for x in batch]


def count(batch):
    # Session state: how many items this session has seen on this worker.
    s = slither.session()
    s["n"] = s.get("n", 0) + len(batch)
    return [s["n"] for _ in batch]


def trace(batch):
    c = slither.context()
    return [c.trace_id for _ in batch]


def crash(batch):
    # The worker dies mid-call, as a segfault would.
    import os
    os._exit(3)
