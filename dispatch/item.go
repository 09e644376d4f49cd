package dispatch

import (
	"context"
	"iter"
	"strconv"
)

// Item is one unit of work: a payload (what Python receives) with a stable
// id, metadata that stays on the Go side, and an optional route tag.
type Item struct {
	// ID identifies the item in results, reports and errors; the wrapping
	// helpers number items "0", "1", ... in input order.
	ID string
	// Payload is the value the Python function receives for this item.
	Payload any
	// Meta is carried along for the caller; Python never sees it.
	Meta map[string]any
	// Route is a tag for routers and partitioning; dispatch ignores it.
	Route string
}

// Wrap turns a sequence of payloads into items numbered from 0. It is lazy:
// payloads are pulled as dispatch needs them.
func Wrap[T any](payloads iter.Seq[T]) iter.Seq[Item] {
	return func(yield func(Item) bool) {
		i := 0
		for p := range payloads {
			if !yield(Item{ID: strconv.Itoa(i), Payload: p}) {
				return
			}
			i++
		}
	}
}

// Slice wraps a slice of payloads into items numbered from 0.
func Slice[T any](payloads []T) iter.Seq[Item] {
	return func(yield func(Item) bool) {
		for i, p := range payloads {
			if !yield(Item{ID: strconv.Itoa(i), Payload: p}) {
				return
			}
		}
	}
}

// Chan wraps a channel of payloads into items numbered from 0; the sequence
// ends when the channel is closed. While it waits for the channel, a run
// reading it cannot stop it: see [Stream], and [ChanContext].
func Chan[T any](payloads <-chan T) iter.Seq[Item] {
	return Wrap(func(yield func(T) bool) {
		for p := range payloads {
			if !yield(p) {
				return
			}
		}
	})
}

// Items returns a sequence over items as they are.
func Items(items ...Item) iter.Seq[Item] {
	return func(yield func(Item) bool) {
		for _, it := range items {
			if !yield(it) {
				return
			}
		}
	}
}

// ChanContext is [Chan] that also ends once ctx is done, even while it
// waits for the channel: give a run the same ctx, and cancelling it ends
// the run promptly however long the channel stays open.
func ChanContext[T any](ctx context.Context, payloads <-chan T) iter.Seq[Item] {
	return Wrap(func(yield func(T) bool) {
		for {
			select {
			case p, ok := <-payloads:
				if !ok || !yield(p) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	})
}
