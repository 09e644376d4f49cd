package process_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/internal/logbuf"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/process/wire"
	"github.com/slither-go/slither/telemetry"
)

func TestMain(m *testing.M) {
	if os.Getenv(orphanChildEnv) != "" {
		orphanChild()
		return
	}
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

const mod = "proctest"

func testPython() string { return pooltest.Python() }

func opts(workers int) process.Options {
	return process.Options{Workers: workers, Python: testPython(), Paths: []string{abs("testdata")}, Logger: quiet()}
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(discard{}, nil)) }

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func newPool(t testing.TB, o process.Options) *process.Pool {
	t.Helper()
	p, err := process.New(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	return p
}

func batch(fn string, items ...any) pools.Batch {
	return pools.Batch{Module: mod, Function: fn, Items: items}
}

func submit(t testing.TB, p pools.Pool, b pools.Batch) []any {
	t.Helper()
	out, err := p.Submit(context.Background(), b)
	require.NoError(t, err)
	return out
}

func pids(p *process.Pool) []int {
	var out []int
	for _, w := range p.Stats().Workers {
		out = append(out, w.Pid)
	}
	return out
}

func TestRoundTripValues(t *testing.T) {
	p := newPool(t, opts(1))
	assert.Equal(t, pools.KindProcess, p.Kind())
	big1, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	payload := bytes.Repeat([]byte{0, 1, 2, 255}, 1<<18) // 1 MiB, not UTF-8
	items := []any{
		nil, true, false, int64(-7), int64(math.MaxInt64), big1, 2.0, 1e300, math.Inf(1), math.Inf(-1),
		"héllo wörld ✓ \"quoted\" \\ \n\t\x01", payload, []any{int64(1), []any{"a", []byte("b")}},
		map[string]any{"k": int64(1), "nested": map[string]any{"x": []any{}}},
		map[string]any{"$b": int64(0)}, map[string]any{"$f": "nan"}, map[string]any{"$d": []any{}},
	}
	out := submit(t, p, batch("echo", items...))
	require.Len(t, out, len(items))
	for i, want := range items {
		if b, ok := want.(*big.Int); ok {
			assert.Equal(t, 0, b.Cmp(out[i].(*big.Int)), "item %d", i)
			continue
		}
		assert.Equal(t, want, out[i], "item %d", i)
	}
	nan := submit(t, p, batch("echo", math.NaN()))
	assert.True(t, math.IsNaN(nan[0].(float64)))

	kinds := submit(t, p, batch("types", nil, true, 1, 1.5, "s", []byte("b"), []any{}, map[string]any{}, uint64(math.MaxUint64)))
	assert.Equal(t, []any{"NoneType", "bool", "int", "float", "str", "bytes", "list", "dict", "int"}, kinds)
}

func TestConversionErrors(t *testing.T) {
	p := newPool(t, opts(1))
	_, err := p.Submit(context.Background(), batch("echo", make(chan int)))
	assert.ErrorIs(t, err, wire.ErrConversion)
	assert.ErrorIs(t, err, pools.ErrConversion)
	assert.ErrorContains(t, err, "at [0]")
	assert.ErrorContains(t, err, "chan int has no Python mapping")
	_, err = p.Submit(context.Background(), batch("echo", "bad \xff utf-8"))
	assert.ErrorContains(t, err, "string is not valid UTF-8")
	_, err = p.Submit(context.Background(), batch("unmappable", 1))
	assert.ErrorIs(t, err, wire.ErrConversion)
	// The same shape as the thread pool's: "python->go conversion at [0]: ...".
	assert.ErrorContains(t, err, "python->go conversion at [0]: Python type 'object' has no Go mapping")
	assert.Equal(t, []any{"ok"}, submit(t, p, batch("echo", "ok")), "the worker is fine afterwards")
}

func TestErrors(t *testing.T) {
	p := newPool(t, opts(1))
	_, err := p.Submit(context.Background(), batch("fail", 1, 2))
	var pe *pools.PythonError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "ValueError", pe.Type)
	assert.Equal(t, "cannot handle 2 items", pe.Message)
	assert.Contains(t, pe.Traceback, "in fail")
	assert.Contains(t, err.Error(), "pools/process: proctest.fail: python: ValueError: cannot handle 2 items")

	_, err = p.Submit(context.Background(), batch("short", 1, 2, 3))
	assert.ErrorIs(t, err, pools.ErrResultCount)

	_, err = p.Submit(context.Background(), pools.Batch{Module: "no_such_module", Function: "f"})
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "ModuleNotFoundError", pe.Type)

	_, err = p.Submit(context.Background(), pools.Batch{Module: mod})
	assert.ErrorIs(t, err, pools.ErrInvalidBatch)

	_, err = p.Submit(context.Background(), batch("no_session", 1))
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, pe.Message, "this batch has no session")

	st := p.Stats().Totals()
	assert.Equal(t, uint64(4), st.Calls)
	assert.Equal(t, uint64(4), st.Errors)
}

