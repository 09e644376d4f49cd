package main

// End-to-end tests of remote pools: an embedded NATS server (JetStream on,
// store in a temporary directory) in the test process, an engine with a
// remote pool as the coordinator, and real `slither node` processes: the
// test binary re-executes itself as this CLI (remoteChildEnv), so each node
// runs main() -> `slither node` exactly as the installed command does.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/logbuf"
	"github.com/slither-go/slither/internal/storetest"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// remoteChildEnv makes the test binary run main() instead of the tests.
const remoteChildEnv = "SLITHER_E2E_MAIN"

// cluster is an embedded NATS server and the nodes started against it.
type cluster struct {
	t     testing.TB
	srv   *natsdev.Server
	js    jetstream.JetStream
	nodes []*nodeProc
}

func newCluster(t testing.TB, o natsdev.Options, auth ...nats.Option) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("remote end-to-end tests start NATS and node processes; -short skips them")
	}
	c := &cluster{t: t, srv: natsdevtest.Start(t, o)}
	nc, err := nats.Connect(c.srv.URL(), auth...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// nodeProc is one `slither node` child process.
type nodeProc struct {
	id   string
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
	err  error         // Wait's
	out  *logbuf.Buffer
}

// nodeConfig writes a node's YAML: a process pool "work" with the given
// settings (e.g. "{workers: 2}"), no embedded pool, importing testdata,
// plus extra lines.
func nodeConfig(t testing.TB, work, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf("thread: {disabled: true}\nprocess:\n  work: %s\npaths: [%q]\n%s", work, testdataDir(t), extra)
	path := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func testdataDir(t testing.TB) string {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return td
}

// startNode starts `slither node` with config and waits until its advert
// is in the nodes bucket.
func (c *cluster) startNode(ctx context.Context, config string, args ...string) *nodeProc {
	t := c.t
	t.Helper()
	id := fmt.Sprintf("e2e-%d-%d", len(c.nodes), time.Now().UnixNano()%1e6)
	cmd := exec.Command(os.Args[0], append([]string{"node", "--nats", c.srv.URL(), "--config", config, "--id", id}, args...)...)
	cmd.Env = append(os.Environ(), remoteChildEnv+"=1")
	n := &nodeProc{id: id, cmd: cmd, done: make(chan struct{}), out: &logbuf.Buffer{}}
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.err = cmd.Wait(); close(n.done) }()
	c.nodes = append(c.nodes, n)
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("node %s output:\n%s", id, n.out.String())
		}
	})
	for {
		nodes, _ := remote.ReadNodes(ctx, c.js)
		for _, a := range nodes {
			if a.Node == id {
				return n
			}
		}
		select {
		case <-n.done:
			t.Fatalf("node %s exited before advertising itself: %v\n%s", id, n.err, n.out.String())
		case <-ctx.Done():
			t.Fatalf("node %s did not advertise itself: %v\n%s", id, ctx.Err(), n.out.String())
		case <-time.After(20 * time.Millisecond): // polling the bucket: there is no event for "advertised"
		}
	}
}

// startNodes starts n nodes with config.
func (c *cluster) startNodes(ctx context.Context, n int, config string) {
	c.t.Helper()
	for range n {
		c.startNode(ctx, config)
	}
}

// kill sends SIGKILL (no drain, no goodbye) and reaps the process.
func (n *nodeProc) kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

// term sends SIGTERM and waits for the node to drain and exit.
func (n *nodeProc) term(ctx context.Context) error {
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-n.done:
		return n.err
	case <-ctx.Done():
		return fmt.Errorf("node %s did not exit after SIGTERM: %w", n.id, ctx.Err())
	}
}

