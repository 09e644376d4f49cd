package remote_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
	"github.com/slither-go/slither/telemetry"
)

const testPool = "cpu"

// env is a server, the coordinator's connection and a JetStream handle
// for the test's own checks.
type env struct {
	s  *natsdev.Server
	nc *nats.Conn
	js jetstream.JetStream
}

// newEnv starts a server and creates the nodes bucket with a long TTL, so
// that fake nodes' adverts (which never heartbeat) do not age out.
func newEnv(t *testing.T, opts natsdev.Options) env {
	t.Helper()
	s := testServer(t, opts)
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.EnsureNodes(context.Background(), js, time.Hour); err != nil {
		t.Fatal(err)
	}
	return env{s: s, nc: nc, js: js}
}

// newPool starts a coordinator with o (Conn and Name filled in), closed
// with the test.
func (e env) newPool(t *testing.T, o remote.Options, h remote.Hooks) *remote.Pool {
	t.Helper()
	o.Conn = e.nc
	if o.Name == "" {
		o.Name = testPool
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := remote.NewWithHooks(ctx, o, h)
	if err != nil {
		t.Fatalf("remote.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func ints(n, from int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = int64(from + i)
	}
	return out
}

func TestPoolResultsExactlyOnceInItemOrder(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	startNode(t, e.s, testPool, 2, nil)
	startNode(t, e.s, testPool, 3, nil)
	p := e.newPool(t, remote.Options{WaitNodes: 2}, remote.Hooks{})
	if got := p.Capacity(); got != 5 {
		t.Errorf("Capacity = %d, want 5 (2+3 advertised)", got)
	}
	if p.Kind() != pools.KindRemote || p.Name() != "remote/"+testPool || pools.NameOf(p) != "remote/cpu" {
		t.Errorf("Kind %q Name %q", p.Kind(), p.Name())
	}
	const batches = 40
	var wg sync.WaitGroup
	ran := map[int]int{}
	var mu sync.Mutex
	for i := range batches {
		wg.Go(func() {
			var ci pools.CallInfo
			items := ints(5, i*10)
			res, err := p.Submit(pools.WithCallInfo(context.Background(), &ci), pools.Batch{Module: "m", Function: "double", Items: items})
			if err != nil {
				t.Errorf("batch %d: %v", i, err)
				return
			}
			for j, r := range res {
				if want := 2 * items[j].(int64); r != want {
					t.Errorf("batch %d item %d = %v, want %d", i, j, r, want)
				}
			}
			if ci.Pool != "remote/cpu" || ci.Pid != os.Getpid() || ci.Service != time.Millisecond {
				t.Errorf("CallInfo = %+v", ci)
			}
			mu.Lock()
			ran[ci.Worker]++
			mu.Unlock()
		})
	}
	wg.Wait()
	st := p.Stats()
	if st.Name != "remote/cpu" || st.Kind != pools.KindRemote || len(st.Workers) != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	tot := st.Totals()
	if tot.Calls != batches || tot.Items != 5*batches || tot.Errors != 0 {
		t.Errorf("Totals = %+v, want %d calls, %d items", tot, batches, 5*batches)
	}
	for _, w := range st.Workers {
		if int(w.Calls) != ran[w.ID] || w.Pid != os.Getpid() || w.State != pools.WorkerIdle {
			t.Errorf("worker %+v, CallInfo counted %d calls", w, ran[w.ID])
		}
	}
	if got := len(p.Nodes()); got != 2 {
		t.Errorf("Nodes() = %d adverts", got)
	}
	if n := streamMsgs(t, e.js, testPool); n != 0 {
		t.Errorf("work stream holds %d messages after every batch ended", n)
	}
}

func TestPoolErrorsFromNodes(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	startNode(t, e.s, testPool, 1, nil)
	p := e.newPool(t, remote.Options{WaitNodes: 1}, remote.Hooks{})
	_, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "fail", Items: ints(1, 0)})
	var pe *pools.PythonError
	if !errors.As(err, &pe) || pe.Type != "ValueError" || pe.Message != "bad item" {
		t.Errorf("fail: %v, want a *pools.PythonError ValueError", err)
	}
	_, err = p.Submit(context.Background(), pools.Batch{Module: "m", Function: "short", Items: ints(3, 0)})
	if !errors.Is(err, pools.ErrResultCount) {
		t.Errorf("short: %v, want ErrResultCount", err)
	}
	if _, err := p.Submit(context.Background(), pools.Batch{Module: "m"}); !errors.Is(err, pools.ErrInvalidBatch) {
		t.Errorf("no function: %v, want ErrInvalidBatch", err)
	}
	if got := p.Stats().Totals().Errors; got != 2 {
		t.Errorf("Errors = %d, want 2", got)
	}
}

