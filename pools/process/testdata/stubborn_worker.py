"""A worker that ignores the pool's shutdown message and SIGTERM, saying so
on stderr: only SIGKILL ends it."""
import signal
import sys

import slither.worker as w


def _on_term(signum, frame):
    print("stubborn_worker: SIGTERM ignored", file=sys.stderr, flush=True)


_control = w.Worker.control


def _control_but_shutdown(self, msg):
    if msg.get("t") == "shutdown":
        print("stubborn_worker: shutdown ignored", file=sys.stderr, flush=True)
        return True
    return _control(self, msg)


signal.signal(signal.SIGTERM, _on_term)
w.Worker.control = _control_but_shutdown
w.main()
