package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/store"
	"github.com/slither-go/slither/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

func open(t testing.TB, def store.Definition) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), def)
	require.NoError(t, err)
	return s
}

func TestReadsAndWrites(t *testing.T) {
	bus := telemetry.New(nil)
	var writes atomic.Int64
	require.NoError(t, bus.Attach("w", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) { writes.Add(1) }, telemetry.StoreWrite))
	ctx := context.Background()
	s := open(t, store.Definition{
		Name:      "cfg",
		Tables:    []store.TableSpec{{Name: "kv"}, {Name: "tags", Kind: store.Bag}},
		Telemetry: bus,
		Load: func(ctx context.Context, w *store.Loader) error {
			return w.Put("kv", "a", int64(1))
		},
	})
	v, ok, err := s.Get("kv", "a")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, int64(1), v)

	require.NoError(t, s.Put(ctx, "kv", "b", "two"))
	require.NoError(t, s.BulkInsert(ctx, "kv", []store.Entry{{"c", 3.0}, {"d", nil}}))
	require.NoError(t, s.Delete(ctx, "kv", "d"))
	n, err := s.Size("kv")
	require.NoError(t, err)
	assert.Equal(t, 3, n)

	got, err := s.Select("kv", func(k string, v any) bool { return k != "b" })
	require.NoError(t, err)
	assert.Equal(t, []store.Entry{{"a", int64(1)}, {"c", 3.0}}, got)
	keys, err := store.Fold(s.Snapshot(), "kv", 0, func(acc int, k string, v any) int { return acc + len(k) })
	require.NoError(t, err)
	assert.Equal(t, 3, keys)

	nv, err := s.Update(ctx, "kv", "a", func(old any, found bool) (any, error) { return old.(int64) + 41, nil })
	require.NoError(t, err)
	assert.Equal(t, int64(42), nv)
	_, err = s.Update(ctx, "kv", "a", func(any, bool) (any, error) { return nil, errors.New("no") })
	assert.ErrorContains(t, err, `store cfg: update of kv["a"]: no`)
	v, _, _ = s.Get("kv", "a")
	assert.Equal(t, int64(42), v, "a failed update changes nothing")

	require.NoError(t, s.Put(ctx, "tags", "x", "red"))
	require.NoError(t, s.Put(ctx, "tags", "x", "blue"))
	v, _, _ = s.Get("tags", "x")
	assert.Equal(t, []any{"red", "blue"}, v)

	_, _, err = s.Get("nope", "a")
	assert.ErrorIs(t, err, store.ErrNoTable)
	assert.ErrorContains(t, err, `store cfg has no table "nope" (tables: [kv tags])`)
	assert.ErrorIs(t, s.Put(ctx, "nope", "a", 1), store.ErrNoTable)
	assert.Equal(t, int64(6), writes.Load(), "one store.write per successful write")

	s.Close()
	assert.ErrorIs(t, s.Put(ctx, "kv", "z", 1), store.ErrClosed)
	v, _, _ = s.Get("kv", "a")
	assert.Equal(t, int64(42), v, "reads still work after Close")
}

