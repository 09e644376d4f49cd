//go:build cgo

package main

import (
	"context"
	"fmt"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/pools/thread"
)

// embedded describes the interpreter this binary embeds, timing calls
// no-op calls through a one-worker thread pool.
func embedded(ctx context.Context, calls int) capacity.Embedded {
	p, err := thread.New(thread.Options{Workers: 1})
	if err != nil {
		return capacity.Embedded{Reason: fmt.Sprintf("the embedded interpreter does not start: %v", err)}
	}
	defer p.Close(context.Background())
	e, err := p.Describe(ctx, calls)
	if err != nil {
		e.Reason = fmt.Sprintf("calls through the embedded pool fail: %v", err)
		e.Available = false
	}
	return e
}
