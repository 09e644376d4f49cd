//go:build cgo

package thread_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

const mod = "threadtest"

// modes are the pool's modes: the tests of behaviour they share run in
// both.
var modes = []thread.Mode{thread.Direct, thread.Dedicated}

// eachMode runs f as a subtest per mode.
func eachMode(t *testing.T, f func(t *testing.T, mode thread.Mode)) {
	t.Helper()
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) { f(t, m) })
	}
}

func newPool(t testing.TB, mode thread.Mode, workers int) *thread.Pool {
	t.Helper()
	p, err := thread.New(thread.Options{Mode: mode, Workers: workers, Paths: []string{"testdata"}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

func batch(fn string, items ...any) pools.Batch {
	return pools.Batch{Module: mod, Function: fn, Items: items}
}

// exec runs Python on the interpreter's main thread (not a pool worker).
func execPy(t testing.TB, p *thread.Pool, src string) {
	t.Helper()
	require.NoError(t, p.Runtime().Exec(src))
}

func TestSubmitReturnsResultsInOrder(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 2)
		assert.Equal(t, pools.KindThread, p.Kind())
		assert.Equal(t, 2, p.Capacity())
		out, err := p.Submit(context.Background(), batch("echo", "a", int64(2), 3.5, nil, []byte("b")))
		require.NoError(t, err)
		assert.Equal(t, []any{"a", int64(2), 3.5, nil, []byte("b")}, out)

		out, err = p.Submit(context.Background(), pools.Batch{Module: mod, Function: "echo"})
		require.NoError(t, err)
		assert.Empty(t, out, "an empty batch returns no results")
	})
}

func TestEightGoroutinesThousandBatches(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 4)
		const goroutines, batches = 8, 1000
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range batches {
					items := []any{[]any{g, i}, []any{g, i + 1}, []any{g, -i}}
					out, err := p.Submit(context.Background(), batch("tagged", items...))
					if err != nil {
						errs <- err
						return
					}
					want := []any{
						fmt.Sprintf("%d:%d:%d", g, i, i*i),
						fmt.Sprintf("%d:%d:%d", g, i+1, (i+1)*(i+1)),
						fmt.Sprintf("%d:%d:%d", g, -i, i*i),
					}
					if !assert.ObjectsAreEqual(want, out) {
						errs <- fmt.Errorf("goroutine %d batch %d: got %v, want %v", g, i, out, want)
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
		tot := p.Stats().Totals()
		assert.Equal(t, uint64(goroutines*batches), tot.Calls)
		assert.Equal(t, uint64(goroutines*batches*3), tot.Items)
		assert.Zero(t, tot.Errors)
		assert.Positive(t, tot.Busy)
	})
}

// TestTwoWorkersRunAtOnce proves parallelism structurally: the Python
// function returns only if two calls are inside it at the same moment,
// spinning in bytecode (see threadtest.meet). It cannot pass with the GIL
// on, and says so when it fails.
func TestTwoWorkersRunAtOnce(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 2)
		gil := p.Runtime().GILEnabled()
		// A long switch interval: a GIL build would never hand over the GIL
		// while one call spins. Free-threaded builds ignore it.
		execPy(t, p, "import sys; _old_switch = sys.getswitchinterval(); sys.setswitchinterval(60)")
		defer execPy(t, p, "import sys; sys.setswitchinterval(_old_switch)")

		name := fmt.Sprintf("meet-%d", time.Now().UnixNano())
		var wg sync.WaitGroup
		results := make([][]any, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = p.Submit(context.Background(), batch("meet", name, 5.0))
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				if gil {
					t.Fatalf("the GIL is enabled in this interpreter, so two workers cannot run Python at once: %v", err)
				}
				t.Fatalf("two workers did not run Python at once although the GIL is off: %v", err)
			}
		}
		w0 := results[0][0].(map[string]any)["worker"]
		w1 := results[1][0].(map[string]any)["worker"]
		assert.NotEqual(t, w0, w1, "the two calls ran on different workers")
		assert.Equal(t, false, results[0][0].(map[string]any)["gil"])
	})
}

// TestParallelismReportsGIL runs TestTwoWorkersRunAtOnce in a child process
// whose interpreter has the GIL forced on (PYTHON_GIL=1), and checks that it
// fails and says why.
func TestParallelismReportsGIL(t *testing.T) {
	if os.Getenv("SLITHER_TEST_CHILD") != "" {
		t.Skip("running as the child of TestParallelismReportsGIL")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTwoWorkersRunAtOnce$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PYTHON_GIL=1", "SLITHER_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the test must fail with the GIL on; output:\n%s", out)
	assert.Contains(t, string(out), "the GIL is enabled in this interpreter, so two workers cannot run Python at once")
	assert.Contains(t, string(out), "never ran Python bytecode at the same time (GIL enabled: True)")
}

func TestContextAndStatsAgree(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 3)
		const n = 60
		var mu sync.Mutex
		perWorker := map[int64]uint64{}
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				session := fmt.Sprintf("s%d", i%4)
				if i%5 == 0 {
					session = ""
				}
				out, err := p.Submit(context.Background(), pools.Batch{Module: mod, Function: "context", Items: []any{i, i}, Session: session})
				if !assert.NoError(t, err) {
					return
				}
				require.Len(t, out, 2)
				for k, r := range out {
					m := r.(map[string]any)
					assert.Equal(t, "thread", m["pool"])
					assert.Equal(t, session, m["session"], "session of batch %d", i)
					assert.Equal(t, int64(i), m["item"])
					if k == 0 {
						mu.Lock()
						perWorker[m["worker"].(int64)]++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		st := p.Stats()
		require.Len(t, st.Workers, 3)
		var total uint64
		for _, w := range st.Workers {
			assert.Equal(t, perWorker[int64(w.ID)], w.Calls, "worker %d: calls Python saw vs stats", w.ID)
			assert.Equal(t, 2*w.Calls, w.Items)
			total += w.Calls
		}
		assert.Equal(t, uint64(n), total)
		assert.Zero(t, st.Waiting)
	})
}

