package process_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// workerEvents collects a pool's pool.worker.* events for a test to wait on.
type workerEvents chan telemetry.Metadata

func newWorkerEvents(t *testing.T) (*telemetry.Bus, workerEvents) {
	bus := telemetry.New(quiet())
	ch := make(workerEvents, 1024)
	require.NoError(t, bus.Attach("test", func(ev telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		m := telemetry.Metadata{"event": string(ev)}
		for k, v := range md {
			m[k] = v
		}
		ch <- m
	}, "pool.worker.*"))
	return bus, ch
}

// next waits for the next event named ev (and, with probe, a breaker's
// start attempt), skipping others.
func (ch workerEvents) next(t *testing.T, ev telemetry.Event, probe bool) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case m := <-ch:
			if m["event"] == string(ev) && (!probe || m["probe"] == true) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event (probe %v) within a minute", ev, probe)
		}
	}
}

// Past the restart intensity the pool fails fast, then tries one start
// after a back-off: a failed try backs off longer, a good one resumes
// service.
func TestBreakerBacksOffThenRecovers(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate") // while it exists, workers fail to start
	bus, events := newWorkerEvents(t)
	o := opts(1)
	o.Preload = []string{"proctest_gate"}
	o.Env = []string{"PROCTEST_GATE=" + gate}
	o.MaxRestarts = 1
	o.RestartWindow = time.Hour
	o.RestartBackoff = 20 * time.Millisecond
	o.Telemetry = bus
	p := newPool(t, o)
	events.next(t, telemetry.PoolWorkerStart, false) // the first worker's
	ctx := context.Background()
	crash := func() {
		t.Helper()
		_, err := p.Submit(ctx, batch("segfault", 1))
		require.ErrorIs(t, err, pools.ErrWorkerCrashed)
	}

	crash()                                          // one restart: allowed
	events.next(t, telemetry.PoolWorkerStart, false) // its replacement's
	require.NoError(t, os.WriteFile(gate, nil, 0o600))
	crash() // the second opens the breaker
	_, err := p.Submit(ctx, batch("echo", 1))
	require.ErrorIs(t, err, pools.ErrPoolFailed)
	assert.ErrorContains(t, err, "2 worker restarts within 1h0m0s (limit 1); no worker is started for 20ms")

	// Two tries fail; after the first, calls say the back-off grew.
	events.next(t, telemetry.PoolWorkerRestart, true)
	events.next(t, telemetry.PoolWorkerRestart, true)
	_, err = p.Submit(ctx, batch("echo", 1))
	require.ErrorIs(t, err, pools.ErrPoolFailed)
	assert.ErrorContains(t, err, "a worker start after the back-off failed; the next attempt is in")
	assert.NotContains(t, err.Error(), "attempt is in 20ms")

	require.NoError(t, os.Remove(gate))
	events.next(t, telemetry.PoolWorkerStart, false)
	require.Eventually(t, func() bool {
		out, err := p.Submit(ctx, batch("echo", "back"))
		return err == nil && out[0] == "back"
	}, time.Minute, time.Millisecond, "the pool serves again once a start succeeded")
}

// A call's timeout is the caller's slow call, not a crash: any number of
// them leaves the pool serving.
func TestTimeoutsDoNotFailThePool(t *testing.T) {
	o := opts(1)
	o.CallTimeout = 700 * time.Millisecond
	o.MaxRestarts = 1
	o.RestartWindow = time.Hour
	o.RestartBackoff = time.Hour
	p := newPool(t, o)
	for range 3 {
		_, err := p.Submit(context.Background(), batch("hang", 1))
		require.ErrorIs(t, err, pools.ErrTimeout)
		require.NotErrorIs(t, err, pools.ErrPoolFailed)
	}
	assert.Equal(t, []any{"ok"}, submit(t, p, batch("echo", "ok")))
	assert.Equal(t, uint64(3), p.Stats().Totals().Restarts)
}

// Review 1, item 5: a worker that dies under a call is never taken for
// one recycled because that call also made it due (MaxCalls here): its
// crash counts, so a crash loop opens the breaker.
func TestCrashesCountWhenRecyclingIsDue(t *testing.T) {
	o := opts(1)
	o.MaxCalls = 1 // every call makes its worker due
	o.MaxRestarts = 2
	o.RestartWindow = time.Hour
	o.RestartBackoff = time.Hour // this test sees the open breaker only
	p := newPool(t, o)
	err := crashUntilBreakerOpens(t, p)
	require.ErrorIs(t, err, pools.ErrPoolFailed, "three crashes within the window open the breaker")
	assert.Contains(t, err.Error(), "3 worker restarts within 1h0m0s (limit 2)")
}

// Review 1, item 6: the half-open probe closes the breaker only after a
// start succeeded. When the workers missing are all being started already
// (here: a restart begun before the breaker opened, held in its preload),
// it waits for those starts instead of closing the breaker on nothing.
func TestBreakerProbeWaitsForStartsUnderWay(t *testing.T) {
	hold := filepath.Join(t.TempDir(), "hold") // while it exists, worker starts wait for the test
	bus, events := newWorkerEvents(t)
	decisions := make(chan string, 16)
	o := opts(1)
	o.Preload = []string{"proctest_hold"}
	o.Env = []string{"PROCTEST_HOLD=" + hold}
	o.Telemetry = bus
	o.Logger = slog.New(recordHandler{func(r slog.Record) {
		if strings.Contains(r.Message, "probe waits") || strings.Contains(r.Message, "serving again") {
			decisions <- r.Message
		}
	}})
	p := newPool(t, o)
	events.next(t, telemetry.PoolWorkerStart, false)
	ctx := context.Background()
	next := func() string {
		t.Helper()
		select {
		case d := <-decisions:
			return d
		case <-time.After(time.Minute):
			t.Fatal("the breaker's probe decided nothing within a minute")
			return ""
		}
	}

	require.NoError(t, syscall.Mkfifo(hold, 0o600))
	require.NoError(t, syscall.Kill(pids(p)[0], syscall.SIGKILL))
	events.next(t, telemetry.PoolWorkerRestart, false) // its replacement is being started, and will wait at the hold
	// Open the breaker now, as restarts past the limit would while that
	// start is under way; its probe is due at once.
	p.OpenBreaker(time.Millisecond, "test: restarts past the limit")
	require.Contains(t, next(), "probe waits", "no start has succeeded: the probe must not close the breaker")
	_, err := p.Submit(ctx, batch("echo", 1))
	require.ErrorIs(t, err, pools.ErrPoolFailed, "the breaker is still open")

	// Let the held start finish: it succeeds, and that closes the breaker.
	f, err := os.OpenFile(hold, os.O_WRONLY, 0) // meets the worker's open for reading
	require.NoError(t, err)
	require.NoError(t, os.Remove(hold))
	require.NoError(t, f.Close())
	require.Contains(t, next(), "serving again")
	assert.Equal(t, []any{"back"}, submit(t, p, batch("echo", "back")))
}
