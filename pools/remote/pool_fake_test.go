package remote_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// fakeNode is a stand-in for `slither node` so that the coordinator's Pool
// is tested in isolation: it speaks the protocol with the same Codec
// (pulls from the pool's shared durable and its own node durable, replies
// to the results stream, waits for the PubAck, then acks) but runs a Go
// function (handle) instead of Python. The real node runtime is tested
// end to end with real `slither node` processes elsewhere.
type fakeNode struct {
	t        *testing.T
	id       string
	pool     string
	capacity int
	nc       *nats.Conn
	js       jetstream.JetStream
	codec    *remote.Codec
	kv       jetstream.KeyValue
	handle   func(n *fakeNode, m jetstream.Msg, call remote.Call)

	controls chan remote.Call // close-session calls received
	cancels  chan string      // batch ids of cancels received
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	sem      chan struct{}
	once     sync.Once
}

// testServer starts an embedded NATS server with JetStream for one test.
func testServer(t *testing.T, opts natsdev.Options) *natsdev.Server {
	return natsdevtest.Start(t, opts)
}

// connect opens a connection to s, closed with the test.
func connect(t *testing.T, s *natsdev.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startNode starts a fake node serving pool with capacity slots, answering
// batches with handle (nil: answerDefault), and advertises it.
func startNode(t *testing.T, s *natsdev.Server, pool string, capacity int, handle func(*fakeNode, jetstream.Msg, remote.Call)) *fakeNode {
	t.Helper()
	if handle == nil {
		handle = answerDefault
	}
	n := &fakeNode{t: t, id: remote.NewNodeID("fake"), pool: pool, capacity: capacity, handle: handle,
		controls: make(chan remote.Call, 16), cancels: make(chan string, 64), sem: make(chan struct{}, capacity)}
	n.nc = connect(t, s)
	var err error
	if n.js, err = jetstream.New(n.nc); err != nil {
		t.Fatal(err)
	}
	n.codec = &remote.Codec{Conn: n.nc, JS: n.js}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { n.stop(false) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, anyCons, err := remote.EnsurePool(ctx, n.js, pool, remote.PoolSettings{}, false)
	if err != nil {
		t.Fatal(err)
	}
	own, err := st.CreateOrUpdateConsumer(ctx, remote.PoolSettings{}.NodeConsumerConfig(pool, n.id))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.EnsureResults(ctx, n.js); err != nil {
		t.Fatal(err)
	}
	sub, err := n.nc.Subscribe(remote.CancelWildcard, func(m *nats.Msg) {
		select {
		case n.cancels <- string(m.Data):
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := n.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n.kv, err = remote.EnsureNodes(ctx, n.js, time.Minute); err != nil {
		t.Fatal(err)
	}
	n.advertise(false)
	for _, c := range []jetstream.Consumer{anyCons, own} {
		n.wg.Add(1)
		go n.pull(c)
	}
	return n
}

// advertise puts the node's advert into the nodes bucket.
func (n *fakeNode) advertise(draining bool) {
	n.t.Helper()
	a := remote.Advert{Node: n.id, Host: "fake", Pid: os.Getpid(), Version: "test", Started: time.Now(), Updated: time.Now(),
		Draining: draining, Pools: map[string]remote.PoolAdvert{n.pool: {Kind: "fake", Capacity: n.capacity}}}
	data, err := json.Marshal(a)
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.kv.Put(context.Background(), n.id, data); err != nil {
		n.t.Fatalf("advertising node %s: %v", n.id, err)
	}
}

// unadvertise deletes the node's advert, as a node does when it leaves
// (the node itself keeps running: a partitioned or dying node).
func (n *fakeNode) unadvertise() {
	n.t.Helper()
	if err := n.kv.Delete(context.Background(), n.id); err != nil {
		n.t.Fatalf("deleting node %s's advert: %v", n.id, err)
	}
}

// stop stops pulling and waits for the node's goroutines (handlers must
// return once n.ctx ends); with unadvertise the advert is deleted first.
func (n *fakeNode) stop(unadvertise bool) {
	n.once.Do(func() {
		if unadvertise {
			n.unadvertise()
		}
		n.cancel()
		n.wg.Wait()
	})
}

// pull fetches from cons one message per free slot and handles each on a
// goroutine that holds the slot, like the real node.
func (n *fakeNode) pull(cons jetstream.Consumer) {
	defer n.wg.Done()
	for {
		select {
		case n.sem <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(100*time.Millisecond))
		got := false
		if err == nil {
			for m := range b.Messages() {
				got = true
				n.wg.Add(1)
				go func() {
					defer n.wg.Done()
					defer func() { <-n.sem }()
					n.run(m)
				}()
			}
		}
		if !got {
			<-n.sem
		}
		if n.ctx.Err() != nil {
			return
		}
	}
}

// run decodes one message and hands it to handle (control calls go to
// n.controls and are acked).
func (n *fakeNode) run(m jetstream.Msg) {
	call, err := n.codec.DecodeCall(n.ctx, m.Headers(), m.Data())
	if err != nil {
		n.t.Errorf("fake node: decoding a call: %v", err)
		_ = m.Term()
		return
	}
	if call.Control != "" {
		n.controls <- call
		_ = m.Ack()
		return
	}
	n.handle(n, m, call)
}

// reply publishes the reply to call, waits for its PubAck, then acks m:
// the node protocol's order.
func (n *fakeNode) reply(m jetstream.Msg, call remote.Call, results []any, err error) {
	msg, eerr := n.codec.EncodeReply(n.ctx, call.Coord, remote.Reply{ID: call.ID, Node: n.id, Pid: os.Getpid(),
		Service: time.Millisecond, Results: results, Err: err})
	if eerr != nil {
		n.t.Errorf("fake node: encoding a reply: %v", eerr)
		return
	}
	if _, perr := n.js.PublishMsg(n.ctx, msg); perr != nil {
		if n.ctx.Err() == nil {
			n.t.Errorf("fake node: publishing a reply: %v", perr)
		}
		return
	}
	if aerr := m.DoubleAck(n.ctx); aerr != nil && n.ctx.Err() == nil {
		n.t.Errorf("fake node: acking: %v", aerr)
	}
}

// answerDefault runs the test functions of module "m":
//   - double: every item (an integer) times two;
//   - whoami: every item becomes the node's id;
//   - echo: the items unchanged;
//   - fail: a Python-like error;
//   - short: one result too few.
func answerDefault(n *fakeNode, m jetstream.Msg, call remote.Call) {
	items := call.Batch.Items
	switch call.Batch.Function {
	case "double":
		out := make([]any, len(items))
		for i, v := range items {
			out[i] = v.(int64) * 2
		}
		n.reply(m, call, out, nil)
	case "whoami":
		out := make([]any, len(items))
		for i := range items {
			out[i] = n.id
		}
		n.reply(m, call, out, nil)
	case "echo":
		n.reply(m, call, items, nil)
	case "fail":
		n.reply(m, call, nil, &pools.PythonError{Type: "ValueError", Message: "bad item", Traceback: "tb"})
	case "short":
		n.reply(m, call, items[1:], nil)
	default:
		n.reply(m, call, nil, fmt.Errorf("fake node: no function %s", call.Batch.Function))
	}
}

// streamMsgs returns the number of messages in pool's work stream.
func streamMsgs(t *testing.T, js jetstream.JetStream, pool string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), remote.StreamName(pool))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// recv waits for a value on ch, failing the test after a generous bound
// (a hang, not a timing assertion).
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// isNotFound reports an object-store miss.
func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrObjectNotFound)
}