func TestManyGoroutinesExactResults(t *testing.T) {
	p := newPool(t, opts(2))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				out, err := p.Submit(context.Background(), batch("echo", g, i, fmt.Sprintf("%d-%d", g, i)))
				if err == nil && !assert.ObjectsAreEqual([]any{int64(g), int64(i), fmt.Sprintf("%d-%d", g, i)}, out) {
					err = fmt.Errorf("goroutine %d batch %d: got %v", g, i, out)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, uint64(1600), p.Stats().Totals().Calls)
}

func TestContextAndStats(t *testing.T) {
	p := newPool(t, opts(2))
	out := submit(t, p, batch("pid", 1))
	m := out[0].(map[string]any)
	assert.Equal(t, "process", m["pool"])
	assert.Nil(t, m["session"])
	st := p.Stats()
	require.Len(t, st.Workers, 2)
	for _, w := range st.Workers {
		assert.Positive(t, w.Pid)
		assert.Positive(t, w.RSS, "RSS of worker %d", w.ID)
		assert.NotEqual(t, os.Getpid(), w.Pid)
	}
	assert.Contains(t, pids(p), int(m["pid"].(int64)))
	info := p.Interpreter()
	assert.Equal(t, wire.Protocol, info.Protocol)
	assert.NotEmpty(t, info.Version)
}

func TestSegfaultFailsOnlyThatCall(t *testing.T) {
	p := newPool(t, opts(2))
	before := pids(p)
	_, err := p.Submit(context.Background(), batch("segfault", 1))
	require.ErrorIs(t, err, pools.ErrWorkerCrashed)
	var ce *process.CrashError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, syscall.SIGSEGV, ce.Signal)
	assert.Contains(t, before, ce.Pid)
	assert.Contains(t, err.Error(), "signal 11")

	// The other worker keeps serving meanwhile, and the pool gets back to two.
	for i := range 20 {
		assert.Equal(t, []any{int64(i)}, submit(t, p, batch("echo", i)))
	}
	require.Eventually(t, func() bool {
		ps := pids(p)
		return len(ps) == 2 && ps[0] != 0 && ps[1] != 0
	}, 20*time.Second, 10*time.Millisecond)
	after := pids(p)
	assert.NotContains(t, after, ce.Pid)
	assert.Equal(t, uint64(1), p.Stats().Totals().Restarts)
	assert.Equal(t, 2, p.Capacity())
}

func TestKill9MidBatch(t *testing.T) {
	p := newPool(t, opts(1))
	pid := pids(p)[0]
	errc := make(chan error, 1)
	go func() {
		_, err := p.Submit(context.Background(), batch("sleep", 30.0))
		errc <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Running == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	err := <-errc
	var ce *process.CrashError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, syscall.SIGKILL, ce.Signal)
	assert.Equal(t, pid, ce.Pid)
	assert.Equal(t, []any{"back"}, submit(t, p, batch("echo", "back")))
	assert.NotEqual(t, pid, pids(p)[0])
}

func TestHungCallTimesOut(t *testing.T) {
	o := opts(1)
	o.CallTimeout = time.Second
	p := newPool(t, o)
	pid := pids(p)[0]
	start := time.Now()
	_, err := p.Submit(context.Background(), batch("hang", 1))
	require.ErrorIs(t, err, pools.ErrTimeout)
	assert.ErrorIs(t, err, pools.ErrWorkerCrashed, "the worker was killed")
	assert.Contains(t, err.Error(), "timeout")
	assert.GreaterOrEqual(t, time.Since(start), time.Second)
	// A fresh worker serves the next call; calls under the limit are fine.
	assert.Equal(t, []any{0.1}, submit(t, p, batch("sleep", 0.1)))
	assert.NotEqual(t, pid, pids(p)[0])
}

func TestRecycleAfterMaxCalls(t *testing.T) {
	o := opts(1)
	o.MaxCalls = 3
	p := newPool(t, o)
	var seen []int64
	for range 9 {
		out := submit(t, p, batch("pid", 1))
		seen = append(seen, out[0].(map[string]any)["pid"].(int64))
	}
	// Three calls per process, no call failed.
	assert.Equal(t, seen[0], seen[2])
	assert.NotEqual(t, seen[2], seen[3])
	assert.Equal(t, seen[3], seen[5])
	assert.NotEqual(t, seen[5], seen[6])
	assert.Equal(t, seen[6], seen[8])
	st := p.Stats().Totals()
	assert.Zero(t, st.Errors)
	assert.GreaterOrEqual(t, st.Restarts, uint64(2))
}

