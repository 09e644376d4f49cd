"""Functions that `slither demo` runs in the embedded thread pool.

Pure-Python CPU work: counting primes by trial division, so that the speed-up
from more workers comes only from Python threads running at once.
"""

import slither


@slither.thread_safe
def count_primes(batch):
    """batch: [[lo, hi], ...] -> [number of primes in [lo, hi), ...]."""
    out = []
    for lo, hi in batch:
        n = 0
        for k in range(max(lo, 2), hi):
            if k < 4:
                n += 1
                continue
            if k % 2 == 0:
                continue
            d = 3
            while d * d <= k:
                if k % d == 0:
                    break
                d += 2
            else:
                n += 1
        out.append(n)
    return out



def noop(batch):
    """Returns its batch: `slither doctor` times calls of it."""
    return batch


def lookup(batch):
    """Reads each item's price through the store view "price" (README)."""
    return [slither.view("price", sku=sku) for sku in batch]
