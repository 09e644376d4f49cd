package process_test

// A worker process driven frame by frame, without a pool: for what the
// pool never sends (malformed frames, fuzzed input) and for settings it
// does not make (the worker's frame limit).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools/process/wire"
)

type rawWorker struct {
	t      testing.TB
	cmd    *exec.Cmd
	w      *os.File // the worker's call pipe
	cw     *os.File // its cancel pipe
	rf     *os.File
	r      *bufio.Reader
	stderr *bytes.Buffer // read only after wait
	hello  *wire.Inbound // the handshake
	waited bool
	code   int
}

// startRawWorker starts `python -m slither.worker` on the repository's
// slither package with env added, and reads its handshake. Everything it
// does is bounded by ctx: past it the process is killed.
func startRawWorker(t testing.TB, ctx context.Context, env ...string) *rawWorker {
	t.Helper()
	toR, toW, err := os.Pipe()
	require.NoError(t, err)
	fromR, fromW, err := os.Pipe()
	require.NoError(t, err)
	cR, cW, err := os.Pipe()
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, testPython(), "-m", "slither.worker")
	cmd.Env = append(os.Environ(),
		"PYTHONPATH="+abs("../../python")+string(os.PathListSeparator)+abs("testdata"),
		"SLITHER_WORKER_FDS=3,4,5", "SLITHER_WORKER_THREADS=1", "SLITHER_WORKER_PRELOAD=")
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = []*os.File{toR, fromW, cR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Start()
	closeFiles(toR, fromW, cR)
	if err != nil {
		closeFiles(toW, fromR, cW)
		require.NoError(t, err)
	}
	rw := &rawWorker{t: t, cmd: cmd, w: toW, cw: cW, rf: fromR, r: bufio.NewReader(fromR), stderr: &stderr}
	if d, ok := ctx.Deadline(); ok {
		_ = fromR.SetDeadline(d)
		_ = toW.SetDeadline(d)
		_ = cW.SetDeadline(d)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		rw.wait()
	})
	hdr, _, err := wire.ReadFrame(rw.r)
	if err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		code, serr := rw.wait()
		require.NoError(t, err, "no handshake; exit %d, stderr:\n%s", code, serr)
	}
	rw.hello, err = wire.ParseInbound(hdr)
	require.NoError(t, err)
	require.Equal(t, wire.THello, rw.hello.T)
	return rw
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// send writes raw bytes to the call pipe; an error means the worker has
// stopped reading (it exited).
func (rw *rawWorker) send(b []byte) error {
	_, err := rw.w.Write(b)
	return err
}

// call writes a call of module.function on items with id.
func (rw *rawWorker) call(id uint64, module, function string, items ...any) {
	rw.t.Helper()
	var e wire.Encoder
	require.NoError(rw.t, e.List(items))
	_, err := wire.WriteFrame(rw.w, nil, wire.AppendCall(nil, id, module, function, "", e.Buf), e.Atts)
	require.NoError(rw.t, err)
}

// next reads the worker's next message; nil at the end of its output.
func (rw *rawWorker) next() (*wire.Inbound, [][]byte) {
	rw.t.Helper()
	hdr, atts, err := wire.ReadFrame(rw.r)
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	require.NoError(rw.t, err, "the worker's output must be well-formed frames")
	m, err := wire.ParseInbound(hdr)
	require.NoError(rw.t, err, "the worker's messages must parse: %s", hdr)
	return m, atts
}

// result reads the next message, which must be call id's result.
func (rw *rawWorker) result(id uint64) ([]any, *wire.PyError) {
	rw.t.Helper()
	m, atts := rw.next()
	if m == nil {
		code, stderr := rw.wait()
		rw.t.Fatalf("the worker ended (exit %d) instead of answering call %d; stderr:\n%s", code, id, stderr)
	}
	require.Equal(rw.t, wire.TResult, m.T)
	require.Equal(rw.t, id, m.ID)
	if m.E != nil {
		return nil, m.E
	}
	v, err := wire.Decode(m.V, atts)
	require.NoError(rw.t, err)
	return v.([]any), nil
}

// wait waits for the worker to exit and returns its exit code (-1 for a
// signal) and stderr.
func (rw *rawWorker) wait() (int, string) {
	if !rw.waited {
		rw.waited = true
		_ = rw.cmd.Wait()
		rw.code = rw.cmd.ProcessState.ExitCode()
		closeFiles(rw.w, rw.cw, rw.rf)
	}
	return rw.code, rw.stderr.String()
}

// rawFrame builds a frame by hand: n (0: the true length), the header's
// length as announced, the attachments' lengths, then body.
func rawFrame(n, hl uint32, lens []uint32, body []byte) []byte {
	if n == 0 {
		n = 8 + 4*uint32(len(lens)) + uint32(len(body))
	}
	b := binary.BigEndian.AppendUint32(nil, n)
	b = binary.BigEndian.AppendUint32(b, hl)
	b = binary.BigEndian.AppendUint32(b, uint32(len(lens)))
	for _, l := range lens {
		b = binary.BigEndian.AppendUint32(b, l)
	}
	return append(b, body...)
}

// headerFrame is a frame of one header and no attachments.
func headerFrame(hdr string) []byte { return rawFrame(0, uint32(len(hdr)), nil, []byte(hdr)) }

func rawCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestWorkerFrameLimitSetting(t *testing.T) {
	rw := startRawWorker(t, rawCtx(t))
	rw2 := startRawWorker(t, rawCtx(t), "SLITHER_WORKER_MAX_FRAME=4096")
	assert.Equal(t, wire.DefaultMaxFrame, rw.hello.MaxFrame, "the limit the worker says it reads with")
	assert.Equal(t, 4096, rw2.hello.MaxFrame)

	// A result over the limit fails its call alone.
	rw2.call(1, "workertest", "sized", 5000)
	_, e := rw2.result(1)
	require.NotNil(t, e)
	assert.Equal(t, "conversion", e.Kind)
	assert.Contains(t, e.Message, "result: 5048 bytes exceed the frame limit of 4096 bytes (SLITHER_WORKER_MAX_FRAME)")
	rw2.call(2, "workertest", "sized", 3000)
	out, e := rw2.result(2)
	require.Nil(t, e)
	assert.Equal(t, []any{bytes.Repeat([]byte("x"), 3000)}, out)

	// A call over it is malformed input: the worker says so and exits,
	// without waiting for the bytes the frame announces.
	require.NoError(t, rw2.send(binary.BigEndian.AppendUint32(nil, 5000)))
	code, stderr := rw2.wait()
	assert.Equal(t, 65, code)
	assert.Contains(t, stderr, "slither.worker: malformed input from Go on the call pipe: frame length 5000 exceeds the 4096-byte limit")
}

func TestWorkerRejectsMalformedInput(t *testing.T) {
	for _, c := range []struct {
		name  string
		in    []byte
		close bool // close the pipe after in (else the worker must not wait for more)
		want  string
	}{
		{"too short", rawFrame(7, 0, nil, nil), false, "frame length 7 is shorter than the 8 bytes"},
		{"over the default limit", binary.BigEndian.AppendUint32(nil, 300<<20), false, "frame length 314572800 exceeds the 268435456-byte limit"},
		{"header overruns", rawFrame(100, 200, nil, nil), false, "a header of 200 bytes and 0 attachment lengths overrun the 100-byte frame"},
		{"parts do not add up", rawFrame(1000, 2, []uint32{3}, nil), false, "the frame's parts (a header of 2 bytes and 1 attachments) add up to 17 bytes, not the 1000 it announces"},
		{"not JSON", headerFrame(`{nope`), false, "message header is not valid tagged JSON"},
		{"not an object", headerFrame(`[1,2]`), false, "a message must be a JSON object, not a list"},
		{"unknown type", headerFrame(`{"t":"launch"}`), false, "unknown message type 'launch'"},
		{"call without a function", headerFrame(`{"t":"call","id":1,"m":"workertest"}`), false, "a call needs id (an int), m and f (str)"},
		{"reply without h", headerFrame(`{"t":"reply","v":1}`), false, "a reply needs h (an int)"},
		{"cut short", rawFrame(100, 92, nil, []byte(`{"t":`)), true, "input ended inside a 100-byte frame"},
		{"cut in the length", []byte{0, 0, 0}, true, "input ended inside a frame's length"},
		{"cut in the counts", []byte{0, 0, 0, 20, 0}, true, "input ended inside a 20-byte frame"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rw := startRawWorker(t, rawCtx(t))
			require.NoError(t, rw.send(c.in))
			if c.close {
				require.NoError(t, rw.w.Close())
			}
			m, _ := rw.next()
			assert.Nil(t, m, "no answer to malformed input")
			code, stderr := rw.wait()
			assert.Equal(t, 65, code, "stderr:\n%s", stderr)
			assert.Contains(t, stderr, "slither.worker: malformed input from Go on the call pipe: "+c.want)
			assert.Contains(t, stderr, "the stream cannot be resynchronised")
			assert.NotContains(t, stderr, "Traceback")
		})
	}
}

// A call whose frame is sound but whose values do not decode fails alone.
func TestWorkerUndecodableCall(t *testing.T) {
	rw := startRawWorker(t, rawCtx(t))
	for i, hdr := range []string{
		`{"t":"call","id":1,"m":"workertest","f":"echo","v":[{"$b":3}]}`,
		`{"t":"call","id":2,"m":"workertest","f":"echo","v":[{"$f":"zero"}]}`,
		`{"t":"call","id":3,"m":"workertest","f":"echo","v":[{"$d":[[1,2]]}]}`,
		`{"t":"call","id":4,"m":"workertest","f":"echo","v":[1,]}`,
	} {
		require.NoError(t, rw.send(headerFrame(hdr)))
		_, e := rw.result(uint64(i + 1))
		require.NotNil(t, e, hdr)
		assert.Equal(t, "exception", e.Kind)
	}
	rw.call(5, "workertest", "echo", "still", "serving")
	out, e := rw.result(5)
	require.Nil(t, e)
	assert.Equal(t, []any{"still", "serving"}, out)
	require.NoError(t, rw.w.Close())
	code, stderr := rw.wait()
	assert.Equal(t, 0, code, "the end of input between frames is a clean exit; stderr:\n%s", stderr)
}

// A malformed cancel pipe is malformed input too.
func TestWorkerRejectsMalformedCancel(t *testing.T) {
	rw := startRawWorker(t, rawCtx(t))
	_, err := rw.cw.Write(headerFrame(`{"t":"cancel"}`))
	require.NoError(t, err)
	code, stderr := rw.wait()
	assert.Equal(t, 65, code)
	assert.Contains(t, stderr, "slither.worker: malformed input from Go on the cancel pipe: a cancel needs id (an int)")
}
