"""Watches, inside the embedded interpreter, for imports that turn the GIL
back on (a free-threaded build re-enables it for an extension module that
does not declare Py_mod_gil = Py_MOD_GIL_NOT_USED, with a RuntimeWarning
naming the module)."""

import importlib
import re
import sys
import threading
import warnings

_PATTERN = re.compile(r"has been enabled to load module '([^']+)'")
_lock = threading.Lock()
_modules = []
_installed = False


def install():
    """Records the modules CPython names when it re-enables the GIL. The
    warning is still shown as before."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    # Shown even where filters would hide it: routing depends on it.
    warnings.filterwarnings("always", message=r"The global interpreter lock \(GIL\) has been enabled",
                            category=RuntimeWarning)
    previous = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        m = _PATTERN.search(str(message))
        if m:
            with _lock:
                _modules.append(m.group(1))
        return previous(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


def enabled():
    return bool(sys._is_gil_enabled()) if hasattr(sys, "_is_gil_enabled") else True


def state():
    """Returns [GIL enabled now, modules that re-enabled it since the last call]."""
    with _lock:
        mods = list(_modules)
        _modules.clear()
    return [enabled(), mods]


def thread_safe(batch):
    """[[module, function], ...] -> whether each is marked @slither.thread_safe
    (importing the module)."""
    out = []
    for mod, fn in batch:
        f = getattr(importlib.import_module(mod), fn)
        out.append(bool(getattr(f, "__slither_thread_safe__", False)))
    return out


def inspect(batch):
    """[[module, function], ...] -> what importing each module does here:
    {"thread_safe": the @slither.thread_safe mark, "gil_after": whether the
    GIL is on after the import, "enabled_by": the modules CPython named,
    "error": the import error, if any, "path": on an error, the sys.path
    the import searched}. Run in a worker process first, so that a module
    is never imported into the Go process just to look."""
    out = []
    for mod, fn in batch:
        res = {"thread_safe": False, "gil_after": enabled(), "enabled_by": [], "error": "", "path": []}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                f = getattr(importlib.import_module(mod), fn)
                res["thread_safe"] = bool(getattr(f, "__slither_thread_safe__", False))
            except BaseException as e:  # noqa: BLE001 - reported to Go
                res["error"] = f"{type(e).__name__}: {e}"
                res["path"] = [p for p in sys.path if isinstance(p, str)]
        res["gil_after"] = enabled()
        for w in caught:
            m = _PATTERN.search(str(w.message))
            if m:
                res["enabled_by"].append(m.group(1))
        out.append(res)
    return out