// coordinator starts an engine whose remote pool "work" the nodes serve.
func (c *cluster) coordinator(ctx context.Context, rc engine.RemoteConfig, mod func(*engine.Config)) *engine.Engine {
	t := c.t
	t.Helper()
	cfg := engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"local": {Workers: 1}},
		NATS:    remote.ConnOptions{URL: c.srv.URL()},
		Remote:  map[string]engine.RemoteConfig{"work": rc},
		Paths:   []string{testdataDir(t)},
	}
	if mod != nil {
		mod(&cfg)
	}
	eng, err := engine.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := eng.Close(cctx); err != nil {
			t.Errorf("closing the coordinator: %v", err)
		}
	})
	return eng
}

func e2eCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ints yields n items with payloads 0..n-1 (ids "0".."n-1").
func ints(n int) func(yield func(dispatch.Item) bool) {
	return func(yield func(dispatch.Item) bool) {
		for i := range n {
			if !yield(dispatch.Item{ID: fmt.Sprint(i), Payload: i}) {
				return
			}
		}
	}
}

// exactlyOnce checks that results hold ids 0..n-1 once each with value 2*id.
func exactlyOnce(t testing.TB, results []dispatch.Result, n int) {
	t.Helper()
	seen := make([]bool, n)
	for _, r := range results {
		var i int
		if _, err := fmt.Sscan(r.Item.ID, &i); err != nil || i < 0 || i >= n {
			t.Fatalf("result for unknown item %q", r.Item.ID)
		}
		if seen[i] {
			t.Fatalf("item %d has two results", i)
		}
		seen[i] = true
		if v, ok := r.Value.(int64); !ok || v != int64(2*i) {
			t.Fatalf("item %d: result %#v, want %d", i, r.Value, 2*i)
		}
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("item %d has no result (%d results of %d)", i, len(results), n)
		}
	}
}

