package telemetry_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/logbuf"
	"github.com/slither-go/slither/telemetry"
)

func TestAttachDetachAndPatterns(t *testing.T) {
	b := telemetry.New(nil)
	var got []string
	record := func(tag string) telemetry.Handler {
		return func(ev telemetry.Event, m telemetry.Measurements, md telemetry.Metadata) {
			got = append(got, tag+":"+string(ev))
		}
	}
	require.NoError(t, b.Attach("all", record("all")))
	require.NoError(t, b.Attach("dispatch", record("d"), "dispatch.*"))
	require.NoError(t, b.Attach("exact", record("x"), telemetry.PoolWorkerExit))
	assert.ErrorContains(t, b.Attach("all", record("again")), `a handler named "all" is already attached`)
	assert.Error(t, b.Attach("", record("")))

	b.Emit(telemetry.DispatchBatchStart, telemetry.Measurements{Items: 3}, nil)
	b.Emit(telemetry.PoolWorkerExit, telemetry.Measurements{}, nil)
	b.Emit(telemetry.StoreWrite, telemetry.Measurements{}, nil)
	assert.Equal(t, []string{
		"all:dispatch.batch.start", "d:dispatch.batch.start",
		"all:pool.worker.exit", "x:pool.worker.exit",
		"all:store.write",
	}, got)
	assert.Equal(t, []string{"all", "dispatch", "exact"}, b.Handlers())

	assert.True(t, b.Detach("dispatch"))
	assert.False(t, b.Detach("dispatch"))
	got = nil
	b.Emit(telemetry.DispatchBatchStop, telemetry.Measurements{}, nil)
	assert.Equal(t, []string{"all:dispatch.batch.stop"}, got)
}

func TestPanickingHandlerIsDetachedAndLogged(t *testing.T) {
	var logs bytes.Buffer
	b := telemetry.New(slog.New(slog.NewTextHandler(&logs, nil)))
	calls := 0
	require.NoError(t, b.Attach("bad", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) { panic("boom") }))
	require.NoError(t, b.Attach("good", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) { calls++ }))
	assert.NotPanics(t, func() { b.Emit(telemetry.StoreWrite, telemetry.Measurements{}, nil) })
	b.Emit(telemetry.StoreWrite, telemetry.Measurements{}, nil)
	assert.Equal(t, 2, calls, "the other handler still ran, both times")
	assert.Equal(t, []string{"good"}, b.Handlers())
	assert.Contains(t, logs.String(), "handler panicked and was detached")
	assert.Contains(t, logs.String(), "handler=bad")
	assert.Contains(t, logs.String(), "panic=boom")
}

// TestHandlerPanickingEverywhereIsReportedOnce: a handler that panics on
// two goroutines at once is logged and detached once, and a handler since
// attached under the same name is not the one detached.
func TestHandlerPanickingEverywhereIsReportedOnce(t *testing.T) {
	var logs logbuf.Buffer
	b := telemetry.New(slog.New(slog.NewTextHandler(&logs, nil)))
	var inside sync.WaitGroup
	inside.Add(2)
	require.NoError(t, b.Attach("bad", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) {
		inside.Done()
		inside.Wait() // both emitters are in the handler before either panics
		panic("boom")
	}))
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NotPanics(t, func() { b.Emit(telemetry.StoreWrite, telemetry.Measurements{}, nil) })
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, strings.Count(logs.String(), "handler panicked and was detached"), logs.String())
	assert.Empty(t, b.Handlers())

	// A handler that replaces itself under its own name, then panics: the
	// replacement stays.
	calls := 0
	require.NoError(t, b.Attach("self", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) {
		b.Detach("self")
		require.NoError(t, b.Attach("self", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) { calls++ }))
		panic("replaced")
	}))
	b.Emit(telemetry.StoreWrite, telemetry.Measurements{}, nil)
	b.Emit(telemetry.StoreWrite, telemetry.Measurements{}, nil)
	assert.Equal(t, []string{"self"}, b.Handlers())
	assert.Equal(t, 1, calls, "the replacement runs")
}

func TestNilBusDropsEvents(t *testing.T) {
	var b *telemetry.Bus
	assert.NotPanics(t, func() { b.Emit(telemetry.StoreWrite, telemetry.Measurements{}, nil) })
	assert.Nil(t, b.Handlers())
}

func TestConcurrentEmitAndAttach(t *testing.T) {
	b := telemetry.New(nil)
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := string(rune('a' + i))
			for range 200 {
				_ = b.Attach(name, func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) {
					mu.Lock()
					n++
					mu.Unlock()
				})
				b.Emit(telemetry.StoreWrite, telemetry.Measurements{}, nil)
				b.Detach(name)
			}
		}()
	}
	wg.Wait()
	assert.Empty(t, b.Handlers())
	assert.Positive(t, n)
}

func TestMetrics(t *testing.T) {
	b := telemetry.New(nil)
	m := telemetry.NewMetrics()
	require.NoError(t, m.Attach(b))
	busy := 1
	m.Probe("thread", func() (int, int) { return busy, 4 })
	b.Emit(telemetry.DispatchBatchQueued, telemetry.Measurements{Items: 10}, nil)
	b.Emit(telemetry.DispatchBatchQueued, telemetry.Measurements{Items: 5}, nil)
	b.Emit(telemetry.DispatchBatchStart, telemetry.Measurements{Items: 10}, nil)
	b.Emit(telemetry.DispatchBatchRetry, telemetry.Measurements{}, nil)
	b.Emit(telemetry.RouterDecision, telemetry.Measurements{}, telemetry.Metadata{"route": "process"})
	s := m.Snapshot()
	assert.Equal(t, int64(1), s.InFlightBatches)
	assert.Equal(t, int64(5), s.QueuedItems)
	assert.Equal(t, int64(1), s.Retries)
	assert.Equal(t, map[string]int64{"process": 1}, s.Routes)
	assert.Equal(t, telemetry.PoolSnapshot{Busy: 1, Capacity: 4, Saturation: 0.25}, s.Pools["thread"])
	b.Emit(telemetry.DispatchBatchStop, telemetry.Measurements{Items: 10}, nil)
	s = m.Snapshot()
	assert.Zero(t, s.InFlightBatches)
	assert.Equal(t, int64(1), s.CompletedBatches)
	m.Probe("thread", nil)
	assert.Empty(t, m.Snapshot().Pools)
}

// Retried items wait again and are taken off when they start again: the
// queue never goes negative, however often a batch is retried or bisected.
func TestMetricsQueueAcrossRetries(t *testing.T) {
	b := telemetry.New(nil)
	m := telemetry.NewMetrics()
	require.NoError(t, m.Attach(b))
	b.Emit(telemetry.DispatchBatchQueued, telemetry.Measurements{Items: 8}, nil)
	b.Emit(telemetry.DispatchBatchStart, telemetry.Measurements{Items: 8}, nil)
	b.Emit(telemetry.DispatchBatchException, telemetry.Measurements{Items: 8}, nil)
	for range 2 { // bisected: two halves retried
		b.Emit(telemetry.DispatchBatchRetry, telemetry.Measurements{Items: 4}, nil)
	}
	assert.Equal(t, int64(8), m.Snapshot().QueuedItems)
	for range 2 {
		b.Emit(telemetry.DispatchBatchStart, telemetry.Measurements{Items: 4}, nil)
		b.Emit(telemetry.DispatchBatchStop, telemetry.Measurements{Items: 4}, nil)
	}
	s := m.Snapshot()
	assert.Zero(t, s.QueuedItems)
	assert.Zero(t, s.InFlightBatches)
	assert.Equal(t, int64(2), s.Retries)
}
