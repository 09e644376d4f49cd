//go:build cgo

package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/store"
)

// host adapts a registry to the pools, as the engine does.
func host(reg *store.Registry) pools.HostFunc {
	return func(ctx context.Context, c pools.HostCall) (any, error) {
		return reg.HostCall(ctx, c.Name, c.Args, c.Session)
	}
}

// kvStore has a table of 1000 keys, a "get" view, an "incr" view (a
// read-modify-write through Update), a "fail" view and a slow one.
func kvStore(t testing.TB) *store.Store {
	t.Helper()
	return open(t, store.Definition{
		Name:   "kv",
		Tables: []store.TableSpec{{Name: "data"}, {Name: "counters"}},
		Load: func(ctx context.Context, w *store.Loader) error {
			for i := range 1000 {
				if err := w.Put("data", fmt.Sprintf("k%d", i), int64(i)); err != nil {
					return err
				}
			}
			return nil
		},
		Views: []store.View{
			{Name: "get", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
				key, err := c.String("key")
				if err != nil {
					return nil, err
				}
				v, _, err := c.Store.Get("data", key)
				return v, err
			}},
			{Name: "incr", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
				key, err := c.String("key")
				if err != nil {
					return nil, err
				}
				return c.Store.Update(ctx, "counters", key, func(old any, ok bool) (any, error) {
					n, _ := old.(int64)
					return n + 1, nil
				})
			}},
			{Name: "fail", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
				return nil, errors.New("the database said no")
			}},
			{Name: "slow", Timeout: 50 * time.Millisecond, Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}},
		},
	})
}

func bothPools(t testing.TB, reg *store.Registry, workers int) map[string]pools.Pool {
	t.Helper()
	th, err := thread.New(thread.Options{Workers: workers, Paths: []string{"testdata"}, Host: host(reg)})
	require.NoError(t, err)
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	pr, err := process.New(context.Background(), process.Options{Workers: workers, Python: pooltest.Python(),
		Paths: []string{abs}, Host: host(reg), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, th.Close(context.Background()))
		require.NoError(t, pr.Close(context.Background()))
	})
	return map[string]pools.Pool{"thread": th, "process": pr}
}

func TestViewsFromBothPools(t *testing.T) {
	s := kvStore(t)
	reg := store.NewRegistry(nil)
	require.NoError(t, reg.AddStore(s))
	for name, p := range bothPools(t, reg, 2) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			sess := pools.NewSession(ctx, p)
			defer sess.Close()
			remove, err := reg.RegisterSession(sess.ID(), s, store.View{Name: "whoami", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
				return "session " + c.Session, nil
			}})
			require.NoError(t, err)
			defer remove()

			items := []any{
				[]any{"get", map[string]any{"key": "k7"}},
				[]any{"whoami", map[string]any{}},
				[]any{"fail", map[string]any{}},
				[]any{"slow", map[string]any{}},
				[]any{"nope", map[string]any{}},
				[]any{"get", map[string]any{"key": 7}},
			}
			out, err := sess.Submit(ctx, pools.Batch{Module: "storetest", Function: "views", Items: items})
			require.NoError(t, err)
			assert.Equal(t, int64(7), out[0], "global view")
			assert.Equal(t, "session "+sess.ID(), out[1], "session view, in its session")
			assert.Equal(t, "error: view fail: the database said no", out[2], "the Go error's text as slither.ViewError")
			assert.Equal(t, "error: view slow: store: view timed out after 50ms", out[3])
			assert.Contains(t, out[4], `error: store: no such view: "nope" (global views: [fail get incr slow]; session `+sess.ID()+`: [whoami])`)
			assert.Equal(t, `error: view get: argument "key": want a str, got int64`, out[5])

			// A name that is not a str is an error, the same in both pools.
			out, err = sess.Submit(ctx, pools.Batch{Module: "storetest", Function: "host_views", Items: []any{
				[]any{int64(5), map[string]any{}}, []any{"get", []any{1}}, []any{"get", map[string]any{"key": "k8"}}}})
			require.NoError(t, err)
			assert.Equal(t, []any{
				"error: slither.view(name, **args): the view's name must be a str, got int",
				`error: slither.view("get", **args): the arguments must be a dict, got list`,
				int64(8),
			}, out)

			out, err = sess.Submit(ctx, pools.Batch{Module: "storetest", Function: "view_name_errors", Items: []any{int64(5), nil}})
			require.NoError(t, err)
			const typeErr = "TypeError: slither.view(name, **args): pass the view's name (a str) by position and its arguments by keyword"
			assert.Equal(t, []any{typeErr, typeErr}, out, "the same exception in both pools")

			// Another batch outside the session cannot see the session view.
			out, err = p.Submit(ctx, pools.Batch{Module: "storetest", Function: "views", Items: []any{[]any{"whoami", map[string]any{}}}})
			require.NoError(t, err)
			assert.Contains(t, out[0], `"whoami" is a view of another session, out of scope here`)
		})
	}
}

func TestViewIncrementsLoseNothingFromBothPools(t *testing.T) {
	s := kvStore(t)
	reg := store.NewRegistry(nil)
	require.NoError(t, reg.AddStore(s))
	ps := bothPools(t, reg, 2)
	var wg sync.WaitGroup
	for _, p := range ps {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := p.Submit(context.Background(), pools.Batch{Module: "storetest", Function: "incr_view", Items: []any{500}})
				assert.NoError(t, err)
			}()
		}
	}
	wg.Wait()
	v, _, err := s.Get("counters", "c")
	require.NoError(t, err)
	assert.Equal(t, int64(2000), v, "four Python workers in two pools, 500 increments each")
}
