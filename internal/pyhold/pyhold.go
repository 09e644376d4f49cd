//go:build unix

// Package pyhold keeps a batch running in Python until a test lets it go,
// for tests that need a batch in a pool for as long as they say (a worker
// busy while its state is read, a pool that cannot drain) without sleeps.
//
// Each held item names two FIFOs the test holds open read-write: Python
// opens "release" first (the open does not wait, the test's end is open),
// writes to "started", then reads "release", which blocks until the test
// writes to it or closes it. The hold ignores the pool's interrupt
// (slither.Cancelled) until then, as Python blocked in a C call would, so
// a held batch outlasts a cancelled context: whenever the interrupt comes,
// even between "started" and the read, it holds on.
package pyhold

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/slither-go/slither/dispatch"
)

// Source is Python that defines hold(batch), which holds each of its items
// as the package describes and returns a 0 for each. Write it into a module
// of the test's choosing (more functions may follow it).
const Source = `
def hold(batch):
    for it in batch:
        with open(it["release"]) as rel:
            told = False
            while True:
                try:
                    if not told:
                        with open(it["started"], "w") as s:
                            s.write("1")
                        told = True
                    rel.read(1)
                    break
                except BaseException:  # slither.Cancelled: held until released
                    pass
    return [0 for _ in batch]
`

// Batch is one held item and the test's ends of its FIFOs.
type Batch struct {
	// Item is the item to pass to hold.
	Item             dispatch.Item
	started, release *os.File
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

// Release lets the batch finish (Python opened release before it said it
// started, so it is reading it by now or about to). It is idempotent.
func (h *Batch) Release() {
	_, _ = h.release.Write([]byte("1"))
	_ = h.release.Close()
	_ = h.started.Close()
}
