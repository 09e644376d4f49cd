package remote_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// blockingNode answers like answerDefault, except that function "block"
// signals started and waits for the node to stop.
func blockingNode(started chan<- string) func(*fakeNode, jetstream.Msg, remote.Call) {
	return func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		if call.Batch.Function == "block" {
			started <- n.id
			<-n.ctx.Done()
			return
		}
		answerDefault(n, m, call)
	}
}

func TestPoolSessionPinnedAndLost(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	started := make(chan string, 4)
	nodes := map[string]*fakeNode{}
	for range 2 {
		n := startNode(t, e.s, testPool, 2, blockingNode(started))
		nodes[n.id] = n
	}
	gone := make(chan string, 4)
	p := e.newPool(t, remote.Options{WaitNodes: 2}, remote.Hooks{Node: func(id string, g bool) {
		if g {
			gone <- id
		}
	}})
	s := pools.NewSession(context.Background(), p)
	defer s.Close()
	var home string
	for i := range 6 {
		res, err := s.Submit(context.Background(), pools.Batch{Module: "m", Function: "whoami", Items: ints(1, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if home == "" {
			home = res[0].(string)
		} else if res[0] != home {
			t.Fatalf("batch %d of the session ran on %s, the session is on %s", i, res[0], home)
		}
	}
	// A second session goes to the other (less loaded) node.
	s2 := pools.NewSession(context.Background(), p)
	defer s2.Close()
	res, err := s2.Submit(context.Background(), pools.Batch{Module: "m", Function: "whoami", Items: ints(1, 0)})
	if err != nil || res[0] == home {
		t.Errorf("second session on %v (%v), want the other node than %s", res, err, home)
	}

	// The session's node goes away while a batch of it runs there.
	done := make(chan error, 1)
	go func() {
		_, err := s.Submit(context.Background(), pools.Batch{Module: "m", Function: "block", Items: ints(1, 0)})
		done <- err
	}()
	if got := recv(t, started, "the session's batch to start"); got != home {
		t.Fatalf("blocking batch ran on %s, not the session's node %s", got, home)
	}
	nodes[home].stop(true) // it leaves (its advert is deleted) with the batch running
	recv(t, gone, "the node to go")
	if err := recv(t, done, "the running batch to fail"); !errors.Is(err, pools.ErrSessionLost) {
		t.Errorf("running batch: %v, want ErrSessionLost", err)
	}
	_, err = s.Submit(context.Background(), pools.Batch{Module: "m", Function: "whoami", Items: ints(1, 0)})
	if !errors.Is(err, pools.ErrSessionLost) || !strings.Contains(err.Error(), home) {
		t.Errorf("later batch: %v, want ErrSessionLost naming node %s", err, home)
	}
	// Its unpinned batches still run, on a live node.
	res, err = s.Submit(context.Background(), pools.Batch{Module: "m", Function: "whoami", Items: ints(1, 0), Unpinned: true})
	if err != nil || res[0] == home {
		t.Errorf("unpinned batch of the lost session: %v, %v", res, err)
	}
	if n := streamMsgs(t, e.js, testPool); n != 0 {
		t.Errorf("work stream holds %d messages: the lost node's subject was not purged", n)
	}
}

func TestPoolSessionNeedsANode(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	p := e.newPool(t, remote.Options{}, remote.Hooks{})
	_, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "whoami", Items: ints(1, 0), Session: "s1"})
	if !errors.Is(err, remote.ErrNoNodes) {
		t.Errorf("pinned batch with no node: %v, want ErrNoNodes", err)
	}
}

func TestPoolCloseSessionSendsControl(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	n := startNode(t, e.s, testPool, 1, nil)
	other := startNode(t, e.s, testPool, 1, nil)
	p := e.newPool(t, remote.Options{WaitNodes: 2}, remote.Hooks{})
	res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "whoami", Items: ints(1, 0), Session: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] == other.id {
		n, other = other, n
	}
	p.CloseSession("s1")
	got := recv(t, n.controls, "the session's node to get close-session")
	if got.Control != remote.ControlCloseSession || got.Batch.Session != "s1" || got.Coord != p.CoordID() {
		t.Errorf("control call %+v", got)
	}
	_, err = p.Submit(context.Background(), pools.Batch{Module: "m", Function: "whoami", Items: ints(1, 0), Session: "s1"})
	if !errors.Is(err, pools.ErrSessionLost) {
		t.Errorf("batch after CloseSession: %v, want ErrSessionLost", err)
	}
	p.CloseSession("s1")      // idempotent
	p.CloseSession("unknown") // nothing to send
	select {
	case c := <-other.controls:
		t.Errorf("the other node got %+v", c)
	default:
	}
}

