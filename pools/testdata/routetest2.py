"""A module marked thread-safe that imports the GIL-enabling test extension
at its top: the router must find out in a worker process, not in the Go
process."""

import _nogil_ext  # noqa: F401
import slither


@slither.thread_safe
def cpu(batch):
    return [x * 2 for x in batch]
