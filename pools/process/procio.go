package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
)

// maxLogLine is the longest piece of worker output logged as one record; a
// longer line is logged in pieces of this size.
const maxLogLine = 64 << 10

// forward logs a worker's output stream line by line (a line longer than
// maxLogLine in pieces, each but the last marked continued), so that the
// worker never blocks on a full pipe; stderr is also kept for crash
// reports.
func (pr *proc) forward(r *os.File, stream string, keep bool) {
	defer pr.outs.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		cut := errors.Is(err, bufio.ErrBufferFull)
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if len(line) > 0 || err == nil {
			if keep {
				pr.outMu.Lock()
				pr.stderr.add(line)
				pr.outMu.Unlock()
			}
			if cut {
				pr.p.log.Info(string(line), "worker", pr.slot.id, "pid", pr.pid, "stream", stream, "continued", true)
			} else {
				pr.p.log.Info(string(line), "worker", pr.slot.id, "pid", pr.pid, "stream", stream)
			}
		}
		if err != nil && !cut {
			return
		}
	}
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
	// The caller's context (its values, its end), also ended when the
	// worker is killed (a timeout among others) or dies.
	ctx, cancel := context.WithCancelCause(pools.HostChain{}.With(ctx, pr))
	defer cancel(nil)
	stop := context.AfterFunc(pr.hosts, func() { cancel(context.Cause(pr.hosts)) })
	defer stop()
	// The worker's next message (another view call, or the result) usually
	// follows within microseconds: poll for it rather than park.
	defer pr.spinUntil.Store(time.Now().Add(hostSpin).UnixNano())
	v, err := wire.Decode(m.V, atts)
	if err != nil {
		pr.reply(m.H, nil, err)
		return
	}
	args, _ := v.([]any)
	v, err = pr.p.opts.Host.Call(ctx, pools.HostCall{Name: m.N, Args: args, Worker: pr.slot.id, Pid: pr.pid, Session: session, Pool: pools.KindProcess})
	pr.reply(m.H, v, err)
}

// reply answers host request h with v, or with err's text. An answer over
// the frame limit is replaced by an error saying so: the worker waits for
// an answer, and must get one.
func (pr *proc) reply(h uint64, v any, err error) {
	enc := encoders.Get().(*wire.Encoder)
	defer func() {
		enc.Reset()
		encoders.Put(enc)
	}()
	if err == nil {
		err = enc.List([]any{v})
	}
	if err == nil {
		err = pr.write(wire.AppendReply(nil, h, enc.Buf[1:len(enc.Buf)-1], ""), enc.Atts)
		if !errors.Is(err, wire.ErrFrameTooLarge) {
			return // sent, or the worker is gone
		}
		err = fmt.Errorf("the host function's result cannot be sent (Options.MaxFrame): %w", err)
	}
	_ = pr.write(wire.AppendReply(nil, h, nil, err.Error()), nil)
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
