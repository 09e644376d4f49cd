package process

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A worker's shared memory (Options.SharedMemory): one memfd, mapped once
// by the pool and once by the worker and kept for the worker's life, so
// its pages stay warm (fresh memory costs a page fault per 4 KiB). Its
// first half carries byte strings of calls (written by the pool, which
// frees a call's pieces when the call ends: the worker copies them out as
// it reads the call), its second half those of results (written by the
// worker, which marks each piece in a table at the start of its half; the
// pool clears the mark once it has copied the bytes out). Frames carry
// the pieces' offsets and lengths (wire.Sharer, wire.Loader); both sides
// check them against the mapping. A byte string goes through it when it
// is at least sharedMin bytes and there is room; otherwise, or when the
// worker could not map it, through the pipe as before. The memory dies
// with the worker: a restart makes a new one.

// sharedMin is the smallest byte string that goes through shared memory:
// below it the pipe costs about the same.
const sharedMin = 256 << 10

// defaultShared is each half's size when Options.SharedMemory is 0.
const defaultShared = 16 << 20

const (
	sharedSlots = 64   // the worker's table: one u32 per piece, 1 while Go has not copied it out
	sharedTable = 4096 // the table's room at the start of the worker's half
	sharedAlign = 64
)

type arena struct {
	f    *os.File // the memfd, until the worker has its copy
	mem  []byte   // the mapping: the pool's half, then the worker's
	half int

	mu    sync.Mutex
	spans []span // the pool's half in use, by offset

	// rw is held to read while the mapping is used, to write while it is
	// unmapped: a call being sent may race the worker's end.
	rw   sync.RWMutex
	gone bool

	sent, loaded atomic.Uint64 // byte strings that went through it each way
}

type span struct{ off, end int }

// newArena makes shared memory of two halves of half bytes.
func newArena(half int) (*arena, error) {
	fd, err := unix.MemfdCreate("slither-worker", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "slither-worker-memfd")
	if err := f.Truncate(int64(2 * half)); err != nil {
		_ = f.Close()
		return nil, err
	}
	mem, err := syscall.Mmap(fd, 0, 2*half, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return &arena{f: f, mem: mem, half: half}, nil
}

// Share copies b into the pool's half (wire.Sharer).
func (a *arena) Share(b []byte) (int, bool) {
	if len(b) < sharedMin {
		return 0, false
	}
	off, ok := a.alloc(len(b))
	if !ok {
		return 0, false
	}
	a.rw.RLock()
	defer a.rw.RUnlock()
	if a.gone {
		a.free(off)
		return 0, false
	}
	copy(a.mem[off:], b)
	a.sent.Add(1)
	return off, true
}

// alloc finds room for n bytes in the pool's half: the first gap that fits.
func (a *arena) alloc(n int) (int, bool) {
	need := (n + sharedAlign - 1) &^ (sharedAlign - 1)
	a.mu.Lock()
	defer a.mu.Unlock()
	at, i := 0, 0
	for ; i < len(a.spans) && a.spans[i].off-at < need; i++ {
		at = a.spans[i].end
	}
	if i == len(a.spans) && a.half-at < need {
		return 0, false
	}
	a.spans = append(a.spans, span{})
	copy(a.spans[i+1:], a.spans[i:])
	a.spans[i] = span{at, at + need}
	return at, true
}

// free gives back the piece of the pool's half at off.
func (a *arena) free(off int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, s := range a.spans {
		if s.off == off {
			a.spans = append(a.spans[:i], a.spans[i+1:]...)
			return
		}
	}
}

// Load copies out n bytes at off of the worker's half and clears slot
// (wire.Loader). The reference comes from the worker: it is checked.
func (a *arena) Load(slot, off, n uint64) ([]byte, error) {
	if !a.inHalf(slot, off, n) {
		lo, hi := a.half+sharedTable, 2*a.half
		return nil, fmt.Errorf("shared-memory reference [%d, %d, %d] is outside the worker's half (slots 0-%d, bytes %d-%d)",
			slot, off, n, sharedSlots-1, lo, hi)
	}
	a.rw.RLock()
	defer a.rw.RUnlock()
	if a.gone {
		return nil, fmt.Errorf("shared-memory reference [%d, %d, %d]: the worker's shared memory is gone", slot, off, n)
	}
	b := make([]byte, n)
	copy(b, a.mem[off:off+n])
	// After the copy: the worker reuses the piece once it sees 0.
	atomic.StoreUint32(a.mark(int(slot)), 0)
	a.loaded.Add(1)
	return b, nil
}

// release frees the worker's piece at slot without copying it out: for a
// reference of a message that failed to decode. Only a reference inside
// the worker's half is heeded.
func (a *arena) release(slot, off, n uint64) {
	if !a.inHalf(slot, off, n) {
		return
	}
	a.rw.RLock()
	defer a.rw.RUnlock()
	if !a.gone {
		atomic.StoreUint32(a.mark(int(slot)), 0)
	}
}

// inHalf reports whether [slot, off, n] is a reference inside the
// worker's half.
func (a *arena) inHalf(slot, off, n uint64) bool {
	lo, hi := uint64(a.half+sharedTable), uint64(2*a.half)
	return slot < sharedSlots && off >= lo && off <= hi && n <= hi-off
}

// mark is the worker's table entry for slot.
func (a *arena) mark(slot int) *uint32 {
	return (*uint32)(unsafe.Pointer(&a.mem[a.half+4*slot]))
}

// inUse reports the bytes of the pool's half in use and the worker's
// pieces not yet copied out.
func (a *arena) inUse() (pool, worker int) {
	a.mu.Lock()
	for _, s := range a.spans {
		pool += s.end - s.off
	}
	a.mu.Unlock()
	a.rw.RLock()
	defer a.rw.RUnlock()
	if !a.gone {
		for i := range sharedSlots {
			if atomic.LoadUint32(a.mark(i)) != 0 {
				worker++
			}
		}
	}
	return pool, worker
}

// handedOver closes the pool's copy of the memfd once the worker has its
// own (or will never get it): the mapping stays.
func (a *arena) handedOver() {
	if a.f != nil {
		_ = a.f.Close()
		a.f = nil
	}
}

// close unmaps the memory, once no one uses it.
func (a *arena) close() {
	a.handedOver()
	a.rw.Lock()
	defer a.rw.Unlock()
	if !a.gone {
		a.gone = true
		_ = syscall.Munmap(a.mem)
		a.mem = nil
	}
}