func TestRecycleAboveMaxRSS(t *testing.T) {
	o := opts(1)
	o.MaxRSSMB = 60
	p := newPool(t, o)
	pid := pids(p)[0]
	submit(t, p, batch("grow", 100))
	require.Eventually(t, func() bool { q := pids(p)[0]; return q != 0 && q != pid }, 20*time.Second, 10*time.Millisecond)
	assert.Equal(t, []any{"ok"}, submit(t, p, batch("echo", "ok")))
}

func TestRestartIntensityFailsPool(t *testing.T) {
	o := opts(1)
	o.MaxRestarts = 2
	o.RestartWindow = time.Minute
	o.RestartBackoff = time.Hour // this test sees the open breaker only
	p := newPool(t, o)
	err := crashUntilBreakerOpens(t, p)
	require.ErrorIs(t, err, pools.ErrPoolFailed)
	assert.Contains(t, err.Error(), "3 worker restarts within 1m0s (limit 2); no worker is started for 1h0m0s")
	_, err = p.Submit(context.Background(), batch("echo", 1))
	assert.ErrorIs(t, err, pools.ErrPoolFailed, "a failed pool fails fast during its back-off")
}

func TestCancelRaisesInPython(t *testing.T) {
	p := newPool(t, opts(1))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := p.Submit(ctx, batch("spin_forever", 1))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool {
		out, err := p.Submit(context.Background(), batch("cancelled_count", 1))
		return err == nil && out[0] == int64(1)
	}, 10*time.Second, 10*time.Millisecond, "Python saw slither.Cancelled and the worker is free")
}

