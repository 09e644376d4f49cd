//go:build cgo

package dispatch_test

import (
	"context"
	"fmt"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/pools/thread"
)

func ExampleRun() {
	ctx := context.Background()
	p, err := thread.New(thread.Options{Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close(ctx)

	ranges := [][]int{{0, 100}, {100, 200}, {200, 300}, {300, 400}, {400, 500}}
	out, err := dispatch.Run(ctx, p, dispatch.Slice(ranges), dispatch.Options{
		Module:   "slither._demo",
		Function: "count_primes",
		Strategy: dispatch.FixedBatch(2),
		OnError:  dispatch.Retry{Attempts: 2, Then: dispatch.Skip{}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	var counts []any
	for _, r := range out.Results {
		counts = append(counts, r.Value)
	}
	fmt.Println(counts...)
	fmt.Println("batches:", out.Report.Batches, "items:", out.Report.Items)
	// Output:
	// 25 21 16 16 17
	// batches: 3 items: 5
}