func TestRemoteDispatchAcrossNodes(t *testing.T) {
	ctx := e2eCtx(t, 3*time.Minute)
	c := newCluster(t, natsdev.Options{})
	cfg := nodeConfig(t, "{workers: 2}", "")
	c.startNodes(ctx, 3, cfg)
	eng := c.coordinator(ctx, engine.RemoteConfig{WaitNodes: 3, MaxPayload: 8 << 20}, func(cfg *engine.Config) {
		cfg.Stores = append(cfg.Stores, storetest.Prices())
	})
	p, err := eng.Pool("work")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Capacity(); got != 6 {
		t.Fatalf("capacity %d, want 6 (3 nodes x 2 workers)", got)
	}
	run := func(o dispatch.Options, n int) (*dispatch.Output, error) {
		o.Module = "remote_e2e"
		if o.Function == "" {
			o.Function = "double"
		}
		if o.Strategy == nil {
			o.Strategy = dispatch.FixedBatch(20)
		}
		return eng.Dispatch(ctx, ints(n), engine.DispatchOptions{Options: o, Pool: "work"})
	}

	t.Run("preserve", func(t *testing.T) {
		out, err := run(dispatch.Options{}, 5000)
		if err != nil {
			t.Fatal(err)
		}
		exactlyOnce(t, out.Results, 5000)
		for i, r := range out.Results {
			if r.Item.ID != fmt.Sprint(i) {
				t.Fatalf("result %d is item %s: Preserve ordering broken", i, r.Item.ID)
			}
		}
		busy := 0
		for _, w := range p.Stats().Workers {
			if w.Calls > 0 {
				busy++
			}
		}
		if busy != 3 {
			t.Fatalf("%d of 3 nodes ran batches: %+v", busy, p.Stats().Workers)
		}
	})
	t.Run("as-completed", func(t *testing.T) {
		out, err := run(dispatch.Options{Ordering: dispatch.AsCompleted}, 3000)
		if err != nil {
			t.Fatal(err)
		}
		exactlyOnce(t, out.Results, 3000)
	})
	t.Run("skip", func(t *testing.T) {
		// Batches of 20 over 0..999: those holding 100, 200, ..., 900 fail.
		out, err := run(dispatch.Options{Function: "fail_hundreds", OnError: dispatch.Skip{}}, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if out.Report.SkippedBatches != 9 || out.Report.SkippedItems != 180 || len(out.Results) != 820 {
			t.Fatalf("report %+v, %d results", out.Report, len(out.Results))
		}
	})
	t.Run("halt", func(t *testing.T) {
		_, err := run(dispatch.Options{Function: "fail_hundreds"}, 1000)
		var pe *pools.PythonError
		if !errors.As(err, &pe) || pe.Type != "ValueError" || !strings.Contains(pe.Message, "no hundreds") {
			t.Fatalf("halt: %v", err)
		}
	})
	t.Run("route-failed-items", func(t *testing.T) {
		out, err := run(dispatch.Options{Function: "fail_odd_items",
			OnError: dispatch.Route(func(dispatch.Item, error) string { return "odd" })}, 200)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Results) != 100 || len(out.Buckets["odd"]) != 100 {
			t.Fatalf("%d results, %d routed", len(out.Results), len(out.Buckets["odd"]))
		}
		for _, r := range out.Buckets["odd"] {
			if !strings.Contains(r.Err.Error(), "odd "+r.Item.ID) {
				t.Fatalf("routed item %s: %v", r.Item.ID, r.Err)
			}
		}
	})
	t.Run("session", func(t *testing.T) {
		s, err := eng.Session(ctx, "work")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var pid any
		for i := 1; i <= 5; i++ {
			res, err := s.Submit(ctx, batch("count", 1, 2))
			if err != nil {
				t.Fatal(err)
			}
			got := res[0].([]any)
			if got[0] != int64(2*i) {
				t.Fatalf("session count after %d batches: %v (state not kept on one node)", i, got)
			}
			if pid != nil && got[1] != pid {
				t.Fatalf("session moved from pid %v to %v", pid, got[1])
			}
			pid = got[1]
		}
	})
	t.Run("large-payload", func(t *testing.T) {
		// 3 MiB each way through a server whose max payload is 1 MiB: the
		// object store carries it, transparently.
		big := bytes.Repeat([]byte("slither"), 3<<20/7)
		res, err := p.Submit(ctx, batch("noop", big, "small"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res[0].([]byte), big) || res[1] != "small" {
			t.Fatalf("a 3 MiB item came back as %d bytes", len(res[0].([]byte)))
		}
		// Over the pool's max_payload (8 MiB here): a clear error, and the
		// pool goes on.
		_, err = p.Submit(ctx, batch("noop", bytes.Repeat([]byte{1}, 9<<20)))
		if !errors.Is(err, remote.ErrPayloadTooLarge) {
			t.Fatalf("a 9 MiB batch over an 8 MiB limit: %v", err)
		}
		if _, err := p.Submit(ctx, batch("double", 21)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("view", func(t *testing.T) {
		res, err := p.Submit(ctx, batch("price", "A1", "A1"))
		if err != nil {
			t.Fatal(err)
		}
		if res[0] != 9.5 || res[1] != 9.5 {
			t.Fatalf("view from a node: %v", res)
		}
		_, err = p.Submit(ctx, batch("missing_view", "A1"))
		if err == nil || !strings.Contains(err.Error(), "ViewError") {
			t.Fatalf("a failing view: %v", err)
		}
	})
}

func TestRemoteNodeKilledMidRun(t *testing.T) {
	ctx := e2eCtx(t, 5*time.Minute)
	c := newCluster(t, natsdev.Options{})
	// The batch holding item 25000 hangs on the first node that takes it,
	// after naming that node in hang: the test kills that node mid-run,
	// holding that lease and whatever else it runs.
	hang := filepath.Join(t.TempDir(), "hang")
	cfg := nodeConfig(t, fmt.Sprintf("{workers: 2, env: [%q]}", "E2E_HANG_FILE="+hang), "")
	c.startNodes(ctx, 3, cfg)
	eng := c.coordinator(ctx, engine.RemoteConfig{WaitNodes: 3, AckWait: 2 * time.Second}, nil)
	killed := make(chan *nodeProc, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			b, err := os.ReadFile(hang)
			if err == nil {
				for _, n := range c.nodes {
					if fmt.Sprint(n.cmd.Process.Pid) == string(b) {
						n.kill()
						killed <- n
						return
					}
				}
				t.Errorf("the hanging batch names pid %s, no node's", b)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond): // polling for the file
			}
		}
	})
	const n = 100_000
	st, err := eng.Stream(ctx, ints(n), engine.DispatchOptions{Pool: "work", Options: dispatch.Options{
		Module: "remote_e2e", Function: "double_hang_once", Strategy: dispatch.FixedBatch(100),
		OnError: dispatch.Retry{Attempts: 3}, Ordering: dispatch.AsCompleted,
	}})
	if err != nil {
		t.Fatal(err)
	}
	var results []dispatch.Result
	for r, err := range st.Results() {
		if err != nil {
			t.Fatalf("after %d results: %v", len(results), err)
		}
		results = append(results, r)
	}
	exactlyOnce(t, results, n)
	select {
	case victim := <-killed:
		t.Logf("killed node %s mid-run", victim.id)
	default:
		t.Fatal("the run ended without a node being killed")
	}
	p, _ := eng.Pool("work")
	rp := p.(*remote.Pool)
	if rp.Redelivered() == 0 {
		t.Fatalf("no batch was redelivered after a node died holding leases (stats %+v)", p.Stats())
	}
	t.Logf("%d batches redelivered after the kill", rp.Redelivered())
}

func TestRemoteRunSurvivesNATSRestart(t *testing.T) {
	ctx := e2eCtx(t, 4*time.Minute)
	c := newCluster(t, natsdev.Options{})
	cfg := nodeConfig(t, "{workers: 2}", "")
	c.startNodes(ctx, 2, cfg)
	eng := c.coordinator(ctx, engine.RemoteConfig{WaitNodes: 2, AckWait: 2 * time.Second}, nil)
	const n = 20_000
	st, err := eng.Stream(ctx, ints(n), engine.DispatchOptions{Pool: "work", Options: dispatch.Options{
		Module: "remote_e2e", Function: "slow_double", Strategy: dispatch.FixedBatch(50),
		OnError: dispatch.Retry{Attempts: 5, Backoff: 100 * time.Millisecond}, Ordering: dispatch.AsCompleted,
	}})
	if err != nil {
		t.Fatal(err)
	}
	var results []dispatch.Result
	restarted := false
	for r, err := range st.Results() {
		if err != nil {
			t.Fatalf("after %d results: %v", len(results), err)
		}
		results = append(results, r)
		if !restarted && len(results) >= n/4 {
			if err := c.srv.Restart(); err != nil {
				t.Fatal(err)
			}
			restarted = true
		}
	}
	exactlyOnce(t, results, n)
	// After the restart the nodes still advertise themselves (the bucket
	// is on file storage), the engine still sees them, and sessions work.
	nodes, err := remote.ReadNodes(ctx, c.js)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("after the restart: %d node adverts, %v", len(nodes), err)
	}
	p, _ := eng.Pool("work")
	if got := len(p.(*remote.Pool).Nodes()); got != 2 {
		t.Fatalf("the engine sees %d nodes after the restart", got)
	}
	s, err := eng.Session(ctx, "work")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= 3; i++ {
		res, err := s.Submit(ctx, batch("count", 0))
		if err != nil || res[0].([]any)[0] != int64(i) {
			t.Fatalf("session batch %d after the restart: %v, %v", i, res, err)
		}
	}
}