func TestCancelQueuedCall(t *testing.T) {
	p := newPool(t, opts(1))
	go func() { _, _ = p.Submit(context.Background(), batch("sleep", 0.5)) }()
	require.Eventually(t, func() bool { return p.Stats().Running == 1 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Submit(ctx, batch("echo", 1))
		errc <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	assert.Zero(t, p.Stats().Waiting)
}

func TestSessions(t *testing.T) {
	p := newPool(t, opts(2))
	ctx := context.Background()
	a, b := pools.NewSession(ctx, p), pools.NewSession(ctx, p)
	defer a.Close()
	defer b.Close()
	var pidA, pidB int64
	for i := 1; i <= 5; i++ {
		outA, err := a.Submit(ctx, batch("bump", 1))
		require.NoError(t, err)
		outB, err := b.Submit(ctx, batch("bump", 1, 1))
		require.NoError(t, err)
		assert.Equal(t, int64(i), outA[0].([]any)[1], "session a's own count")
		assert.Equal(t, int64(2*i), outB[1].([]any)[1], "session b's own count")
		if i == 1 {
			pidA, pidB = outA[0].([]any)[0].(int64), outB[0].([]any)[0].(int64)
		}
		assert.Equal(t, pidA, outA[0].([]any)[0], "strict affinity")
		assert.Equal(t, pidB, outB[0].([]any)[0], "strict affinity")
	}
	assert.NotEqual(t, pidA, pidB, "two sessions spread over two workers")

	// Closing a frees its state on its worker.
	count := func(s *pools.Session) int64 {
		out, err := s.Submit(ctx, batch("session_count", 1))
		require.NoError(t, err)
		return out[0].(int64)
	}
	c := pools.NewSession(ctx, p) // lands on a's worker or b's: count there
	_, err := c.Submit(ctx, batch("bump", 1))
	require.NoError(t, err)
	before := count(c)
	assert.GreaterOrEqual(t, before, int64(2))
	a.Close()
	b.Close()
	require.Eventually(t, func() bool { return count(c) == before-1 }, 10*time.Second, 10*time.Millisecond)
	c.Close()
}

func TestSessionContextEndCloses(t *testing.T) {
	p := newPool(t, opts(1))
	ctx, cancel := context.WithCancel(context.Background())
	s := pools.NewSession(ctx, p)
	_, err := s.Submit(context.Background(), batch("bump", 1))
	require.NoError(t, err)
	out := submit(t, p, batch("session_count", 1))
	assert.Equal(t, int64(1), out[0])
	cancel()
	require.Eventually(t, func() bool {
		return submit(t, p, batch("session_count", 1))[0] == int64(0)
	}, 10*time.Second, 10*time.Millisecond)
}

func TestSessionLostWhenWorkerDies(t *testing.T) {
	p := newPool(t, opts(2))
	ctx := context.Background()
	s := pools.NewSession(ctx, p)
	defer s.Close()
	out, err := s.Submit(ctx, batch("bump", 1))
	require.NoError(t, err)
	_, err = s.Submit(ctx, batch("segfault", 1))
	require.ErrorIs(t, err, pools.ErrWorkerCrashed)
	require.ErrorIs(t, err, pools.ErrSessionLost, "the batch the worker crashed under lost its session too")
	_, err = s.Submit(ctx, batch("bump", 1))
	require.ErrorIs(t, err, pools.ErrSessionLost)
	assert.Contains(t, err.Error(), fmt.Sprintf("(pid %d)", out[0].([]any)[0]))
	assert.Equal(t, []any{"fine"}, submit(t, p, batch("echo", "fine")), "other calls go on")
}

func TestHostCalls(t *testing.T) {
	o := opts(1)
	var mu sync.Mutex
	var seen []pools.HostCall
	o.Host = func(ctx context.Context, c pools.HostCall) (any, error) {
		mu.Lock()
		seen = append(seen, c)
		mu.Unlock()
		switch c.Name {
		case "add":
			return c.Args[0].(int64) + c.Args[1].(int64), nil
		case "blob":
			return bytes.Repeat([]byte{7}, int(c.Args[0].(int64))), nil
		case "panic":
			panic("boom")
		}
		return nil, fmt.Errorf("no such host function %q", c.Name)
	}
	p := newPool(t, o)
	s := pools.NewSession(context.Background(), p)
	defer s.Close()
	out, err := s.Submit(context.Background(), batch("host", []any{"add", 2, 3}, []any{"nope"}, []any{"blob", 3}, []any{"panic"}))
	require.NoError(t, err)
	assert.Equal(t, int64(5), out[0])
	assert.Equal(t, `error: no such host function "nope"`, out[1])
	assert.Equal(t, []byte{7, 7, 7}, out[2])
	assert.Equal(t, `error: host function for "panic" panicked: boom`, out[3])
	require.Len(t, seen, 4)
	assert.Equal(t, s.ID(), seen[0].Session)
	assert.Equal(t, pids(p)[0], seen[0].Pid)
}

func TestHostCallWithoutHost(t *testing.T) {
	p := newPool(t, opts(1))
	out := submit(t, p, batch("host", []any{"x"}))
	assert.Equal(t, `error: no host function: the pool's Options.Host is nil (called "x")`, out[0])
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	o := opts(1)
	o.Python = "/no/such/python"
	_, err := process.New(ctx, o)
	require.ErrorIs(t, err, process.ErrStart)
	assert.ErrorContains(t, err, "worker 0 (/no/such/python)")
	assert.ErrorContains(t, err, "no such file or directory")

	o = opts(2)
	o.Preload = []string{"json", "no_such_module_xyz"}
	_, err = process.New(ctx, o)
	require.ErrorIs(t, err, process.ErrStart)
	assert.ErrorContains(t, err, "exited before its handshake (exit status 3)")
	assert.ErrorContains(t, err, "ModuleNotFoundError: No module named 'no_such_module_xyz'")

	restore := process.SetWorkerModule("badproto")
	defer restore()
	_, err = process.New(ctx, opts(1))
	require.ErrorIs(t, err, process.ErrStart)
	assert.ErrorContains(t, err, fmt.Sprintf("speaks protocol 99, this pool speaks %d", wire.Protocol))

	_, err = process.New(ctx, process.Options{Workers: -1})
	assert.ErrorContains(t, err, "Options.Workers is -1")
}

func TestWorkerOutputIsLogged(t *testing.T) {
	var buf logbuf.Buffer
	o := opts(1)
	o.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	p := newPool(t, o)
	submit(t, p, batch("shout", "hello"))
	pid := pids(p)[0]
	require.Eventually(t, func() bool {
		return strings.Contains(buf.String(), fmt.Sprintf(`msg="shout: hello" worker=0 pid=%d stream=stderr`, pid))
	}, 10*time.Second, 10*time.Millisecond, buf.String())
}

func TestThreadsPerWorkerRunAtOnce(t *testing.T) {
	o := opts(1)
	o.ThreadsPerWorker = 2
	p := newPool(t, o)
	if !p.Interpreter().FreeThreaded {
		t.Fatalf("%s is not a free-threaded build: threads in one worker cannot run Python at once", testPython())
	}
	assert.Equal(t, 2, p.Capacity())
	name := fmt.Sprintf("meet-%d", time.Now().UnixNano())
	var wg sync.WaitGroup
	res := make([][]any, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = p.Submit(context.Background(), batch("meet", name, 5.0))
		}()
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	assert.Equal(t, res[0][0], res[1][0], "one process")
	assert.NotEqual(t, res[0][1], res[1][1], "two threads")
}

func TestGILBuildInterpreter(t *testing.T) {
	const sys = "/usr/bin/python3"
	if _, err := os.Stat(sys); err != nil {
		t.Fatalf("Debian's %s is expected on this machine: %v", sys, err)
	}
	o := opts(1)
	o.Python = sys
	p := newPool(t, o)
	info := p.Interpreter()
	assert.False(t, info.FreeThreaded)
	assert.True(t, info.GILEnabled)
	assert.Equal(t, []any{"x", int64(1)}, submit(t, p, batch("echo", "x", 1)))
}

func TestCloseDrainsThenStops(t *testing.T) {
	p, err := process.New(context.Background(), opts(1))
	require.NoError(t, err)
	pid := pids(p)[0]
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := p.Submit(context.Background(), batch("sleep", 0.3))
			errc <- err
		}()
	}
	require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, p.Close(context.Background()))
	require.NoError(t, <-errc)
	require.NoError(t, <-errc)
	assert.False(t, alive(pid), "worker %d is gone", pid)
	_, err = p.Submit(context.Background(), batch("echo", 1))
	assert.ErrorIs(t, err, pools.ErrClosed)
	require.NoError(t, p.Close(context.Background()), "idempotent")
}

