package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

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

	arena *arena // its shared memory, or nil (spawn.go, shm.go)

	rf        *os.File // the worker's frames to us
	r         *bufio.Reader
	spinUntil atomic.Int64 // unix ns: poll the worker's pipe until then before parking

	// hosts ends, with a cause, when the pool kills the process or it
	// exits: the host functions serving its calls get a context that ends
	// with it, so that none holds up a timeout or a crash (with one thread
	// per worker they run on its reader).
	hosts    context.Context
	endHosts context.CancelCauseFunc

	// pmu guards pending and dead. Lock order: Pool.mu, then pmu (Stats
	// reads each worker's pending calls under Pool.mu); never take
	// Pool.mu while holding pmu.
	pmu     sync.Mutex
	pending map[uint64]*call
	dead    bool

	started  time.Time
	calls    int // calls granted; guarded by Pool.mu
	recycled atomic.Bool
	reason   atomic.Pointer[string] // why the pool killed it, if it did
	cause    atomic.Int32           // an endCause, if the pool ended it

	outMu      sync.Mutex
	stderr     tail
	outs       sync.WaitGroup // stdout and stderr readers
	outR, errR *os.File

	exitMu sync.Mutex // orders signals and read deadlines against the exit
	gone   bool       // the process has exited; guarded by exitMu
	exited chan struct{}
	ended  string // how it ended, for messages; set before exited closes
}

// endCause says why the pool ended a worker.
type endCause int32

const (
	endCrashed endCause = iota // nothing: it died by itself
	endTimeout                 // a call ran past CallTimeout
	endStopped                 // recycled, closed, or its start failed
	endBroken                  // its stream broke: a protocol error, a frame cut short
)

type call struct {
	id       uint64
	b        pools.Batch
	ctx      context.Context
	sess     *session    // the batch's session record, or nil
	done     chan result // buffered(1)
	start    time.Time
	timer    *time.Timer // set before the call is shared, never after
	timedOut atomic.Bool
	sendErr  error // the write that broke the worker's stream; guarded by proc.pmu
	shared   []int // its byte strings' offsets in the worker's shared memory, freed when it ends
}

type result struct {
	out []any
	err error
}