func TestPoolHostCalls(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	// The node's "host" function makes one host call per item (the item
	// names the call) and returns its value, or "error: " and its text.
	startNode(t, e.s, testPool, 2, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		out := make([]any, len(call.Batch.Items))
		for i, it := range call.Batch.Items {
			data, err := n.codec.EncodeHostCall(pools.HostCall{Name: it.(string), Args: []any{int64(20), int64(22)}, Session: call.Batch.Session}, time.Time{})
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := n.nc.RequestWithContext(n.ctx, remote.HostSubject(call.Coord), data)
			if err != nil {
				t.Error(err)
				return
			}
			v, err := n.codec.DecodeHostReply(resp.Data)
			if err != nil {
				v = "error: " + err.Error()
			}
			out[i] = v
		}
		n.reply(m, call, out, nil)
	})
	host := func(ctx context.Context, c pools.HostCall) (any, error) {
		switch c.Name {
		case "add":
			return c.Args[0].(int64) + c.Args[1].(int64), nil
		case "session":
			return c.Session, nil
		case "panic":
			panic("kaboom")
		}
		return nil, fmt.Errorf("no host function %q", c.Name)
	}
	p := e.newPool(t, remote.Options{WaitNodes: 1, Host: host}, remote.Hooks{})
	res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "host", Items: []any{"add", "nope", "panic", "session"}, Session: "sx", Unpinned: true})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != int64(42) {
		t.Errorf("add = %v", res[0])
	}
	if s, _ := res[1].(string); !strings.Contains(s, `no host function "nope"`) {
		t.Errorf("host error = %v", res[1])
	}
	if s, _ := res[2].(string); !strings.Contains(s, "panicked") || !strings.Contains(s, "kaboom") {
		t.Errorf("host panic = %v", res[2])
	}
	if res[3] != "sx" {
		t.Errorf("session = %v", res[3])
	}
}

func TestPoolLargePayloadThroughObjectStore(t *testing.T) {
	e := newEnv(t, natsdev.Options{MaxPayload: 64 << 10})
	objects := make(chan string, 2)
	startNode(t, e.s, testPool, 1, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		objects <- call.Object
		n.reply(m, call, call.Batch.Items, nil) // the result is as large
	})
	p := e.newPool(t, remote.Options{WaitNodes: 1}, remote.Hooks{})
	big := strings.Repeat("snake", 60_000) // 300 KB, over the 64 KiB max payload
	res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "echo", Items: []any{big, int64(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0] != big || res[1] != int64(1) {
		t.Fatalf("results differ from the items (%d results)", len(res))
	}
	in := recv(t, objects, "the node's call")
	if in == "" {
		t.Fatal("the batch did not go through the object store")
	}
	obs, err := e.js.ObjectStore(context.Background(), remote.PayloadBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{in, strings.TrimSuffix(in, ".in") + ".out"} {
		if _, err := obs.GetInfo(context.Background(), name); !isNotFound(err) {
			t.Errorf("payload object %s still there (%v): the pool must delete it", name, err)
		}
	}
}

func TestPoolPayloadTooLarge(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	p := e.newPool(t, remote.Options{MaxPayload: 100 << 10}, remote.Hooks{})
	_, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "echo", Items: []any{strings.Repeat("x", 200<<10)}})
	if !errors.Is(err, remote.ErrPayloadTooLarge) {
		t.Fatalf("Submit: %v, want ErrPayloadTooLarge", err)
	}
	if n := streamMsgs(t, e.js, testPool); n != 0 {
		t.Errorf("work stream holds %d messages", n)
	}
	if st := p.Stats(); st.Running != 0 {
		t.Errorf("Running = %d after a refused batch", st.Running)
	}
}

func TestPoolCloseDrains(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	startNode(t, e.s, testPool, 2, func(n *fakeNode, m jetstream.Msg, call remote.Call) {
		if call.Batch.Function == "slow" {
			started <- struct{}{}
			<-release
			call.Batch.Function = "double"
		}
		answerDefault(n, m, call)
	})
	p := e.newPool(t, remote.Options{WaitNodes: 1}, remote.Hooks{})
	done := make(chan error, 1)
	go func() {
		res, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "slow", Items: ints(1, 4)})
		if err == nil && res[0] != int64(8) {
			err = fmt.Errorf("result %v", res)
		}
		done <- err
	}()
	recv(t, started, "the batch to start")
	closed := make(chan error, 1)
	go func() { closed <- p.Close(context.Background()) }()
	// Close refuses new batches at once; wait for that, then check it
	// still waits for the running one.
	for {
		_, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "double"})
		if errors.Is(err, pools.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatalf("Submit while closing: %v", err)
		}
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a batch was running", err)
	default:
	}
	close(release)
	if err := recv(t, done, "the running batch"); err != nil {
		t.Errorf("running batch: %v", err)
	}
	if err := recv(t, closed, "Close"); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	st, err := e.js.Stream(context.Background(), remote.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Consumer(context.Background(), remote.ResultDurable(p.CoordID())); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("results consumer after Close: %v, want ErrConsumerNotFound", err)
	}
}

func TestPoolCloseGivesUp(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	started := make(chan string, 1)
	n := startNode(t, e.s, testPool, 1, blockingNode(started))
	p := e.newPool(t, remote.Options{WaitNodes: 1}, remote.Hooks{})
	done := make(chan error, 1)
	go func() {
		_, err := p.Submit(context.Background(), pools.Batch{Module: "m", Function: "block", Items: ints(1, 0)})
		done <- err
	}()
	recv(t, started, "the batch to start")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close: %v, want context.Canceled", err)
	}
	if err := recv(t, done, "the running batch"); !errors.Is(err, pools.ErrClosed) {
		t.Errorf("running batch: %v, want ErrClosed", err)
	}
	recv(t, n.cancels, "the node to get the cancel")
	if c := streamMsgs(t, e.js, testPool); c != 0 {
		t.Errorf("work stream holds %d messages after Close gave up", c)
	}
}
