"""Preloaded by breaker tests: while the FIFO named by PROCTEST_HOLD exists,
a worker's start waits here until the test opens it for writing and closes
it."""
import os

_hold = os.environ.get("PROCTEST_HOLD")
if _hold and os.path.exists(_hold):
    with open(_hold, "rb") as f:  # returns once the test opens the other end
        f.read()  # returns once the test closes it
