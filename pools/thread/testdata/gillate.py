"""The GIL test's module (run in a child process): its function imports
the GIL-enabling test extension on its second call only."""

import threading

_lock = threading.Lock()
_calls = [0]


def late_import(batch):
    with _lock:
        _calls[0] += 1
        n = _calls[0]
    if n == 2:
        import _nogil_ext  # noqa: F401  turns the GIL on
    return batch