func TestErrors(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 1)
		ctx := context.Background()

		_, err := p.Submit(ctx, batch("short", 1, 2, 3))
		var rc *pools.ResultCountError
		require.ErrorAs(t, err, &rc)
		assert.Equal(t, pools.ResultCountError{Module: mod, Function: "short", Items: 3, Results: 2}, *rc)
		assert.ErrorIs(t, err, pools.ErrResultCount)
		assert.Contains(t, err.Error(), "threadtest.short returned 2 results for 3 items")

		_, err = p.Submit(ctx, batch("fail", 1, 2))
		var pe *pools.PythonError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "ValueError", pe.Type)
		var exc *cpython.Exception
		require.ErrorAs(t, err, &exc)
		assert.Equal(t, "ValueError", exc.Type)
		assert.Equal(t, "cannot handle 2 items", exc.Message)
		assert.Contains(t, exc.Traceback, "in fail")
		assert.Contains(t, err.Error(), "pools/thread: threadtest.fail: python: ValueError")

		_, err = p.Submit(ctx, batch("echo", make(chan int)))
		assert.ErrorIs(t, err, cpython.ErrConversion)
		assert.ErrorIs(t, err, pools.ErrConversion)

		_, err = p.Submit(ctx, pools.Batch{Function: "f"})
		assert.ErrorIs(t, err, pools.ErrInvalidBatch)
		_, err = p.Submit(ctx, pools.Batch{Module: "m"})
		assert.ErrorIs(t, err, pools.ErrInvalidBatch)
		assert.ErrorContains(t, err, "empty function name for module m")

		tot := p.Stats().Totals()
		assert.Equal(t, uint64(3), tot.Calls, "invalid batches never reach a worker")
		assert.Equal(t, uint64(3), tot.Errors)

		// The worker is still fine.
		out, err := p.Submit(ctx, batch("echo", "ok"))
		require.NoError(t, err)
		assert.Equal(t, []any{"ok"}, out)

		_, err = thread.New(thread.Options{Mode: mode, Workers: -1})
		assert.ErrorContains(t, err, "Options.Workers is -1")
		_, err = thread.New(thread.Options{Mode: 7})
		assert.ErrorContains(t, err, "Options.Mode is Mode(7); it must be Direct or Dedicated")
	})
}

func ExamplePool() {
	p, err := thread.New(thread.Options{Workers: 2, Paths: []string{"testdata"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close(context.Background())
	out, err := p.Submit(context.Background(), pools.Batch{Module: "threadtest", Function: "cpu", Items: []any{10, 100}})
	fmt.Println(out, err)
	// Output: [69 5291] <nil>
}

func TestSessionsPinToOneWorkerWithOwnState(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 2)
		ctx := context.Background()
		base, err := p.Submit(ctx, batch("session_count", 1))
		require.NoError(t, err)
		a, b := pools.NewSession(ctx, p), pools.NewSession(ctx, p)
		var wg sync.WaitGroup
		for _, s := range []*pools.Session{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var worker any
				for i := 1; i <= 50; i++ {
					out, err := s.Submit(ctx, batch("bump", 1))
					if !assert.NoError(t, err) {
						return
					}
					pair := out[0].([]any)
					assert.Equal(t, int64(i), pair[1], "session %s counts only its own calls", s.ID())
					if i == 1 {
						worker = pair[0]
					}
					assert.Equal(t, worker, pair[0], "session %s stays on one worker", s.ID())
				}
			}()
		}
		wg.Wait()
		count := func() int64 {
			out, err := p.Submit(ctx, batch("session_count", 1))
			require.NoError(t, err)
			return out[0].(int64)
		}
		assert.Equal(t, base[0].(int64)+2, count())
		a.Close()
		everyWorkerRan(t, p) // each drops what it holds of a before taking a batch
		assert.Equal(t, base[0].(int64)+1, count(), "closing a session frees its state")
		b.Close()
		b.Close() // idempotent
		everyWorkerRan(t, p)
		assert.Equal(t, base[0].(int64), count())
	})
}

func TestWorkerEvents(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		bus := telemetry.New(nil)
		var mu sync.Mutex
		var got []string
		require.NoError(t, bus.Attach("t", func(ev telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
			mu.Lock()
			got = append(got, fmt.Sprintf("%s %v %v/%v %v", ev, md["worker"], md["pool"], md["kind"], md["class"]))
			mu.Unlock()
		}))
		p, err := thread.New(thread.Options{Mode: mode, Workers: 2, Telemetry: bus})
		require.NoError(t, err)
		var ci pools.CallInfo
		_, err = p.Submit(pools.WithCallInfo(context.Background(), &ci), pools.Batch{Module: "slither._demo", Function: "count_primes"})
		require.NoError(t, err)
		assert.Contains(t, []int{0, 1}, ci.Worker)
		assert.Equal(t, os.Getpid(), ci.Pid)
		assert.Equal(t, "thread", ci.Pool)
		require.NoError(t, p.Close(context.Background()))
		mu.Lock()
		defer mu.Unlock()
		assert.ElementsMatch(t, []string{"pool.worker.start 0 thread/thread <nil>", "pool.worker.start 1 thread/thread <nil>",
			"pool.worker.exit 0 thread/thread closed", "pool.worker.exit 1 thread/thread closed"}, got)
	})
}
