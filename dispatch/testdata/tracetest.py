"""Python functions the dispatch tracing tests call."""

import slither


def square(batch):
    return [x * x for x in batch]


def fail_on(batch):
    """Ints; a negative one fails its whole batch with a ValueError."""
    for x in batch:
        if x < 0:
            raise ValueError(f"negative item {x}")
    return [x * 10 for x in batch]


def ids(batch):
    """Returns, for each item, [trace_id, span_id] of slither.context()."""
    c = slither.context()
    pair = [getattr(c, "trace_id", None), getattr(c, "span_id", None)]
    return [pair for _ in batch]


def fail_items(batch):
    """Negative items fail on their own (slither.failed); the rest x10."""
    return [slither.failed(f"negative {x}") if x < 0 else x * 10 for x in batch]
