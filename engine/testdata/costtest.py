"""Python functions the engine's cost-model test routes by their cost."""

import hashlib
import zlib

import slither


@slither.thread_safe
def spin(batch):
    """Pure-Python CPU work: n steps of a loop per item."""
    out = []
    for n in batch:
        acc = 0
        for i in range(n):
            acc = (acc * 31 + i) & 0xFFFFFFFF
        out.append(acc)
    return out


@slither.thread_safe
def digest(batch):
    """C-heavy work on bytes (hashlib and zlib release the GIL)."""
    return [hashlib.sha256(b).hexdigest()[:16] + ":" + str(zlib.crc32(b)) for b in batch]