func TestPoolDropsDuplicateReply(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	// A node that answers every batch twice, under two message ids (so the
	// stream's own dedupe does not catch the second): as a slow node whose
	// lease expired would, after another node answered too.
	startNode(t, e.s, testPool, 1, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		out := []any{"first"}
		msg, err := n.codec.EncodeReply(n.ctx, call.Coord, remote.Reply{ID: call.ID, Node: n.id, Results: out})
		if err != nil {
			t.Error(err)
			return
		}
		msg.Header.Set(jetstream.MsgIDHeader, "dup-"+call.ID)
		if _, err := n.js.PublishMsg(n.ctx, msg); err != nil {
			t.Error(err)
		}
		n.reply(m, call, []any{"second"}, nil)
	})
	dropped := make(chan string, 4)
	p := e.newPool(t, remote.Options{WaitNodes: 1}, remote.Hooks{Dropped: func(id string) { dropped <- id }})
	res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "x", Items: ints(1, 0)})
	if err != nil || len(res) != 1 || res[0] != "first" {
		t.Fatalf("Submit = %v, %v; want the first reply", res, err)
	}
	id := recv(t, dropped, "the duplicate reply to be dropped")
	if !strings.HasPrefix(id, p.CoordID()+"-") {
		t.Errorf("dropped %q, not a batch of this coordinator", id)
	}
	res, err = p.Submit(context.Background(), pools.Batch{Module: "m", Function: "x", Items: ints(1, 0)})
	if err != nil || res[0] != "first" {
		t.Errorf("second Submit = %v, %v: got a stale reply?", res, err)
	}
	if got := p.Stats().Totals().Calls; got != 2 {
		t.Errorf("Calls = %d, want 2 (duplicates are not counted)", got)
	}
}

func TestPoolRedeliversBatchOfDeadNode(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	took := make(chan string, 1)
	// Node a takes the batch and then never answers nor acks (it hangs,
	// as a dead node would); holding its only slot, it fetches no more.
	startNode(t, e.s, testPool, 1, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		took <- call.ID
		<-n.ctx.Done()
	})
	p := e.newPool(t, remote.Options{WaitNodes: 1, AckWait: 300 * time.Millisecond}, remote.Hooks{})
	type result struct {
		res []any
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "double", Items: ints(3, 1)})
		done <- result{res, err}
	}()
	id := recv(t, took, "node a to take the batch")
	deliveries := make(chan uint64, 1)
	startNode(t, e.s, testPool, 1, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		md, err := m.Metadata()
		if err != nil {
			t.Error(err)
		}
		if call.ID != id {
			t.Errorf("node b got batch %s, want the redelivered %s", call.ID, id)
		}
		deliveries <- md.NumDelivered
		answerDefault(n, m, call)
	})
	r := recv(t, done, "the redelivered batch's result")
	if r.err != nil || fmt.Sprint(r.res) != "[2 4 6]" {
		t.Fatalf("Submit = %v, %v", r.res, r.err)
	}
	if d := recv(t, deliveries, "node b's delivery count"); d != 2 {
		t.Errorf("node b got delivery %d, want 2", d)
	}
}

func TestPoolMaxDeliverFailsWithErrRedelivered(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	var taken atomic.Int32
	// Every node that takes the batch "dies": no answer, no ack.
	startNode(t, e.s, testPool, 1, func(n *fakeNode, m jetstream.Msg, call remote.Call) { taken.Add(1) })
	p := e.newPool(t, remote.Options{WaitNodes: 1, AckWait: 200 * time.Millisecond, MaxDeliver: 2}, remote.Hooks{})
	_, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "double", Items: ints(1, 0)})
	if !errors.Is(err, remote.ErrRedelivered) || !errors.Is(err, pools.ErrWorkerCrashed) {
		t.Fatalf("Submit: %v, want ErrRedelivered (and ErrWorkerCrashed)", err)
	}
	// MaxDeliver = 2 runs, plus the delivery a real node answers with
	// ErrRedelivered instead of running it; this fake answers nothing, so
	// the server's advisory ends it (the coordinator's backstop).
	if got := taken.Load(); got != 3 {
		t.Errorf("delivered %d times, want MaxDeliver+1 = 3", got)
	}
	if n := streamMsgs(t, e.js, testPool); n != 0 {
		t.Errorf("work stream holds %d messages: the exhausted batch was not deleted", n)
	}
}

