package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
	"github.com/slither-go/slither/telemetry"
)

// proc is one worker process.
type proc struct {
	p    *Pool
	slot *slot
	cmd  *exec.Cmd
	pid  int
	info Interpreter

	wmu     sync.Mutex // serializes frames to the worker
	w       *os.File
	scratch []byte

	cmu sync.Mutex // serializes cancel requests
	cw  *os.File   // the cancel pipe, served by a thread of its own

	r         *bufio.Reader
	spinUntil atomic.Int64 // unix ns: poll the worker's pipe until then before parking

	pmu     sync.Mutex
	pending map[uint64]*call
	dead    bool

	started  time.Time
	calls    int // calls granted; guarded by Pool.mu
	recycled atomic.Bool
	reason   atomic.Pointer[string] // why the pool killed it, if it did

	outMu  sync.Mutex
	stderr tail
	outs   sync.WaitGroup // stdout and stderr readers

	reapOnce sync.Once
	reaped   string
}

type call struct {
	id       uint64
	b        pools.Batch
	ctx      context.Context
	done     chan result // buffered(1)
	start    time.Time
	timer    *time.Timer
	timedOut atomic.Bool
}

type result struct {
	out []any
	err error
}

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

// spawn starts a worker process for s and waits for its handshake.
func (p *Pool) spawn(ctx context.Context, s *slot) (*proc, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: worker %d (%s): %s", ErrStart, s.id, p.python, fmt.Sprintf(format, args...))
	}
	toWorkerR, toWorkerW, err := os.Pipe()
	if err != nil {
		return nil, fail("%v", err)
	}
	fromWorkerR, fromWorkerW, err := os.Pipe()
	if err != nil {
		closeAll(toWorkerR, toWorkerW)
		return nil, fail("%v", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(toWorkerR, toWorkerW, fromWorkerR, fromWorkerW)
		return nil, fail("%v", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(toWorkerR, toWorkerW, fromWorkerR, fromWorkerW, outR, outW)
		return nil, fail("%v", err)
	}
	cancelR, cancelW, err := os.Pipe()
	if err != nil {
		closeAll(toWorkerR, toWorkerW, fromWorkerR, fromWorkerW, outR, outW, errR, errW)
		return nil, fail("%v", err)
	}
	growPipe(toWorkerW)
	growPipe(fromWorkerW)
	cmd := exec.Command(p.python, "-m", workerModule)
	cmd.Env = append(slices.Clip(p.env), "SLITHER_WORKER_ID="+strconv.Itoa(s.id))
	cmd.Dir = p.opts.Dir
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{toWorkerR, fromWorkerW, cancelR} // fds 3, 4, 5
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	onSpawnerThread(func() { err = cmd.Start() })
	closeAll(toWorkerR, fromWorkerW, cancelR, outW, errW) // the child's ends
	if err != nil {
		closeAll(toWorkerW, fromWorkerR, cancelW, outR, errR)
		return nil, fail("%v", err)
	}
	pr := &proc{
		p: p, slot: s, cmd: cmd, pid: cmd.Process.Pid,
		w: toWorkerW, cw: cancelW,
		pending: map[uint64]*call{}, started: time.Now(),
		stderr: tail{max: 8 << 10},
	}
	pr.r = bufio.NewReaderSize(newSpinReader(fromWorkerR, &pr.spinUntil), 64<<10)
	pr.outs.Add(2)
	go pr.forward(outR, "stdout", false)
	go pr.forward(errR, "stderr", true)

	// Handshake, bounded by StartTimeout and ctx.
	_ = fromWorkerR.SetReadDeadline(time.Now().Add(p.opts.StartTimeout))
	stop := context.AfterFunc(ctx, func() { _ = fromWorkerR.SetReadDeadline(time.Now()) })
	hdr, _, err := wire.ReadFrame(pr.r)
	stop()
	_ = fromWorkerR.SetReadDeadline(time.Time{})
	var hello *wire.Inbound
	if err == nil {
		hello, err = wire.ParseInbound(hdr)
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		err = fail("start cancelled: %v", context.Cause(ctx))
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fail("no handshake within %v", p.opts.StartTimeout)
	case err != nil:
		err = fail("exited before its handshake%s", pr.reap())
	case hello.T != wire.THello:
		err = fail("sent %q instead of its handshake", hello.T)
	case hello.Proto != wire.Protocol:
		err = fail("speaks protocol %d, this pool speaks %d (the python/slither package and the Go module are from different versions)", hello.Proto, wire.Protocol)
	}
	if err != nil {
		pr.killGroup(syscall.SIGKILL)
		pr.reap()
		closeAll(toWorkerW, fromWorkerR, cancelW)
		return nil, err
	}
	pr.info = Interpreter{Executable: hello.Executable, Version: hello.Version, FreeThreaded: hello.FreeThreaded,
		GILEnabled: hello.GILEnabled, Protocol: hello.Proto}
	p.log.Debug("slither worker started", "worker", s.id, "pid", pr.pid, "python", hello.Version, "free_threaded", hello.FreeThreaded)
	p.opts.Telemetry.Emit(telemetry.PoolWorkerStart, telemetry.Measurements{Duration: time.Since(pr.started)}, telemetry.Metadata{
		"pool": "process", "worker": s.id, "pid": pr.pid, "python": hello.Version,
		"free_threaded": hello.FreeThreaded, "gil_enabled": hello.GILEnabled,
	})
	p.bg.Add(1)
	go pr.readLoop(fromWorkerR)
	return pr, nil
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// forward logs a worker's output stream line by line; stderr is also kept
// for crash reports.
func (pr *proc) forward(r *os.File, stream string, keep bool) {
	defer pr.outs.Done()
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if keep {
			pr.outMu.Lock()
			pr.stderr.add(line)
			pr.outMu.Unlock()
		}
		pr.p.log.Info(string(line), "worker", pr.slot.id, "pid", pr.pid, "stream", stream)
	}
}

// reap waits for the process to exit and its output to be read (bounded:
// a grandchild may hold the pipes), and describes how it ended.
func (pr *proc) reap() string {
	pr.reapOnce.Do(func() { pr.reaped = pr.doReap() })
	return pr.reaped
}

func (pr *proc) doReap() string {
	_ = pr.cmd.Wait()
	done := make(chan struct{})
	go func() { pr.outs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	ps := pr.cmd.ProcessState
	desc := ""
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		desc = fmt.Sprintf(" (signal %s)", ws.Signal())
	} else {
		desc = fmt.Sprintf(" (exit status %d)", ps.ExitCode())
	}
	pr.outMu.Lock()
	defer pr.outMu.Unlock()
	if s := pr.stderr.String(); s != "" {
		desc += "; stderr:\n" + s
	}
	return desc
}

// killGroup signals the worker's process group.
func (pr *proc) killGroup(sig syscall.Signal) {
	_ = syscall.Kill(-pr.pid, sig)
}

// kill ends the process at once; reason is what its calls are told.
func (pr *proc) kill(reason string) {
	pr.reason.CompareAndSwap(nil, &reason)
	pr.killGroup(syscall.SIGKILL)
}

// stop asks the worker to exit, then sends SIGTERM, then SIGKILL, grace
// apart, and returns once it is gone.
func (pr *proc) stop(grace time.Duration) {
	reason := "stopped by the pool"
	pr.reason.CompareAndSwap(nil, &reason)
	pr.write(wire.Shutdown, nil)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if pr.waitDead(grace) {
			return
		}
		pr.killGroup(sig)
	}
	pr.waitDead(grace)
}

