package process

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/slither-go/slither/pools"
)

// ErrStart is matched by errors of workers that could not be started: a
// wrong interpreter path, a failing import, no handshake in time, or a
// worker that speaks another protocol version.
var ErrStart = errors.New("pools/process: worker failed to start")

// CrashError says a worker process died under a call. It matches
// [pools.ErrWorkerCrashed] with errors.Is.
type CrashError struct {
	Worker int // the worker's index
	Pid    int
	// ExitCode is the process's exit status, or -1 if a signal ended it.
	ExitCode int
	// Signal is the signal that ended it, or 0.
	Signal syscall.Signal
	// Reason says why the pool saw it die, e.g. "exited", "killed after a
	// call timed out", "protocol error: ...".
	Reason string
	// Stderr is the tail of what the worker wrote to its standard error.
	Stderr string
}

func (e *CrashError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pools/process: worker %d (pid %d) crashed: %s", e.Worker, e.Pid, e.Reason)
	switch {
	case e.Signal != 0:
		fmt.Fprintf(&b, " (signal %d, %s)", int(e.Signal), e.Signal)
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, " (exit status %d)", e.ExitCode)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, "; stderr:\n%s", s)
	}
	return b.String()
}

// Is makes errors.Is(err, pools.ErrWorkerCrashed) true.
func (e *CrashError) Is(target error) bool { return target == pools.ErrWorkerCrashed }

// tail keeps the last max bytes of lines added to it; callers lock.
type tail struct {
	buf []byte
	max int
}

func (t *tail) add(line []byte) {
	t.buf = append(t.buf, line...)
	t.buf = append(t.buf, '\n')
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

func (t *tail) String() string { return string(t.buf) }