func TestPoolCancelQueuedDeletesMessage(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	published := make(chan uint64, 1)
	p := e.newPool(t, remote.Options{}, remote.Hooks{Published: func(_ string, seq uint64) { published <- seq }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Submit(ctx, pools.Batch{Module: "m", Function: "double", Items: ints(1, 0)})
		done <- err
	}()
	recv(t, published, "the batch to be published")
	if n := streamMsgs(t, e.js, testPool); n != 1 {
		t.Fatalf("work stream holds %d messages, want the queued batch", n)
	}
	cancel()
	if err := recv(t, done, "Submit to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit: %v, want context.Canceled", err)
	}
	if n := streamMsgs(t, e.js, testPool); n != 0 {
		t.Errorf("work stream holds %d messages after the cancel, want 0", n)
	}
	if st := p.Stats(); st.Running != 0 || st.Waiting != 0 {
		t.Errorf("Stats after cancel: running %d waiting %d", st.Running, st.Waiting)
	}
	// A node arriving now gets nothing: the next batch is the first it sees.
	startNode(t, e.s, testPool, 1, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		if call.Batch.Function != "double" || call.Batch.Items[0] != int64(7) {
			t.Errorf("node got the withdrawn batch %+v", call.Batch)
		}
		answerDefault(n, m, call)
	})
	if res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "double", Items: ints(1, 7)}); err != nil || res[0] != int64(14) {
		t.Errorf("Submit = %v, %v", res, err)
	}
}

func TestPoolCancelRunningSendsCancel(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	running := make(chan string, 1)
	cancelled := make(chan string, 1)
	startNode(t, e.s, testPool, 1, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		running <- call.ID
		for {
			select {
			case id := <-n.cancels:
				if id == call.ID {
					cancelled <- id
					return
				}
			case <-n.ctx.Done():
				return
			}
		}
	})
	p := e.newPool(t, remote.Options{WaitNodes: 1}, remote.Hooks{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Submit(ctx, pools.Batch{Module: "m", Function: "double", Items: ints(1, 0)})
		done <- err
	}()
	id := recv(t, running, "the batch to run")
	cancel()
	if err := recv(t, done, "Submit to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit: %v, want context.Canceled", err)
	}
	if got := recv(t, cancelled, "the node to get the cancel"); got != id {
		t.Errorf("cancel for %q, want %q", got, id)
	}
	if n := streamMsgs(t, e.js, testPool); n != 0 {
		t.Errorf("work stream holds %d messages: the running batch would be redelivered", n)
	}
}

func TestPoolBoundsInFlight(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	const limit, batches = 2, 6
	release := make(chan struct{})
	var held, maxHeld atomic.Int32
	// A node with room for all batches that holds each until released:
	// only the pool's bound keeps batches out of the stream.
	startNode(t, e.s, testPool, batches, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		h := held.Add(1)
		for {
			m := maxHeld.Load()
			if h <= m || maxHeld.CompareAndSwap(m, h) {
				break
			}
		}
		select {
		case <-release:
		case <-n.ctx.Done():
			return
		}
		held.Add(-1)
		answerDefault(n, m, call)
	})
	published := make(chan struct{}, batches)
	p := e.newPool(t, remote.Options{WaitNodes: 1, MaxInFlight: limit}, remote.Hooks{Published: func(string, uint64) { published <- struct{}{} }})
	if p.Capacity() != limit {
		t.Errorf("Capacity = %d, want MaxInFlight %d", p.Capacity(), limit)
	}
	var wg sync.WaitGroup
	for i := range batches {
		wg.Go(func() {
			res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "double", Items: ints(1, i)})
			if err != nil || res[0] != int64(2*i) {
				t.Errorf("batch %d = %v, %v", i, res, err)
			}
		})
	}
	for range limit {
		recv(t, published, "a batch to be published")
	}
	if n := streamMsgs(t, e.js, testPool); n != limit {
		t.Errorf("work stream holds %d messages with %d batches in flight, want %d", n, limit, limit)
	}
	if st := p.Stats(); st.Running != limit {
		t.Errorf("Stats.Running = %d, want %d", st.Running, limit)
	}
	for range batches {
		release <- struct{}{}
	}
	wg.Wait()
	if got := maxHeld.Load(); got > limit {
		t.Errorf("the node held %d batches at once, want at most MaxInFlight = %d", got, limit)
	}
}