func TestOpenAndReloadErrors(t *testing.T) {
	_, err := store.Open(context.Background(), store.Definition{Name: "x", Tables: []store.TableSpec{{Name: "t"}, {Name: "t"}}})
	assert.ErrorContains(t, err, `table "t" is declared twice`)
	_, err = store.Open(context.Background(), store.Definition{Name: "x", Load: func(context.Context, *store.Loader) error { return errors.New("db down") }})
	assert.ErrorContains(t, err, "store x: loader: db down")

	fail := false
	s := open(t, store.Definition{Name: "x", Tables: []store.TableSpec{{Name: "t"}}, Load: func(ctx context.Context, w *store.Loader) error {
		if fail {
			_ = w.Put("t", "half", 1)
			return errors.New("disk full")
		}
		return w.Put("t", "old", 1)
	}})
	fail = true
	assert.ErrorContains(t, s.Reload(context.Background()), "disk full")
	_, ok, _ := s.Get("t", "old")
	assert.True(t, ok, "a failing loader leaves the old tables")
	_, ok, _ = s.Get("t", "half")
	assert.False(t, ok, "nothing of the failed load shows")
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	s := open(t, store.Definition{Name: "c", Tables: []store.TableSpec{{Name: "n"}}})
	ctx := context.Background()
	const writers, each = 16, 100_000 / 16
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var reads atomic.Int64
	for range 4 { // readers run all along, lock-free
		readers.Add(1)
		go func() {
			defer readers.Done()
			last := int64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, ok, err := s.Get("n", "count")
				if err != nil || (ok && v.(int64) < last) {
					t.Errorf("reader saw %v after %d (%v)", v, last, err)
					return
				}
				if ok {
					last = v.(int64)
				}
				reads.Add(1)
			}
		}()
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				_, err := s.Update(ctx, "n", "count", func(old any, found bool) (any, error) {
					if !found {
						return int64(1), nil
					}
					return old.(int64) + 1, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	v, _, _ := s.Get("n", "count")
	assert.Equal(t, int64(writers*each), v, "no lost update in %d concurrent increments", writers*each)
	assert.Positive(t, reads.Load())
}

func TestReloadIsAtomic(t *testing.T) {
	const keys = 200
	var gen atomic.Int64
	s := open(t, store.Definition{
		Name:   "r",
		Tables: []store.TableSpec{{Name: "a"}, {Name: "b"}},
		Load: func(ctx context.Context, w *store.Loader) error {
			g := gen.Add(1)
			for i := range keys {
				if err := w.Put("a", fmt.Sprint(i), g); err != nil {
					return err
				}
				if i%50 == 0 {
					time.Sleep(100 * time.Microsecond) // a slow loader widens any window
				}
				if err := w.Put("b", fmt.Sprint(i), g); err != nil {
					return err
				}
			}
			return nil
		},
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var checks atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sn := s.Snapshot()
				na, _ := sn.Size("a")
				nb, _ := sn.Size("b")
				if na != keys || nb != keys {
					t.Errorf("half-loaded tables: %d and %d keys, want %d", na, nb, keys)
					return
				}
				first, _, _ := sn.Get("a", "0")
				for _, tbl := range []string{"a", "b"} {
					for k, v := range sn.All(tbl) {
						if v != first {
							t.Errorf("table %s key %s is from generation %v, table a key 0 from %v", tbl, k, v, first)
							return
						}
					}
				}
				checks.Add(1)
			}
		}()
	}
	for range 30 {
		require.NoError(t, s.Reload(context.Background()))
	}
	close(stop)
	wg.Wait()
	assert.Equal(t, int64(31), gen.Load())
	assert.Positive(t, checks.Load())
}

func TestRegistryScopesAndErrors(t *testing.T) {
	ctx := context.Background()
	bus := telemetry.New(nil)
	var mu sync.Mutex
	var events []telemetry.Event
	require.NoError(t, bus.Attach("v", func(ev telemetry.Event, _ telemetry.Measurements, _ telemetry.Metadata) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}, "bridge.view.*"))
	s := open(t, store.Definition{
		Name:   "kv",
		Tables: []store.TableSpec{{Name: "t"}},
		Load:   func(ctx context.Context, w *store.Loader) error { return w.Put("t", "k", "v") },
		Views: []store.View{{Name: "get", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
			key, err := c.String("key")
			if err != nil {
				return nil, err
			}
			v, _, err := c.Store.Get("t", key)
			return v, err
		}}},
	})
	reg := store.NewRegistry(bus)
	require.NoError(t, reg.AddStore(s))
	assert.ErrorContains(t, reg.AddStore(s), `a view named "get" is already registered`)

	v, err := reg.Call(ctx, "get", map[string]any{"key": "k"}, "")
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	_, err = reg.Call(ctx, "get", map[string]any{"key": 3}, "")
	assert.ErrorContains(t, err, `view get: argument "key": want a str, got int`)

	remove, err := reg.RegisterSession("s1", nil, store.View{Name: "mine", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
		return "session " + c.Session, nil
	}})
	require.NoError(t, err)
	v, err = reg.Call(ctx, "mine", nil, "s1")
	require.NoError(t, err)
	assert.Equal(t, "session s1", v)
	_, err = reg.Call(ctx, "mine", nil, "s2")
	assert.ErrorIs(t, err, store.ErrNoView)
	assert.ErrorContains(t, err, `"mine" is a view of another session, out of scope here`)
	remove()
	_, err = reg.Call(ctx, "mine", nil, "s1")
	assert.ErrorContains(t, err, `no such view: "mine" (global views: [get]`)

	_, err = reg.RegisterSession("s1", nil, store.View{Name: "slow", Timeout: 20 * time.Millisecond,
		Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}})
	require.NoError(t, err)
	_, err = reg.Call(ctx, "slow", nil, "s1")
	assert.ErrorIs(t, err, store.ErrViewTimeout)
	assert.ErrorContains(t, err, "view slow: store: view timed out after 20ms")

	_, err = reg.HostCall(ctx, "other", nil, "")
	assert.ErrorContains(t, err, `no host function "other"`)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 8, len(events), "a start and a stop per call that found its view")
}

