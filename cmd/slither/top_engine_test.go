//go:build cgo

package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/pyhold"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pools"
)

// topPy is toptest: hold (see package pyhold) and fail, which raises.
const topPy = pyhold.Source + `
def fail(batch):
    raise ValueError("no good: %r" % (batch[0],))
`

// TestTopOnceAgainstAnEngine runs `slither top --once` against an engine
// serving its monitor while a batch is held running in each pool and
// after a batch failed: the frame shows both pools, the busy workers and
// what they run, the dispatches in flight against their limits, the GIL
// and the Python error. The same client then meets the monitor's token
// check.
func TestTopOnceAgainstAnEngine(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "toptest.py"), []byte(topPy), 0o600))
	python := os.Getenv("SLITHER_TEST_PYTHON")
	if python == "" {
		python = engine.DefaultPython()
	}
	eng, err := engine.Start(ctx, engine.Config{
		Paths:   []string{dir},
		Logger:  slog.New(slog.DiscardHandler),
		Thread:  engine.ThreadConfig{Workers: 2, Required: true},
		Process: map[string]engine.ProcessConfig{"default": {Python: python, Workers: 1}},
		HTTP:    engine.HTTPConfig{Addr: "127.0.0.1:0"},
	})
	require.NoError(t, err)
	defer eng.Close(context.Background())

	_, err = eng.Dispatch(ctx, dispatch.Items(dispatch.Item{ID: "x", Payload: 7}), engine.DispatchOptions{Options: dispatch.Options{
		Name: "failing", Module: "toptest", Function: "fail", Route: pools.Process}})
	require.ErrorContains(t, err, "no good")

	holds := map[pools.Route]*pyhold.Batch{pools.Thread: pyhold.New(t, dir, "t"), pools.Process: pyhold.New(t, dir, "p")}
	done := make(chan error, len(holds))
	for route, h := range holds {
		go func() {
			_, err := eng.Dispatch(ctx, dispatch.Items(h.Item), engine.DispatchOptions{Options: dispatch.Options{
				Name: "hold-" + route.String(), Module: "toptest", Function: "hold", Route: route, MaxInFlight: 3}})
			done <- err
		}()
	}
	for _, h := range holds {
		require.NoError(t, h.Started())
	}

	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"top", "--once", "--token", "", "--addr", eng.HTTPAddr()})
	require.NoError(t, cmd.Execute())
	frame := strings.TrimSuffix(out.String(), "\n")
	t.Logf("slither top --once:\n%s", frame)
	lines := checkFrame(t, frame, 80, 24)
	assert.NotContains(t, frame, "\x1b")
	line := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return strings.Join(strings.Fields(l), " ")
			}
		}
		t.Errorf("no line starts with %q", prefix)
		return ""
	}
	assert.Contains(t, frame, "GIL  off (free-threaded)")
	assert.Regexp(t, `^process/default process 1/1 0 100% `, line("process/default "))
	assert.Regexp(t, `^thread thread 1/2 0 50% `, line("thread "))
	assert.Regexp(t, `^process/default#\d+ busy \d+ toptest.hold `, line("process/default#"))
	assert.Regexp(t, `^thread#\d+ busy \d+ toptest.hold `, line("thread#"))
	// Before its first batch ends, a dispatch shows the pool it was given
	// (the engine's router); after, the pool that ran it.
	assert.Regexp(t, `^hold-process router toptest.hold 1/3 0 0 0 0$`, line("hold-process "))
	assert.Regexp(t, `^hold-thread router toptest.hold 1/3 0 0 0 0$`, line("hold-thread "))
	// Its run has ended: nothing in flight against no limit (the limit
	// is the sum over running runs, and its run.stop event was handled
	// before Dispatch returned).
	assert.Regexp(t, `^failing process/default toptest.fail 0/0 0 0 1 0$`, line("failing "))
	assert.Regexp(t, `(?m)^  \d\d:\d\d:\d\d ValueError: no good: 7 \[failing toptest.fail process/default\]$`, frame)
	assert.Contains(t, line("ROUTES"), "thread/requested 1")
	assert.Contains(t, line("ROUTES"), "process/requested")

	for _, h := range holds {
		h.Release()
	}
	for range holds {
		require.NoError(t, <-done)
	}

	// The monitor's own handler behind a token: top without it, with a
	// wrong one and with the right one.
	srv := httptest.NewServer(eng.Monitor().Handler(monitor.HandlerOptions{Token: "s3cret"}))
	defer srv.Close()
	for _, c := range []struct{ token, want string }{
		{"", "needs a token (HTTP 401)"},
		{"wrong", "refused the token"},
		{"s3cret", ""},
	} {
		cmd := newRoot()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetArgs([]string{"top", "--once", "--token", c.token, "--addr", srv.URL + "/debug/slither"})
		err := cmd.Execute()
		if c.want == "" {
			assert.NoError(t, err)
		} else {
			assert.ErrorContains(t, err, c.want)
		}
	}
}

// markWriter is the command's output; seen is closed once it holds mark.
type markWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	mark string
	seen chan struct{}
}

func (w *markWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.mark)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.mark) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *markWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestExampleServeWatchedByTop runs `slither example text_analysis --serve`
// with a token and, once its first round is done, `slither top --once`
// with the command it printed: the frame shows the example's pool,
// dispatch and pipeline. The token is never printed. Ctrl-C (the context
// ending) stops the example cleanly.
func TestExampleServeWatchedByTop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &markWriter{mark: "round 1 done", seen: make(chan struct{})}
	cmd := newRoot()
	cmd.SetOut(out)
	cmd.SetArgs([]string{"example", "text_analysis", "--serve", "127.0.0.1:0", "--token", "s3cret"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	select {
	case <-out.seen:
	case err := <-done:
		t.Fatalf("example --serve ended: %v\n%s", err, out.String())
	}
	m := regexp.MustCompile(`(?m)^  top: +slither top --addr (\S+) --token TOKEN$`).FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	assert.Regexp(t, `(?m)^  page: +http://127\.0\.0\.1:\d+/debug/slither\?token=TOKEN$`, out.String())
	assert.Contains(t, out.String(), "(TOKEN: the token you gave --token)")
	assert.NotContains(t, out.String(), "s3cret")

	var frame bytes.Buffer
	top := newRoot()
	top.SetOut(&frame)
	top.SetArgs([]string{"top", "--once", "--token", "s3cret", "--addr", m[1]})
	require.NoError(t, top.Execute())
	t.Logf("slither top --once:\n%s", frame.String())
	for _, want := range []string{"thread ", "process/default ", "textan.analyze", "PIPE text_analysis", "thread/thread-safe"} {
		assert.Contains(t, frame.String(), want)
	}

	cancel()
	require.NoError(t, <-done, out.String())
	assert.Contains(t, out.String(), "ok   every document analyzed once")
	assert.NotContains(t, out.String(), "s3cret")
}