func (pr *proc) waitDead(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pr.pmu.Lock()
		dead := pr.dead
		pr.pmu.Unlock()
		if dead {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// write sends one frame; errors mean the worker is dying, which the reader
// notices and reports.
func (pr *proc) write(hdr []byte, atts [][]byte) error {
	pr.wmu.Lock()
	defer pr.wmu.Unlock()
	var err error
	pr.scratch, err = wire.WriteFrame(pr.w, pr.scratch, hdr, atts)
	if cap(pr.scratch) > 1<<20 {
		pr.scratch = nil
	}
	return err
}

var encoders = sync.Pool{New: func() any { return new(wire.Encoder) }}

// start sends c to the worker; its result arrives through c.done. It
// returns false, having done nothing, if the worker has died already.
func (pr *proc) start(c *call) bool {
	enc := encoders.Get().(*wire.Encoder)
	defer func() {
		enc.Reset()
		encoders.Put(enc)
	}()
	if err := enc.List(c.b.Items); err != nil {
		pr.p.finish(pr, c, result{err: err}, false)
		return true
	}
	hdr := wire.AppendCall(make([]byte, 0, 64+len(enc.Buf)), c.id, c.b.Module, c.b.Function, c.b.Session, enc.Buf)
	pr.pmu.Lock()
	if pr.dead {
		pr.pmu.Unlock()
		return false
	}
	pr.pending[c.id] = c
	pr.pmu.Unlock()
	if d := pr.p.opts.CallTimeout; d > 0 {
		c.timer = time.AfterFunc(d, func() {
			c.timedOut.Store(true)
			pr.kill(fmt.Sprintf("killed after a call ran past the %v timeout", d))
		})
	}
	_ = pr.write(hdr, enc.Atts) // a failed write shows up as the worker's death
	return true
}

// cancel asks the worker to raise slither.Cancelled in call c.
func (pr *proc) cancel(c *call) {
	pr.pmu.Lock()
	_, running := pr.pending[c.id]
	pr.pmu.Unlock()
	if running {
		pr.cmu.Lock()
		_, _ = wire.WriteFrame(pr.cw, nil, wire.AppendCancel(nil, c.id), nil)
		pr.cmu.Unlock()
	}
}

// readLoop handles the worker's messages until its output closes, then
// reports its death.
func (pr *proc) readLoop(r *os.File) {
	defer pr.p.bg.Done()
	var protoErr error
	for {
		hdr, atts, err := wire.ReadFrame(pr.r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				protoErr = err
			}
			break
		}
		m, err := wire.ParseInbound(hdr)
		if err != nil {
			protoErr = err
			break
		}
		switch m.T {
		case wire.TResult:
			pr.result(m, atts)
		case wire.THost:
			pr.p.bg.Add(1)
			if pr.p.threads == 1 {
				// The worker's one thread waits for this answer and sends
				// nothing else meanwhile: answering here saves a goroutine
				// hand-off on every view call.
				pr.host(m, atts)
			} else {
				go pr.host(m, atts)
			}
		default:
			protoErr = fmt.Errorf("unexpected message %q", m.T)
		}
		if protoErr != nil {
			break
		}
	}
	if protoErr != nil {
		reason := "protocol error: " + protoErr.Error()
		pr.reason.CompareAndSwap(nil, &reason)
	}
	pr.killGroup(syscall.SIGKILL) // certain death before reaping
	pr.reap()
	_ = r.Close()
	pr.wmu.Lock()
	_ = pr.w.Close()
	pr.wmu.Unlock()
	pr.cmu.Lock()
	_ = pr.cw.Close()
	pr.cmu.Unlock()

	crash := pr.crashError()
	pr.p.opts.Telemetry.Emit(telemetry.PoolWorkerExit, telemetry.Measurements{Duration: time.Since(pr.started)}, telemetry.Metadata{
		"pool": "process", "worker": pr.slot.id, "pid": pr.pid, "reason": crash.Reason,
		"exit_code": crash.ExitCode, "signal": int(crash.Signal), "recycled": pr.recycled.Load(),
	})
	// Unpin first, so that no new call of its sessions is granted to it.
	pr.p.mu.Lock()
	pr.p.unpin(pr.slot, pr, crash)
	pr.p.mu.Unlock()
	pr.pmu.Lock()
	pr.dead = true
	calls := pr.pending
	pr.pending = nil
	pr.pmu.Unlock()
	for _, c := range calls {
		var err error = crash
		if c.timedOut.Load() {
			err = fmt.Errorf("%w after %v: %w", pools.ErrTimeout, pr.p.opts.CallTimeout, crash)
		}
		pr.p.finish(pr, c, result{err: err}, true)
	}
	pr.p.mu.Lock()
	pr.p.onExit(pr.slot, pr, crash)
	pr.p.mu.Unlock()
}

// crashError describes the process's end; valid once it has been reaped.
func (pr *proc) crashError() *CrashError {
	e := &CrashError{Worker: pr.slot.id, Pid: pr.pid, ExitCode: -1, Reason: "exited"}
	if r := pr.reason.Load(); r != nil {
		e.Reason = *r
	}
	if ps := pr.cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = ws.Signal()
			if pr.reason.Load() == nil {
				e.Reason = "killed by a signal"
			}
		} else {
			e.ExitCode = ps.ExitCode()
		}
	}
	pr.outMu.Lock()
	e.Stderr = pr.stderr.String()
	pr.outMu.Unlock()
	return e
}

