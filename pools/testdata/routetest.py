"""Python functions the router's end-to-end test calls."""

import os

import slither


@slither.thread_safe
def cpu(batch):
    return [x * 2 for x in batch]


def plain(batch):
    return [os.getpid() for _ in batch]


def load_ext(batch):
    """Imports the test's C extension, which does not declare Py_mod_gil."""
    import _nogil_ext
    return [_nogil_ext.hello() for _ in batch]
