package process

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// guardianScript is the guardian's whole program. It reads "+PGID" and
// "-PGID" lines (a worker's process group started, or was cleaned up) until
// its input ends, which happens when the Go process exits, however it
// exits: it then SIGKILLs every group still registered. A worker itself
// dies by its parent-death signal, but the processes user code started in
// it have none; they share the worker's process group, so killing the group
// ends them.
const guardianScript = `
import os, signal, sys
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
groups = set()
for line in sys.stdin.buffer:
    try:
        pg = int(line[1:])
    except ValueError:
        continue
    if line[:1] == b"+":
        groups.add(pg)
    else:
        groups.discard(pg)
for pg in groups:
    try:
        os.killpg(pg, signal.SIGKILL)
    except OSError:
        pass
`

// guardian is a small Python process per pool that outlives a Go process
// killed with SIGKILL just long enough to kill its workers' process groups.
// Its methods are safe for concurrent use, and on a nil guardian (none
// could be started) do nothing.
type guardian struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	w      *os.File // its input; only this process holds the write end
	failed bool     // a write failed: the guardian is gone

	observe func(op byte, pgid int) // tests: sees each line as it is sent
}

// startGuardian starts the guardian with python (isolated, no site: it
// needs nothing but the standard library's os and signal).
func startGuardian(python string, env []string) (*guardian, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, "-I", "-S", "-c", guardianScript)
	cmd.Env = env
	cmd.Stdin = r // an *os.File: passed as is, no copying goroutine
	// Its own group: a signal to the Go program's group (Ctrl-C) leaves it
	// to clean up after the program.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	_ = r.Close()
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("starting the process-group guardian: %w", err)
	}
	return &guardian{cmd: cmd, w: w}, nil
}

// add registers a worker's process group (its pid).
func (g *guardian) add(pgid int) { g.send('+', pgid) }

// remove unregisters a process group that has been killed. It must come
// before its leader is reaped: until then the group id cannot be reused.
func (g *guardian) remove(pgid int) { g.send('-', pgid) }

func (g *guardian) send(op byte, pgid int) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.observe != nil {
		g.observe(op, pgid)
	}
	if g.failed || g.w == nil {
		return
	}
	line := strconv.AppendInt([]byte{op}, int64(pgid), 10)
	if _, err := g.w.Write(append(line, '\n')); err != nil {
		g.failed = true
	}
}

// stop ends the guardian (it kills any group still registered) and reaps it.
func (g *guardian) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	w := g.w
	g.w = nil
	g.mu.Unlock()
	if w == nil {
		return
	}
	_ = w.Close()
	_ = g.cmd.Wait()
}
