package process_test

import (
	"context"
	"iter"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
)

// chaosSettings reads SLITHER_CHAOS_DURATION (how long workers are killed,
// a Go duration; default 3s) and SLITHER_CHAOS_KILLS (how many kills in
// that time; default 6). `make chaos` sets a longer run.
func chaosSettings(t *testing.T) (time.Duration, int) {
	d, kills := 3*time.Second, 6
	if s := os.Getenv("SLITHER_CHAOS_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		require.NoError(t, err, "SLITHER_CHAOS_DURATION")
		d = v
	}
	if s := os.Getenv("SLITHER_CHAOS_KILLS"); s != "" {
		v, err := strconv.Atoi(s)
		require.NoError(t, err, "SLITHER_CHAOS_KILLS")
		kills = v
	}
	require.Positive(t, d)
	require.Positive(t, kills)
	return d, kills
}

// TestChaosKill9Workers runs a dispatch with Retry over three workers while
// a goroutine kills random workers with SIGKILL: the run succeeds, and
// every item has exactly one result, the right one.
func TestChaosKill9Workers(t *testing.T) {
	duration, kills := chaosSettings(t)
	o := opts(3)
	o.MaxRestarts = kills + 10 // every kill is a crash: the breaker must not open
	o.RestartWindow = duration + time.Minute
	o.CallTimeout = 5 * time.Minute // its timer races with crashes (run with -race)
	p := newPool(t, o)

	killed := make(chan struct{})
	var done int
	go func() {
		defer close(killed)
		tick := time.NewTicker(duration / time.Duration(kills))
		defer tick.Stop()
		for done < kills {
			<-tick.C
			var live []int
			for _, w := range p.Stats().Workers {
				if w.Pid != 0 {
					live = append(live, w.Pid)
				}
			}
			if len(live) == 0 {
				continue
			}
			if syscall.Kill(live[rand.IntN(len(live))], syscall.SIGKILL) == nil {
				done++
			}
		}
	}()
	// Items keep coming until the last kill, and a few hundred after it.
	items := func(yield func(int) bool) {
		for i := 0; ; i++ {
			select {
			case <-killed:
				for j := i; j < i+300; j++ {
					if !yield(j) {
						return
					}
				}
				return
			default:
			}
			if !yield(i) {
				return
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+5*time.Minute)
	defer cancel()
	out, err := dispatch.Run(ctx, p, dispatch.Wrap(iter.Seq[int](items)), dispatch.Options{
		Module: mod, Function: "chaos", Strategy: dispatch.FixedBatch(8),
		OnError: dispatch.Retry{Attempts: 10 * kills, Backoff: time.Millisecond},
	})
	<-killed
	require.NoError(t, err)
	assert.Equal(t, kills, done)
	seen := map[string]bool{}
	for _, r := range out.Results {
		require.False(t, seen[r.Item.ID], "item %s has one result", r.Item.ID)
		seen[r.Item.ID] = true
		x := int64(r.Item.Payload.(int))
		require.Equal(t, x*x+7, r.Value, "item %s", r.Item.ID)
	}
	assert.Len(t, seen, out.Report.Items, "every item read has a result")
	assert.Positive(t, out.Report.Retries, "kills landed mid-batch")
	t.Logf("%d items, %d batches, %d retries, %d kills in %v", out.Report.Items, out.Report.Batches, out.Report.Retries, done, out.Report.Duration)
}
