package process_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
)

// Review 1, item 2: a host function blocked on its context holds up
// neither a timeout nor a crash, with one thread per worker (where host
// calls run on the worker's reader) or more: its context ends when the
// worker is killed or dies, with a cause that says which, and the call
// fails as it would without the host call.
func TestBlockedHostFunctionEndsWithItsWorker(t *testing.T) {
	for _, threads := range []int{1, 2} {
		for _, end := range []string{"timeout", "kill"} {
			t.Run(fmt.Sprintf("threads=%d/%s", threads, end), func(t *testing.T) {
				blocked := make(chan int, 1)
				causes := make(chan error, 1)
				o := opts(1)
				o.ThreadsPerWorker = threads
				if end == "timeout" {
					o.CallTimeout = 2 * time.Second
				}
				o.Host = func(ctx context.Context, c pools.HostCall) (any, error) {
					if c.Name != "block" {
						return nil, nil
					}
					blocked <- c.Pid
					<-ctx.Done()
					causes <- context.Cause(ctx)
					return nil, ctx.Err()
				}
				p := newPool(t, o)
				// Bounds the test on a pool that never ends the host
				// function's context (which then ends with this one).
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				submit(t, p, batch("host", []any{"warm up"})) // the module is imported: the next call's host call comes at once

				errc := make(chan error, 1)
				go func() {
					_, err := p.Submit(ctx, batch("host", []any{"block"}))
					errc <- err
				}()
				var pid int
				select {
				case pid = <-blocked:
				case err := <-errc:
					t.Fatalf("the call ended before its host call: %v", err)
				}
				want := pools.ErrTimeout
				if end == "kill" {
					want = pools.ErrWorkerCrashed
					require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
				}
				err := <-errc
				require.ErrorIs(t, err, want)
				require.NotErrorIs(t, err, context.DeadlineExceeded, "the call failed by itself, not by the test's bound")
				cause := <-causes
				assert.ErrorIs(t, cause, want, "the host function's context says why it ended")
				assert.ErrorContains(t, cause, fmt.Sprintf("(pid %d)", pid))
				assert.Equal(t, []any{"next"}, submit(t, p, batch("echo", "next")), "a new worker serves")
			})
		}
	}
}
