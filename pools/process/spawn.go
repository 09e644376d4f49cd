package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
	"github.com/slither-go/slither/telemetry"
)

// drainGrace bounds how long, after a worker has exited, the pool keeps
// reading what it wrote: only a process that left the worker's group can
// still hold its pipes by then.
const drainGrace = time.Second

// spawner runs process starts on one OS thread that lives as long as the
// program: Linux sends the parent-death signal when the thread that
// started a child exits, not the process, and Go may end idle threads.
var spawner struct {
	once sync.Once
	reqs chan func()
}

func onSpawnerThread(f func()) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan func())
		go spawnLoop()
	})
	done := make(chan struct{})
	spawner.reqs <- func() { f(); close(done) }
	<-done
}

func spawnLoop() {
	runtime.LockOSThread() // never unlocked: the thread must never exit
	for f := range spawner.reqs {
		f()
	}
}

// spawn starts a worker process for s and waits for its handshake. Every
// failed start, whatever failed, is one pool.worker.exit event (pid 0
// when no process started), so that each pool.worker.restart before it
// has its end.
func (p *Pool) spawn(ctx context.Context, s *slot) (pr *proc, err error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: worker %d (%s): %s", ErrStart, s.id, p.python, fmt.Sprintf(format, args...))
	}
	begun := time.Now()
	pid := 0
	defer func() {
		if err != nil {
			p.startFailed(ctx, s, pid, time.Since(begun), err)
		}
	}()
	var files []*os.File // (read end, write end) of: to the worker, from it, its stdout, stderr, cancels
	for range 5 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(files...)
			return nil, fail("%v", err)
		}
		files = append(files, r, w)
	}
	toWorkerR, toWorkerW, fromWorkerR, fromWorkerW := files[0], files[1], files[2], files[3]
	outR, outW, errR, errW, cancelR, cancelW := files[4], files[5], files[6], files[7], files[8], files[9]
	growPipe(toWorkerW)
	growPipe(fromWorkerW)
	cmd := exec.Command(p.python, "-m", workerModule)
	cmd.Env = append(slices.Clip(p.env), "SLITHER_WORKER_ID="+strconv.Itoa(s.id))
	cmd.Dir = p.opts.Dir
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{toWorkerR, fromWorkerW, cancelR} // fds 3, 4, 5
	ar := p.newArena()
	if ar != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, ar.f) // fd 6
		cmd.Env = append(cmd.Env, fmt.Sprintf("SLITHER_WORKER_ARENA=6,%d,%d", ar.half, sharedMin))
	} else {
		cmd.Env = append(cmd.Env, "SLITHER_WORKER_ARENA=") // none, whatever Options.Env says
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	onSpawnerThread(func() { err = cmd.Start() })
	// The child's ends: only the child may hold them, or its death would
	// not close them.
	closeAll(toWorkerR, fromWorkerW, cancelR, outW, errW)
	if ar != nil {
		ar.handedOver()
	}
	if err != nil {
		closeAll(toWorkerW, fromWorkerR, cancelW, outR, errR)
		if ar != nil {
			ar.close()
		}
		return nil, fail("%v", err)
	}
	pid = cmd.Process.Pid
	pr = &proc{
		p: p, slot: s, cmd: cmd, pid: pid,
		w: toWorkerW, cw: cancelW, rf: fromWorkerR, outR: outR, errR: errR,
		pending: map[uint64]*call{}, started: time.Now(), arena: ar,
		stderr: tail{max: 8 << 10},
		exited: make(chan struct{}),
	}
	pr.hosts, pr.endHosts = context.WithCancelCause(context.Background())
	p.guard.add(pr.pid)
	pr.r = bufio.NewReaderSize(newSpinReader(fromWorkerR, &pr.spinUntil), 64<<10)
	pr.outs.Add(2)
	go pr.forward(outR, "stdout", false)
	go pr.forward(errR, "stderr", true)
	p.bg.Add(1)
	go pr.watchExit()

	// Handshake, bounded by StartTimeout and ctx.
	pr.setReadDeadline(time.Now().Add(p.opts.StartTimeout))
	stop := context.AfterFunc(ctx, func() { pr.setReadDeadline(time.Now()) })
	hdr, _, err := wire.ReadFrameLimit(pr.r, p.maxFrame)
	stop()
	pr.setReadDeadline(time.Time{})
	var hello *wire.Inbound
	if err == nil {
		hello, err = wire.ParseInbound(hdr)
	}
	pr.exitMu.Lock()
	gone := pr.gone
	pr.exitMu.Unlock()
	switch {
	case err != nil && ctx.Err() != nil:
		err = fail("start cancelled: %v", context.Cause(ctx))
	case errors.Is(err, os.ErrDeadlineExceeded) && !gone:
		err = fail("no handshake within %v", p.opts.StartTimeout)
	case err != nil:
		pr.killGroup(syscall.SIGKILL)
		<-pr.exited
		err = fail("exited before its handshake%s", pr.ended)
	case hello.T != wire.THello:
		err = fail("sent %q instead of its handshake", hello.T)
	case hello.Proto != wire.Protocol:
		err = fail("speaks protocol %d, this pool speaks %d (the python/slither package and the Go module are from different versions)", hello.Proto, wire.Protocol)
	}
	if err != nil {
		pr.kill("its start failed", endStopped)
		<-pr.exited
		closeAll(toWorkerW, fromWorkerR, cancelW)
		if ar != nil {
			ar.close()
		}
		return nil, err
	}
	if ar != nil && !hello.Arena { // it could not map it: the pipe carries everything
		ar.close()
		pr.arena = nil
	}
	pr.info = Interpreter{Executable: hello.Executable, Version: hello.Version, FreeThreaded: hello.FreeThreaded,
		GILEnabled: hello.GILEnabled, Protocol: hello.Proto}
	p.log.Debug("slither worker started", "worker", s.id, "pid", pr.pid, "python", hello.Version, "free_threaded", hello.FreeThreaded)
	p.opts.Telemetry.Emit(telemetry.PoolWorkerStart, telemetry.Measurements{Duration: time.Since(pr.started)}, telemetry.Metadata{
		"pool": p.name, "kind": string(pools.KindProcess), "worker": s.id, "pid": pr.pid, "python": hello.Version,
		"free_threaded": hello.FreeThreaded, "gil_enabled": hello.GILEnabled,
	})
	p.bg.Add(1)
	go pr.readLoop()
	return pr, nil
}

