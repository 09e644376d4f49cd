//go:build cgo

package dispatch_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
)

// TestRunOwnsItsInputReader is the dispatch half of defect 1: a run read
// its input on a goroutine nobody waited for, so after the loop ended the
// input could still be running (and, in a pipe, send on a channel its
// stage had closed). Now the loop ends only once the input has returned.
// The input below waits after its first item until the consumer has broken
// out; the old code ended the loop at once, with the input still waiting.
func TestRunOwnsItsInputReader(t *testing.T) {
	p := threadPool(t, 1)
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(1)
	for range 20 {
		waiting, gate, inputDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
		items := func(yield func(dispatch.Item) bool) {
			defer close(inputDone)
			if !yield(dispatch.Item{ID: "0", Payload: 0}) {
				return
			}
			close(waiting)
			<-gate
			yield(dispatch.Item{ID: "1", Payload: 1})
		}
		broke, loopDone := make(chan struct{}), make(chan bool)
		go func() {
			for _, err := range dispatch.Stream(context.Background(), p, items, o).Results() {
				assert.NoError(t, err)
				close(broke)
				break
			}
			select {
			case <-inputDone:
				loopDone <- true
			default:
				loopDone <- false // the loop ended while the input still ran
			}
		}()
		<-broke
		<-waiting
		close(gate)
		require.True(t, <-loopDone, "the run's loop ended before its input's goroutine")
	}
}

// TestCancelReleasesAnInputThatWatchesCtx: an input that waits for a
// channel nobody closes does not hold a cancelled run when it watches the
// run's context (ChanContext), whether the loop goes on to the error or
// breaks out.
func TestCancelReleasesAnInputThatWatchesCtx(t *testing.T) {
	p := threadPool(t, 1)
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(1)
	for _, brk := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan int) // never closed
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			ch <- 0
			ch <- 1
		}()
		n := 0
		var err error
		for r, e := range dispatch.Stream(ctx, p, dispatch.ChanContext(ctx, ch), o).Results() {
			if e != nil {
				err = e
				break
			}
			assert.Equal(t, int64(n*n), r.Value)
			if n++; n == 2 { // the input now waits on ch
				cancel()
				if brk {
					break
				}
			}
		}
		if !brk {
			require.ErrorIs(t, err, context.Canceled)
		}
		assert.Equal(t, 2, n)
		<-sent
		cancel()
	}
}

func TestChanContextEndsWithTheChannel(t *testing.T) {
	ch := make(chan string, 2)
	ch <- "a"
	ch <- "b"
	close(ch)
	var got []dispatch.Item
	for it := range dispatch.ChanContext(context.Background(), ch) {
		got = append(got, it)
	}
	assert.Equal(t, []dispatch.Item{{ID: "0", Payload: "a"}, {ID: "1", Payload: "b"}}, got)
}