// TestPanickingCallbacksAreErrors: a loader, an Update function or a view
// handler that panics fails its call with an error naming it (matching
// safecall.ErrPanic); the store keeps its tables and its write lock works.
func TestPanickingCallbacksAreErrors(t *testing.T) {
	ctx := context.Background()
	_, err := store.Open(ctx, store.Definition{Name: "p", Load: func(context.Context, *store.Loader) error { panic("boom") }})
	assert.ErrorIs(t, err, safecall.ErrPanic)
	assert.EqualError(t, err, "store p: loader panicked: boom")

	loads := 0
	s := open(t, store.Definition{Name: "p", Tables: []store.TableSpec{{Name: "t"}},
		Load: func(ctx context.Context, w *store.Loader) error {
			loads++
			if loads > 1 {
				var m map[string]int
				m["x"] = 1 // a runtime panic
			}
			return w.Put("t", "k", int64(1))
		},
		Views: []store.View{
			{Name: "boom", Fn: func(context.Context, store.ViewCall) (any, error) { panic("view boom") }},
			{Name: "slow_boom", Timeout: time.Minute, Fn: func(context.Context, store.ViewCall) (any, error) { panic("later") }},
		}})
	err = s.Reload(ctx)
	assert.ErrorIs(t, err, safecall.ErrPanic)
	assert.ErrorContains(t, err, "store p: loader panicked: assignment to entry in nil map")
	v, _, err := s.Get("t", "k")
	require.NoError(t, err)
	assert.Equal(t, int64(1), v, "the old tables stay")

	_, err = s.Update(ctx, "t", "k", func(any, bool) (any, error) { panic("no") })
	assert.ErrorIs(t, err, safecall.ErrPanic)
	assert.EqualError(t, err, `store p: update of t["k"]: update function panicked: no`)
	require.NoError(t, s.Put(ctx, "t", "k", int64(2)), "the write lock was released")
	v, _, _ = s.Get("t", "k")
	assert.Equal(t, int64(2), v)

	reg := store.NewRegistry(nil)
	require.NoError(t, reg.AddStore(s))
	_, err = reg.Call(ctx, "boom", nil, "")
	assert.ErrorIs(t, err, safecall.ErrPanic)
	assert.EqualError(t, err, "view boom: handler panicked: view boom")
	_, err = reg.Call(ctx, "slow_boom", nil, "")
	assert.ErrorIs(t, err, safecall.ErrPanic)
	assert.EqualError(t, err, "view slow_boom: handler panicked: later")
}

// TestHostCallNeedsAStrViewName: a view name that is not a str is an
// error, never the view named "".
func TestHostCallNeedsAStrViewName(t *testing.T) {
	reg := store.NewRegistry(nil)
	remove, err := reg.RegisterSession("s", nil, store.View{Name: "v", Fn: func(context.Context, store.ViewCall) (any, error) { return 1, nil }})
	require.NoError(t, err)
	defer remove()
	ctx := context.Background()
	_, err = reg.HostCall(ctx, "slither.view", []any{int64(5), map[string]any{}}, "s")
	assert.EqualError(t, err, "slither.view(name, **args): the view's name must be a str, got int")
	_, err = reg.HostCall(ctx, "slither.view", []any{nil, map[string]any{}}, "s")
	assert.EqualError(t, err, "slither.view(name, **args): the view's name must be a str, got None")
	_, err = reg.HostCall(ctx, "slither.view", []any{"v", []any{}}, "s")
	assert.EqualError(t, err, `slither.view("v", **args): the arguments must be a dict, got list`)
	v, err := reg.HostCall(ctx, "slither.view", []any{"v", map[string]any{}}, "s")
	require.NoError(t, err)
	assert.Equal(t, 1, v)
}
