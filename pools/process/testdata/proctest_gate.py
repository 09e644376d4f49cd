"""Preloaded by breaker tests: fails the worker's start while the file named
by PROCTEST_GATE exists."""
import os

_gate = os.environ.get("PROCTEST_GATE")
if _gate and os.path.exists(_gate):
    raise RuntimeError(f"gate {_gate} is closed")