// newArena makes a worker's shared memory, or returns nil when it is
// turned off or cannot be made (the pipe then carries everything).
func (p *Pool) newArena() *arena {
	half := p.opts.SharedMemory
	switch {
	case half < 0:
		return nil
	case half == 0:
		half = defaultShared
	}
	half = max(half, sharedTable+sharedMin) &^ (sharedAlign - 1)
	ar, err := newArena(half)
	if err != nil {
		p.log.Debug("slither worker shared memory unavailable; large byte strings go through the pipe", "error", err)
		return nil
	}
	return ar
}

// startFailed emits the pool.worker.exit of a start of s that failed with
// err after d; pid is the process's, 0 when none started. A start that
// Close cancelled (ctx or the pool's life ended) is classed closed, any
// other start-failed.
func (p *Pool) startFailed(ctx context.Context, s *slot, pid int, d time.Duration, err error) {
	class := pools.ExitStartFailed
	if ctx.Err() != nil || p.life.Err() != nil {
		class = pools.ExitClosed
	}
	p.opts.Telemetry.Emit(telemetry.PoolWorkerExit, telemetry.Measurements{Duration: d}, telemetry.Metadata{
		"pool": p.name, "kind": string(pools.KindProcess), "worker": s.id, "pid": pid, "reason": err.Error(),
		"class": class,
	})
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// setReadDeadline sets the deadline of the worker's frame pipe, unless the
// worker has exited: the exit's own deadline then stands.
func (pr *proc) setReadDeadline(t time.Time) {
	pr.exitMu.Lock()
	defer pr.exitMu.Unlock()
	if !pr.gone {
		_ = pr.rf.SetReadDeadline(t)
	}
}

// watchExit waits for the process to exit, on its own rather than through
// its pipes, which a process it started may hold: it kills the worker's
// process group (whatever user code started in it), bounds how long its
// pipes are read on, reaps it and closes pr.exited.
func (pr *proc) watchExit() {
	defer pr.p.bg.Done()
	waitExit(pr.pid)
	pr.endHosts(fmt.Errorf("pools/process: worker %d (pid %d) exited: %w", pr.slot.id, pr.pid, pools.ErrWorkerCrashed))
	deadline := time.Now().Add(drainGrace)
	pr.exitMu.Lock()
	// Before reaping: until then the group id cannot be reused.
	_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
	pr.gone = true
	_ = pr.rf.SetReadDeadline(deadline)
	pr.exitMu.Unlock()
	// Unregistered before the reap too: a guardian told only after it (the
	// Go process killed in between) would kill the group id later, when
	// another process may have it.
	pr.p.guard.remove(pr.pid)
	_ = pr.cmd.Wait()
	_ = pr.outR.SetReadDeadline(deadline)
	_ = pr.errR.SetReadDeadline(deadline)
	pr.outs.Wait()
	ps := pr.cmd.ProcessState
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		pr.ended = fmt.Sprintf(" (signal %s)", ws.Signal())
	} else {
		pr.ended = fmt.Sprintf(" (exit status %d)", ps.ExitCode())
	}
	pr.outMu.Lock()
	if s := pr.stderr.String(); s != "" {
		pr.ended += "; stderr:\n" + s
	}
	pr.outMu.Unlock()
	close(pr.exited)
}