// result delivers a call's reply.
func (pr *proc) result(m *wire.Inbound, atts [][]byte) {
	pr.pmu.Lock()
	c, ok := pr.pending[m.ID]
	delete(pr.pending, m.ID)
	pr.pmu.Unlock()
	if !ok {
		return
	}
	var r result
	switch {
	case m.E != nil && m.E.Kind == "conversion":
		r.err = &wire.ConversionError{Direction: "python->go", Reason: m.E.Message}
	case m.E != nil:
		r.err = &pools.PythonError{Type: m.E.Type, Message: m.E.Message, Traceback: m.E.Traceback}
	default:
		v, err := wire.Decode(m.V, atts)
		if err != nil {
			r.err = err
			break
		}
		out, ok := v.([]any)
		if !ok {
			r.err = fmt.Errorf("pools/process: worker returned %T, not a list", v)
			break
		}
		r.out, r.err = pools.CheckResults(c.b, out)
	}
	pr.p.finish(pr, c, r, true)
}

// finish records a call's end, frees its thread and delivers r.
func (p *Pool) finish(pr *proc, c *call, r result, ran bool) {
	if c.timer != nil {
		c.timer.Stop()
	}
	s := pr.slot
	if ran {
		s.calls.Add(1)
		s.items.Add(uint64(len(c.b.Items)))
		s.busy.Add(int64(time.Since(c.start)))
		if r.err != nil {
			s.errs.Add(1)
		}
	}
	if ci := pools.CallInfoFrom(c.ctx); ci != nil {
		ci.Worker, ci.Pid = s.id, pr.pid
	}
	p.mu.Lock()
	if ran {
		pr.calls++
	}
	p.releaseLocked(s, pr)
	p.mu.Unlock()
	c.done <- r
}