func TestPoolCapacityFromAdverts(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	a := startNode(t, e.s, testPool, 3, nil)
	b := startNode(t, e.s, testPool, 4, nil)
	startNode(t, e.s, "other", 50, nil) // serves another pool: not counted
	events := make(chan string, 16)
	bus := telemetry.New(nil)
	if err := bus.Attach("t", func(ev telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		events <- fmt.Sprintf("%s %v %v", ev, md["kind"], md["class"])
	}, "pool.worker.*"); err != nil {
		t.Fatal(err)
	}
	nodeEv := make(chan string, 16)
	p := e.newPool(t, remote.Options{WaitNodes: 2, Telemetry: bus}, remote.Hooks{Node: func(id string, gone bool) {
		if gone {
			nodeEv <- id
		}
	}})
	if got := p.Capacity(); got != 7 {
		t.Errorf("Capacity = %d, want 7", got)
	}
	for range 2 {
		if ev := recv(t, events, "worker start events"); ev != "pool.worker.start remote <nil>" {
			t.Errorf("event %q", ev)
		}
	}
	b.advertise(true) // draining: no longer counted
	b.unadvertise()
	if got := recv(t, nodeEv, "node b to go"); got != b.id {
		t.Errorf("gone %s, want %s", got, b.id)
	}
	if got := p.Capacity(); got != 3 {
		t.Errorf("Capacity after b left = %d, want 3", got)
	}
	if ev := recv(t, events, "a worker exit event"); ev != "pool.worker.exit remote closed" {
		t.Errorf("event %q", ev)
	}
	st := p.Stats()
	if len(st.Workers) != 2 || st.Workers[1].State != pools.WorkerStopped || st.Workers[0].State != pools.WorkerIdle {
		t.Errorf("Stats.Workers = %+v, want a idle and b stopped", st.Workers)
	}
	a.unadvertise()
	recv(t, nodeEv, "node a to go")
	if got := p.Capacity(); got != 3 {
		t.Errorf("Capacity with no node = %d, want the last known 3", got)
	}
	if got := len(p.Nodes()); got != 0 {
		t.Errorf("Nodes() = %d adverts, want none", got)
	}
}

func TestPoolWaitNodesTimesOut(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	_, err := remote.New(context.Background(), remote.Options{Conn: e.nc, Name: testPool, WaitNodes: 1, WaitTimeout: 100 * time.Millisecond})
	if !errors.Is(err, remote.ErrNoNodes) {
		t.Fatalf("New: %v, want ErrNoNodes", err)
	}
	// It left no results consumer behind.
	st, err := e.js.Stream(context.Background(), remote.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("results stream has %d consumers after a failed New", n)
	}
}

func TestPoolOptionsChecked(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	for _, o := range []remote.Options{
		{Name: testPool},
		{Conn: e.nc, Name: "bad.name"},
		{Conn: e.nc, Name: testPool, MaxInFlight: -1},
	} {
		if _, err := remote.New(context.Background(), o); !errors.Is(err, remote.ErrConfig) {
			t.Errorf("New(%+v): %v, want ErrConfig", o, err)
		}
	}
}

func TestPoolStreamFullIsBackPressure(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	published := make(chan string, 4)
	p := e.newPool(t, remote.Options{MaxInFlight: 4}, remote.Hooks{Published: func(id string, _ uint64) { published <- id }})
	// An operator caps the stream at one message (DiscardNew): the second
	// publish is refused with "maximum messages exceeded" until the first
	// batch is taken.
	st, err := e.js.Stream(context.Background(), remote.StreamName(testPool))
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgs = 1
	if _, err := e.js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 2)
	for i := range 2 {
		go func() {
			res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "double", Items: ints(1, i)})
			if err == nil && res[0] != int64(2*i) {
				err = fmt.Errorf("batch %d = %v", i, res)
			}
			results <- err
		}()
	}
	recv(t, published, "one batch to be stored")
	if n := streamMsgs(t, e.js, testPool); n != 1 {
		t.Fatalf("stream holds %d messages, want 1 (its limit)", n)
	}
	startNode(t, e.s, testPool, 1, nil)
	for range 2 {
		if err := recv(t, results, "a batch"); err != nil {
			t.Error(err)
		}
	}
}