func TestRemoteBackpressure(t *testing.T) {
	ctx := e2eCtx(t, 3*time.Minute)
	c := newCluster(t, natsdev.Options{})
	c.startNode(ctx, nodeConfig(t, "{workers: 1}", ""))
	const inFlight = 3
	eng := c.coordinator(ctx, engine.RemoteConfig{WaitNodes: 1, MaxInFlight: inFlight}, nil)

	// The input counts what dispatch has pulled; the consumer counts what
	// came back: their difference is what the coordinator holds.
	var mu sync.Mutex
	pulled, done, maxHeld := 0, 0, 0
	items := func(yield func(dispatch.Item) bool) {
		for i := range 120 {
			mu.Lock()
			pulled++
			maxHeld = max(maxHeld, pulled-done)
			mu.Unlock()
			if !yield(dispatch.Item{ID: fmt.Sprint(i), Payload: 20}) { // 20 ms each
				return
			}
		}
	}
	// A watcher samples the stream: it must never hold more than inFlight
	// batches (a sample, not a timing: every sample must obey the bound).
	stop := make(chan struct{})
	var maxMsgs uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		st, err := c.js.Stream(ctx, remote.StreamName("work"))
		if err != nil {
			t.Error(err)
			return
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			if info, err := st.Info(ctx); err == nil {
				maxMsgs = max(maxMsgs, info.State.Msgs)
			}
		}
	})
	st, err := eng.Stream(ctx, items, engine.DispatchOptions{Pool: "work", Options: dispatch.Options{
		Module: "remote_e2e", Function: "sleep_ms", Strategy: dispatch.FixedBatch(1)}})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, err := range st.Results() {
		if err != nil {
			t.Fatal(err)
		}
		got++
		mu.Lock()
		done++
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	if got != 120 {
		t.Fatalf("%d results", got)
	}
	if maxMsgs > inFlight {
		t.Fatalf("the stream held %d batches; the bound is %d", maxMsgs, inFlight)
	}
	// dispatch holds at most 2 x MaxInFlight batches (those in flight and
	// those whose results wait for an earlier one); add the results on
	// their way to this loop (not counted yet, at most a batch per slot)
	// and the item being read: a constant, whatever the input's length.
	// An unbounded queue would hold most of the 120 items.
	if maxHeld > 3*inFlight+1 {
		t.Fatalf("the coordinator held %d items at once with %d batches of 1 in flight", maxHeld, inFlight)
	}
	t.Logf("stream held at most %d batches, the coordinator at most %d items", maxMsgs, maxHeld)
}

