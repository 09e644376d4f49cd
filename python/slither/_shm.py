"""The shared memory the Go process pool gives a worker for large byte
strings (pools/process/shm.go holds the Go half; Options.SharedMemory)."""

import mmap
import os
import threading


class Arena:
    """The shared memory the Go pool gives a worker (SLITHER_WORKER_ARENA
    "fd,half,min"): one memfd of two halves of `half` bytes, mapped once for
    the worker's life. Go writes the bytes of calls into the first half and
    sends {"$a": [off, n]}; the worker copies them out as it reads the call
    and Go frees them when the call ends. The worker writes byte strings of
    `min` bytes or more of its results into the second half when there is
    room and sends {"$a": [slot, off, n]}, having set entry `slot` of the
    table of u32s at the start of that half to 1; Go sets it back to 0 once
    it has copied the bytes out, and the worker reuses the room then.
    References from Go are checked against the first half."""

    SLOTS = 64
    TABLE = 4096
    ALIGN = 64

    def __init__(self, fd, half, threshold):
        self._mm = mmap.mmap(fd, 2 * half)
        if hasattr(mmap, "MADV_DONTFORK"):  # Linux
            # A child that user code forks (multiprocessing's "fork") must
            # neither keep the pages alive past the worker nor write them.
            try:
                self._mm.madvise(mmap.MADV_DONTFORK)
            except OSError:
                pass  # the mapping works the same; only a fork would keep it
        self._mv = memoryview(self._mm)
        self._half = half
        self._table = self._mv[half:half + 4 * self.SLOTS].cast("I")
        self.threshold = threshold
        self._lock = threading.Lock()
        self._live = {}  # slot -> (offset, end) of a piece Go has not copied out yet

    @classmethod
    def from_env(cls, setting):
        """The arena SLITHER_WORKER_ARENA names, or None (none given, or it
        cannot be mapped: the pipe then carries everything)."""
        if not setting:
            return None
        try:
            fd, half, threshold = (int(x) for x in setting.split(","))
            os.set_inheritable(fd, False)
            try:
                return cls(fd, half, threshold)
            finally:
                os.close(fd)  # the mapping stays
        except (ValueError, OSError):
            return None

    def load(self, ref):
        """The bytes of Go's reference [off, n], copied out."""
        if type(ref) is not list or len(ref) != 2 or not all(type(x) is int for x in ref):
            raise ValueError(f"bad shared-memory reference {ref!r}: not [offset, length]")
        off, n = ref
        if off < 0 or n < 0 or off + n > self._half:
            raise ValueError(f"shared-memory reference {ref!r} is outside Go's half (bytes 0-{self._half})")
        return bytes(self._mv[off:off + n])

    def put(self, b, slots):
        """Copies the bytes of buffer b into the worker's half and returns
        their reference, appending its slot to slots; None (nothing done)
        when they are few or there is no room."""
        m = memoryview(b)  # also keeps a bytearray from resizing meanwhile
        if m.format != "B" or m.ndim != 1 or not m.c_contiguous:
            # len() of such a view counts items, and it copies only into a
            # view of its own shape: its bytes, flat.
            m = m.cast("B") if m.c_contiguous else memoryview(m.tobytes())
        n = m.nbytes
        if n < self.threshold:
            return None
        need = (n + self.ALIGN - 1) & -self.ALIGN
        table = self._table
        with self._lock:
            live = self._live
            for s in [s for s in live if table[s] == 0]:  # copied out by Go: free again
                del live[s]
            if len(live) >= self.SLOTS:
                return None
            at = self._half + self.TABLE
            for off, end in sorted(live.values()):
                if off - at >= need:
                    break
                at = end
            if at + need > 2 * self._half:
                return None
            slot = next(s for s in range(self.SLOTS) if s not in live)
            live[slot] = (at, at + need)
            table[slot] = 1
        try:
            self._mv[at:at + n] = m
        except BaseException:
            self.drop((slot,))
            raise
        slots.append(slot)
        return [slot, at, n]

    def drop(self, slots):
        """Frees pieces that will not be sent after all."""
        with self._lock:
            for s in slots:
                self._live.pop(s, None)
                self._table[s] = 0


class Sharing:
    """One message's use of an arena: encode() puts its large byte strings
    there; drop() frees them if the message is not sent."""

    __slots__ = ("arena", "slots", "size")

    def __init__(self, arena):
        self.arena = arena
        self.slots = []
        self.size = 0  # bytes placed: they count against the frame limit

    def put(self, b):
        ref = self.arena.put(b, self.slots)
        if ref is not None:
            self.size += ref[2]
        return ref

    def drop(self):
        self.arena.drop(self.slots)
        self.slots = []
        self.size = 0
