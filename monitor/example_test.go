package monitor_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// upperPool runs batches in Go (it upper-cases strings): it stands in for
// a Python pool so that the example runs anywhere.
type upperPool struct{}

func (upperPool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if ci := pools.CallInfoFrom(ctx); ci != nil {
		ci.Pool = "upper" // as every pool does: the pool label of the batch metrics
	}
	out := make([]any, len(b.Items))
	for i, it := range b.Items {
		out[i] = strings.ToUpper(it.(string))
	}
	return out, nil
}
func (upperPool) Capacity() int { return 1 }
func (upperPool) Stats() pools.Stats {
	return pools.Stats{Name: "upper", Kind: "go", Workers: []pools.WorkerStats{{ID: 0, State: pools.WorkerIdle}}}
}
func (upperPool) Kind() pools.Kind                { return "go" }
func (upperPool) CloseSession(string)             {}
func (upperPool) Close(ctx context.Context) error { return nil }

// A monitor on a bus that a dispatch reports to; its handler, mounted at
// the root of a server, serves the metrics (and the dashboard at
// /debug/slither/, the JSON state at /debug/slither/state).
func ExampleMonitor_Handler() {
	ctx := context.Background()
	bus := telemetry.New(nil)
	pool := upperPool{}
	m, err := monitor.New(monitor.Options{Bus: bus, Pools: func() []pools.Pool { return []pools.Pool{pool} }})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	_, err = dispatch.Run(ctx, pool, dispatch.Slice([]string{"a", "b", "c"}), dispatch.Options{
		Module: "text", Function: "upper", Name: "shout", Telemetry: bus, Strategy: dispatch.FixedBatch(2)})
	if err != nil {
		fmt.Println(err)
		return
	}

	mux := http.NewServeMux()
	mux.Handle("/", m.Handler(monitor.HandlerOptions{})) // loopback clients only: no token
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "slither_dispatch_batches_total") || strings.HasPrefix(line, `slither_dispatch_items_total{dispatch="shout",outcome="ok"}`) ||
			strings.HasPrefix(line, "slither_pool_capacity") {
			fmt.Println(line)
		}
	}
	fmt.Println("in flight:", m.State().Totals.InFlight)
	// Output:
	// slither_dispatch_batches_total{dispatch="shout",outcome="cancelled",pool="upper"} 0
	// slither_dispatch_batches_total{dispatch="shout",outcome="failed",pool="upper"} 0
	// slither_dispatch_batches_total{dispatch="shout",outcome="ok",pool="upper"} 2
	// slither_dispatch_items_total{dispatch="shout",outcome="ok"} 3
	// slither_pool_capacity{kind="go",pool="upper"} 1
	// in flight: 0
}
