"""The only module the worker fuzz targets call: nothing here blocks, calls
Go, or crashes on purpose, so a fuzzed call can only be answered."""


def echo(batch):
    return batch


def fail(batch):
    raise ValueError(f"cannot handle {len(batch)} items")


def unmappable(batch):
    return [{1, 2} for _ in batch]