func TestCloseGivesUpAndKills(t *testing.T) {
	p, err := process.New(context.Background(), opts(1))
	require.NoError(t, err)
	pid := pids(p)[0]
	running := make(chan error, 1)
	go func() {
		_, err := p.Submit(context.Background(), batch("hang", 1))
		running <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Running == 1 }, 10*time.Second, time.Millisecond)
	queued := make(chan error, 1)
	go func() {
		_, err := p.Submit(context.Background(), batch("echo", 1))
		queued <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, p.Close(ctx), context.DeadlineExceeded)
	assert.ErrorIs(t, <-queued, pools.ErrClosed)
	err = <-running
	assert.ErrorIs(t, err, pools.ErrWorkerCrashed)
	assert.ErrorContains(t, err, "pool closed before its calls finished")
	require.NoError(t, p.Close(context.Background()))
	assert.False(t, alive(pid))
}

func TestRecycleAfterMaxAge(t *testing.T) {
	o := opts(1)
	o.MaxAge = time.Nanosecond // every worker is past it after its first call
	p := newPool(t, o)
	var seen []any
	for range 3 {
		seen = append(seen, submit(t, p, batch("pid", 1))[0].(map[string]any)["pid"])
	}
	assert.NotEqual(t, seen[0], seen[1], "recycled after its first call")
	assert.NotEqual(t, seen[1], seen[2])
	assert.Zero(t, p.Stats().Totals().Errors)
}

func TestWorkerEventsAndCallInfo(t *testing.T) {
	bus := telemetry.New(quiet())
	var mu sync.Mutex
	var events []string
	require.NoError(t, bus.Attach("test", func(ev telemetry.Event, m telemetry.Measurements, md telemetry.Metadata) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf("%s worker=%v", ev, md["worker"]))
	}, "pool.worker.*"))
	o := opts(1)
	o.Telemetry = bus
	p := newPool(t, o)

	var ci pools.CallInfo
	out, err := p.Submit(pools.WithCallInfo(context.Background(), &ci), batch("pid", 1))
	require.NoError(t, err)
	assert.Equal(t, out[0].(map[string]any)["pid"], int64(ci.Pid))
	assert.Equal(t, 0, ci.Worker)
	assert.Positive(t, ci.Service, "the time the worker spent on the batch")

	_, err = p.Submit(context.Background(), batch("segfault", 1))
	require.ErrorIs(t, err, pools.ErrWorkerCrashed)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) >= 4
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{
		"pool.worker.start worker=0", "pool.worker.exit worker=0",
		"pool.worker.restart worker=0", "pool.worker.start worker=0",
	}, events[:4])
}

// crashUntilBreakerOpens crashes p's worker (each crash fails its call with
// ErrWorkerCrashed) until a call fails with ErrPoolFailed, at most 10
// times, and returns the last call's error.
func crashUntilBreakerOpens(t *testing.T, p *process.Pool) error {
	t.Helper()
	var err error
	for range 10 {
		_, err = p.Submit(context.Background(), batch("segfault", 1))
		if errors.Is(err, pools.ErrPoolFailed) {
			break
		}
		require.ErrorIs(t, err, pools.ErrWorkerCrashed)
	}
	return err
}