// killGroup signals the worker's process group, unless the worker has
// exited: its group has been killed then, and its id may be reused.
func (pr *proc) killGroup(sig syscall.Signal) {
	pr.exitMu.Lock()
	defer pr.exitMu.Unlock()
	if !pr.gone {
		_ = syscall.Kill(-pr.pid, sig)
	}
}

// kill ends the process at once; reason is what its calls are told, and
// its host functions' contexts end with it (matching pools.ErrTimeout for
// a timeout, pools.ErrWorkerCrashed otherwise).
func (pr *proc) kill(reason string, cause endCause) {
	pr.setEnd(reason, cause)
	sentinel := pools.ErrWorkerCrashed
	if cause == endTimeout {
		sentinel = pools.ErrTimeout
	}
	// Killed first: a host function that returns as its context ends must
	// not get its answer to the worker in time for the batch to finish as
	// if it had not timed out.
	pr.killGroup(syscall.SIGKILL)
	pr.endHosts(fmt.Errorf("pools/process: worker %d (pid %d) %s: %w", pr.slot.id, pr.pid, reason, sentinel))
}

// setEnd records why the pool ends the process; the first reason stays.
func (pr *proc) setEnd(reason string, cause endCause) {
	if pr.reason.CompareAndSwap(nil, &reason) {
		pr.cause.Store(int32(cause))
	}
}

func (pr *proc) endCause() endCause { return endCause(pr.cause.Load()) }

// stop asks the worker to exit, then sends SIGTERM, then SIGKILL, grace
// apart, and returns once it is gone.
func (pr *proc) stop(grace time.Duration) {
	pr.setEnd("stopped by the pool", endStopped)
	_ = pr.write(wire.Shutdown, nil)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if pr.waitExited(grace) {
			return
		}
		pr.killGroup(sig)
	}
	pr.waitExited(grace)
}

// waitExited waits up to d for the process to have exited.
func (pr *proc) waitExited(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-pr.exited:
		return true
	case <-t.C:
		return false
	}
}