func TestRemoteSessionLostWhenItsNodeDies(t *testing.T) {
	ctx := e2eCtx(t, 3*time.Minute)
	c := newCluster(t, natsdev.Options{})
	cfg := nodeConfig(t, "{workers: 1}", "")
	c.startNodes(ctx, 2, cfg)
	eng := c.coordinator(ctx, engine.RemoteConfig{WaitNodes: 2}, nil)
	s, err := eng.Session(ctx, "work")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Submit(ctx, batch("count", 1))
	if err != nil {
		t.Fatal(err)
	}
	pid := res[0].([]any)[1].(int64)
	// The session's Python worker is a child of the node that holds it.
	var victim *nodeProc
	for _, n := range c.nodes {
		if parentPid(t, int(pid)) == n.cmd.Process.Pid {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("no node is the parent of session %s's Python worker (pid %d)", s.ID(), pid)
	}
	p, _ := eng.Pool("work")
	victim.kill()
	_, err = s.Submit(ctx, batch("count", 1))
	if !errors.Is(err, pools.ErrSessionLost) {
		t.Fatalf("after its node died, the session's next batch: %v", err)
	}
	// Work without the session goes on, on the other node.
	if _, err := p.Submit(ctx, batch("double", 1)); err != nil {
		t.Fatal(err)
	}
}

func batch(function string, items ...any) pools.Batch {
	return pools.Batch{Module: "remote_e2e", Function: function, Items: items}
}

// parentPid reads pid's parent from /proc.
func parentPid(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid ...: comm may hold spaces, so cut after the last ')'.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	var state string
	var ppid int
	if _, err := fmt.Sscan(rest, &state, &ppid); err != nil {
		t.Fatal(err)
	}
	return ppid
}
