"""The GIL tests' module (run in a child process): late_import imports
the GIL-enabling test extension on its second call only; gated_import
imports it with a pause (see gate_import)."""

import sys
import threading
import warnings

_lock = threading.Lock()
_calls = [0]


def late_import(batch):
    with _lock:
        _calls[0] += 1
        n = _calls[0]
    if n == 2:
        import _nogil_ext  # noqa: F401  turns the GIL on
    return batch


def noop(batch):
    return batch


# A pause in gated_import's import of the extension, at the extension
# loader's audit event (after the interpreter counted the import, just
# before the extension turns the GIL on): it sets importing and waits for
# go.
importing = threading.Event()
go = threading.Event()


def _gate_hook(event, args):
    # The loader's event names the file; the import system's own does not
    # (and passes sys.path where the loader passes None).
    if event == "import" and args[0] == "_nogil_ext" and args[2] is None:
        importing.set()
        if not go.wait(30):
            raise TimeoutError("the gated import was never let go")


def gated_import(batch):
    sys.addaudithook(_gate_hook)  # for good: the child process ends after the test
    # Showing a warning imports the modules that format it, counted as
    # imports: show one first, so that the RuntimeWarning CPython issues as
    # it turns the GIL on imports nothing, and the import's last counted
    # event is the pause's.
    warnings.warn_explicit("warming up the warning display", RuntimeWarning, "<frozen importlib._bootstrap>", 1)
    import _nogil_ext  # noqa: F401  turns the GIL on, after the pause
    return batch