// write sends one frame. A frame over the limit is refused whole (an error
// matching wire.ErrFrameTooLarge) and the stream stays usable; any other
// error may have cut a frame short, so the worker, which could no longer
// read its input, is killed.
func (pr *proc) write(hdr []byte, atts [][]byte) error {
	pr.wmu.Lock()
	defer pr.wmu.Unlock()
	var err error
	pr.scratch, err = wire.WriteFrameLimit(pr.w, pr.scratch, hdr, atts, pr.p.maxFrame)
	if cap(pr.scratch) > 1<<20 {
		pr.scratch = nil
	}
	switch {
	case err == nil, errors.Is(err, wire.ErrFrameTooLarge):
	case errors.Is(err, syscall.EPIPE), errors.Is(err, os.ErrClosed):
		pr.killGroup(syscall.SIGKILL) // it closed its input: it is dying, or must
	default:
		pr.kill("writing to it failed: "+err.Error(), endBroken)
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
	if pr.arena != nil {
		enc.Share = pr.arena
	}
	err := enc.List(c.b.Items)
	// The worker copies them out as it reads the call: they are freed
	// when the call ends, however it ends (finish).
	c.shared = append(c.shared[:0], enc.Shared...)
	if err != nil {
		pr.p.finish(pr, c, result{err: err}, false)
		return true
	}
	var tr wire.Trace
	if sc := trace.SpanContextFromContext(c.ctx); sc.IsValid() {
		tr = wire.Trace{TraceID: sc.TraceID(), SpanID: sc.SpanID()}
	}
	hdr := wire.AppendCallTrace(make([]byte, 0, 112+len(enc.Buf)), c.id, c.b.Module, c.b.Function, c.b.Session, tr, enc.Buf)
	if err := pr.checkShared(hdr, enc); err != nil {
		pr.p.finish(pr, c, result{err: fmt.Errorf("the batch cannot be sent (Options.MaxFrame): %w", err)}, false)
		return true
	}
	if d := pr.p.opts.CallTimeout; d > 0 {
		c.timer = time.AfterFunc(d, func() {
			c.timedOut.Store(true)
			pr.kill(fmt.Sprintf("killed after a call ran past the %v timeout", d), endTimeout)
		})
	}
	pr.pmu.Lock()
	if pr.dead {
		pr.pmu.Unlock()
		if c.timer != nil {
			c.timer.Stop()
		}
		pr.freeShared(c)
		return false
	}
	pr.pending[c.id] = c
	pr.pmu.Unlock()
	err = pr.write(hdr, enc.Atts)
	switch {
	case err == nil:
	case errors.Is(err, wire.ErrFrameTooLarge):
		// Nothing was sent and the worker serves on: only this call fails.
		pr.pmu.Lock()
		_, mine := pr.pending[c.id]
		delete(pr.pending, c.id)
		pr.pmu.Unlock()
		if mine {
			pr.p.finish(pr, c, result{err: fmt.Errorf("the batch cannot be sent (Options.MaxFrame): %w", err)}, false)
		}
	default:
		// write killed the worker; the call fails with its crash.
		pr.pmu.Lock()
		c.sendErr = err
		pr.pmu.Unlock()
	}
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

// readLoop handles the worker's messages until its output ends, then fails
// its calls and reports its death.
func (pr *proc) readLoop() {
	defer pr.p.bg.Done()
	var protoErr error
	for protoErr == nil {
		hdr, atts, err := wire.ReadFrameLimit(pr.r, pr.p.maxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
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
			pr.result(m, atts, wire.FrameLen(hdr, atts))
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
	}
	if protoErr != nil {
		pr.kill("protocol error: "+protoErr.Error(), endBroken)
	}
	pr.killGroup(syscall.SIGKILL) // its output ended: it is dead or must be
	<-pr.exited
	p := pr.p
	crash := pr.crashError()
	// First of all, no new call for it: off its slot, its sessions lost,
	// its calls taken.
	p.mu.Lock()
	p.detachLocked(pr, crash)
	p.mu.Unlock()
	pr.pmu.Lock()
	pr.dead = true
	calls := pr.pending
	pr.pending = nil
	sendErrs := make(map[*call]error, len(calls))
	for _, c := range calls {
		sendErrs[c] = c.sendErr
	}
	pr.pmu.Unlock()
	_ = pr.rf.Close()
	pr.wmu.Lock()
	_ = pr.w.Close()
	pr.wmu.Unlock()
	pr.cmu.Lock()
	_ = pr.cw.Close()
	pr.cmu.Unlock()
	if pr.arena != nil {
		pr.arena.close() // calls being sent now fall back to the pipe, and fail with the crash
	}

	p.opts.Telemetry.Emit(telemetry.PoolWorkerExit, telemetry.Measurements{Duration: time.Since(pr.started)}, telemetry.Metadata{
		"pool": p.name, "kind": string(pools.KindProcess), "worker": pr.slot.id, "pid": pr.pid, "reason": crash.Reason,
		"class": pr.exitClass(), "exit_code": crash.ExitCode, "signal": int(crash.Signal), "recycled": pr.recycled.Load(),
	})
	for _, c := range calls {
		var err error = crash
		if c.b.Pinned() {
			err = lostError(c.b.Session, pr.slot, pr, crash)
		}
		if se := sendErrs[c]; se != nil {
			err = fmt.Errorf("sending the batch failed: %w; %w", se, err)
		}
		if c.timedOut.Load() {
			err = fmt.Errorf("%w after %v: %w", pools.ErrTimeout, p.opts.CallTimeout, err)
		}
		p.finish(pr, c, result{err: err}, true)
	}
	p.mu.Lock()
	p.onExit(pr.slot, pr, crash)
	p.mu.Unlock()
}

// exitClass is the class of the process's end (a pools.Exit* constant);
// valid once it has exited.
func (pr *proc) exitClass() string {
	if pr.recycled.Load() {
		return pools.ExitRecycle
	}
	if pr.reason.Load() != nil { // the pool ended it
		switch pr.endCause() {
		case endTimeout:
			return pools.ExitTimeout
		case endStopped:
			return pools.ExitClosed
		case endBroken:
			return pools.ExitKilled
		}
	}
	return pools.ExitCrash
}

// crashError describes the process's end; valid once it has exited.
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

// result delivers a call's reply, which came in a frame of frame bytes.
func (pr *proc) result(m *wire.Inbound, atts [][]byte, frame uint64) {
	pr.pmu.Lock()
	c, ok := pr.pending[m.ID]
	delete(pr.pending, m.ID)
	pr.pmu.Unlock()
	if !ok {
		if pr.arena != nil && m.E == nil {
			_, _ = pr.decode(m.V, atts, frame) // frees its pieces of shared memory
		}
		return
	}
	var r result
	switch {
	case m.E != nil && m.E.Kind == "conversion":
		r.err = &wire.ConversionError{Direction: "python->go", Path: m.E.Path, Reason: m.E.Reason}
		if m.E.Reason == "" { // a worker that does not split its message
			r.err = &wire.ConversionError{Direction: "python->go", Reason: m.E.Message}
		}
	case m.E != nil:
		r.err = &pools.PythonError{Type: m.E.Type, Message: m.E.Message, Traceback: m.E.Traceback}
	default:
		v, err := pr.decode(m.V, atts, frame)
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

// checkShared refuses a message whose frame (hdr, enc.Atts) and byte
// strings in shared memory together exceed the frame limit: MaxFrame
// bounds a message however its bytes travel.
func (pr *proc) checkShared(hdr []byte, enc *wire.Encoder) error {
	if len(enc.Shared) == 0 {
		return nil
	}
	total := int(wire.FrameLen(hdr, enc.Atts)) + enc.SharedBytes
	if total > pr.p.maxFrame {
		return fmt.Errorf("%w: %d bytes (%d of them in shared memory) exceed the %d-byte limit",
			wire.ErrFrameTooLarge, total, enc.SharedBytes, pr.p.maxFrame)
	}
	return nil
}

// decode decodes a value from the worker that came in a frame of frame
// bytes, copying its byte strings out of its shared memory: no more of
// them than the frame limit leaves beside the frame (the bytes of one
// message, however they travel), whatever the references say.
func (pr *proc) decode(v []byte, atts [][]byte, frame uint64) (any, error) {
	if pr.arena == nil {
		return wire.Decode(v, atts)
	}
	left := uint64(pr.p.maxFrame) - min(frame, uint64(pr.p.maxFrame))
	out, err := wire.DecodeShared(v, atts, &budget{a: pr.arena, left: left, limit: pr.p.maxFrame})
	if err != nil {
		// Decoding stopped at the error: the pieces after it were never
		// copied out, and the worker would never get their room back.
		wire.SharedRefs(v, pr.arena.release)
	}
	return out, err
}

// budget loads from an arena up to a number of bytes.
type budget struct {
	a     *arena
	left  uint64
	limit int
}

func (b *budget) Load(slot, off, n uint64) ([]byte, error) {
	if n > b.left {
		return nil, fmt.Errorf("%w: the byte strings in shared memory exceed the %d-byte limit (Options.MaxFrame)", wire.ErrFrameTooLarge, b.limit)
	}
	b.left -= n
	return b.a.Load(slot, off, n)
}

// freeShared frees call c's byte strings in the worker's shared memory.
func (pr *proc) freeShared(c *call) {
	for _, off := range c.shared {
		pr.arena.free(off)
	}
	c.shared = nil
}

// finish records a call's end, frees its thread and delivers r.
func (p *Pool) finish(pr *proc, c *call, r result, ran bool) {
	if c.timer != nil {
		c.timer.Stop()
	}
	pr.freeShared(c)
	s := pr.slot
	service := time.Since(c.start)
	if ran {
		s.calls.Add(1)
		s.items.Add(uint64(len(c.b.Items)))
		s.busy.Add(int64(service))
		if r.err != nil {
			s.errs.Add(1)
		}
	}
	if ci := pools.CallInfoFrom(c.ctx); ci != nil {
		ci.Worker, ci.Pid, ci.Service, ci.Pool = s.id, pr.pid, service, p.name
	}
	p.mu.Lock()
	if ran {
		pr.calls++
	}
	closes := p.leaveLocked(c.sess)
	p.releaseLocked(s, pr)
	p.mu.Unlock()
	if len(closes.to) > 0 {
		// Not on this goroutine, which may be the worker's reader: a write
		// to a worker whose input is full waits for the worker, which may
		// be waiting for this reader.
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			closes.send()
		}()
	}
	c.done <- r
}
