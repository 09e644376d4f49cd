//go:build unix

// Package pyhold keeps a batch running in Python until a test lets it go,
// for tests that need a batch in a pool for as long as they say (a worker
// busy while its state is read, a pool that cannot drain) without sleeps.
//
// Each held item names two FIFOs that the test and Python both open
// read-write, so no open waits for the other side and no byte written is
// lost however late the other side opens: Python opens "release", writes
// to "started", then waits until "release" is readable, which it is once
// the test wrote to it (the byte is never taken, so a wait that an
// interrupt cuts short finds it again). The hold ignores the pool's interrupt
// (slither.Cancelled) until then, as Python blocked in a C call would, so
// a held batch outlasts a cancelled context: whenever the interrupt comes,
// even between "started" and the read, it holds on.
package pyhold

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/slither-go/slither/dispatch"
)

// Source is Python that defines hold(batch), which holds each of its items
// as the package describes and returns a 0 for each. Write it into a module
// of the test's choosing (more functions may follow it).
const Source = `
import os as _pyhold_os
import select as _pyhold_select


def hold(batch):
    for it in batch:
        # Read-write opens never wait for the other end, and the pipe keeps
        # what the test wrote however late Python opens it.
        rel = _pyhold_os.open(it["release"], _pyhold_os.O_RDWR)
        try:
            told = False
            while True:
                try:
                    if not told:
                        s = _pyhold_os.open(it["started"], _pyhold_os.O_RDWR)
                        try:
                            _pyhold_os.write(s, b"1")
                        finally:
                            _pyhold_os.close(s)
                        told = True
                    # Wait for the byte without taking it: an interrupt
                    # landing just after the wait finds it still there.
                    _pyhold_select.select([rel], [], [])
                    break
                except BaseException:  # slither.Cancelled: held until released
                    pass
        finally:
            _pyhold_os.close(rel)
    return [0 for _ in batch]
`

// Batch is one held item and the test's ends of its FIFOs.
type Batch struct {
	// Item is the item to pass to hold.
	Item             dispatch.Item
	started, release *os.File
	once             sync.Once
}

// New makes the FIFOs for an item with ID name in dir. The test's cleanup
// releases the batch, if the test has not.
func New(t testing.TB, dir, name string) *Batch {
	t.Helper()
	h := &Batch{}
	payload := map[string]any{}
	for kind, f := range map[string]**os.File{"started": &h.started, "release": &h.release} {
		p := filepath.Join(dir, name+"-"+kind)
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatalf("pyhold: %v", err)
		}
		// Read-write: the open does not wait for Python's end, and a FIFO
		// with a writer open never reads EOF before the release.
		var err error
		if *f, err = os.OpenFile(p, os.O_RDWR, 0); err != nil {
			t.Fatalf("pyhold: %v", err)
		}
		payload[kind] = p
	}
	h.Item = dispatch.Item{ID: name, Payload: payload}
	t.Cleanup(h.Release)
	return h
}

// Started returns once Python is inside the batch, or with an error when
// the batch was released first.
func (h *Batch) Started() error {
	_, err := io.ReadFull(h.started, make([]byte, 1))
	return err
}

// Release lets the batch finish, whether Python is reading "release" now
// or opens it later (a batch still queued). The test's end of "release"
// stays open until the process exits: closed, it would take an unread
// byte with it when Python has not opened the FIFO yet. It is idempotent.
func (h *Batch) Release() {
	h.once.Do(func() {
		_, _ = h.release.Write([]byte("1"))
		_ = h.started.Close() // a Started still waiting returns an error
	})
}