// host serves one slither.host_call.
func (pr *proc) host(m *wire.Inbound, atts [][]byte) {
	defer pr.p.bg.Done()
	pr.pmu.Lock()
	c := pr.pending[m.ID]
	pr.pmu.Unlock()
	ctx, session := context.Background(), ""
	if c != nil {
		ctx, session = c.ctx, c.b.Session
	}
	reply := func(v any, err error) {
		enc := encoders.Get().(*wire.Encoder)
		defer func() {
			enc.Reset()
			encoders.Put(enc)
		}()
		if err == nil {
			err = enc.List([]any{v})
		}
		var hdr []byte
		if err != nil {
			hdr = wire.AppendReply(nil, m.H, nil, err.Error())
		} else {
			hdr = wire.AppendReply(nil, m.H, enc.Buf[1:len(enc.Buf)-1], "")
		}
		_ = pr.write(hdr, enc.Atts)
	}
	// The worker's next message (another view call, or the result) usually
	// follows within microseconds: poll for it rather than park.
	defer pr.spinUntil.Store(time.Now().Add(hostSpin).UnixNano())
	h := pr.p.opts.Host
	if h == nil {
		reply(nil, fmt.Errorf("no host function: the pool's Options.Host is nil (called %q)", m.N))
		return
	}
	v, err := wire.Decode(m.V, atts)
	if err != nil {
		reply(nil, err)
		return
	}
	args, _ := v.([]any)
	reply(callHost(h, ctx, pools.HostCall{Name: m.N, Args: args, Worker: pr.slot.id, Pid: pr.pid, Session: session, Pool: pools.KindProcess}))
}

// callHost runs h, turning a panic into an error for Python.
func callHost(h pools.HostFunc, ctx context.Context, hc pools.HostCall) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("host function for %q panicked: %v", hc.Name, r)
		}
	}()
	return h(ctx, hc)
}

// hostSpin is how long the reader polls a worker's pipe after answering a
// host call: waking a parked reader costs tens of microseconds on a VM,
// more than a host call's whole work.
const hostSpin = 50 * time.Microsecond

// spinReader reads a pipe, polling it without parking until *until (when
// set) has passed, then parking in the netpoller as usual.
type spinReader struct {
	f     *os.File
	rc    syscall.RawConn
	until *atomic.Int64
}

func newSpinReader(f *os.File, until *atomic.Int64) io.Reader {
	rc, err := f.SyscallConn()
	if err != nil {
		return f
	}
	return &spinReader{f: f, rc: rc, until: until}
}

func (s *spinReader) Read(p []byte) (int, error) {
	if s.until.Load() <= time.Now().UnixNano() {
		return s.f.Read(p)
	}
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr == syscall.EINTR {
				continue
			}
			if rerr != syscall.EAGAIN {
				return true
			}
			if s.until.Load() <= time.Now().UnixNano() {
				return false // park until readable; the callback runs again
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}
