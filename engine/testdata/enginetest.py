"""Python functions the engine tests call."""

import slither


def where(batch):
    c = slither.context()
    return [c.pool for _ in batch]


@slither.thread_safe
def safe_where(batch):
    return where(batch)


def price(batch):
    return [slither.view("price", sku=s) for s in batch]
