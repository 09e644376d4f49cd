package remote_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// TestPoolRemakesItsResultsConsumer deletes the coordinator's results
// consumer (an operator, or the server after a long partition): the pool
// makes it again, and a batch submitted afterwards gets its result
// instead of waiting for ever.
func TestPoolRemakesItsResultsConsumer(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	startNode(t, e.s, testPool, 2, nil)
	p := e.newPool(t, remote.Options{WaitNodes: 1}, remote.Hooks{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.js.Stream(ctx, remote.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.DeleteConsumer(ctx, remote.ResultDurable(p.CoordID())); err != nil {
		t.Fatal(err)
	}
	got, err := p.Submit(ctx, pools.Batch{Module: "m", Function: "double", Items: ints(3, 1)})
	if err != nil {
		t.Fatalf("Submit after the results consumer was deleted: %v", err)
	}
	if fmt.Sprint(got) != "[2 4 6]" {
		t.Fatalf("results %v", got)
	}
}

// TestPoolWatchesNodesAgainAfterTheBucketGoes deletes the nodes bucket
// under a running pool: its watch ends; the pool watches again once the
// bucket is back, sees the nodes that advertise there, and takes a node
// whose advert did not come back as gone (its session is lost).
func TestPoolWatchesNodesAgainAfterTheBucketGoes(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	b := startNode(t, e.s, testPool, 3, nil)
	// Hooks must not block: room for every advert the test makes.
	seen := make(chan string, 256)
	gone := make(chan string, 256)
	p := e.newPool(t, remote.Options{WaitNodes: 1}, remote.Hooks{Node: func(id string, g bool) {
		if g {
			gone <- id
		} else {
			seen <- id
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A session pinned to b, the only node so far.
	if _, err := p.Submit(ctx, pools.Batch{Module: "m", Function: "double", Items: ints(1, 1), Session: "s1"}); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, e.s, testPool, 2, nil)
	for recv(t, seen, "a") != a.id {
	}
	if err := e.js.DeleteKeyValue(ctx, remote.NodesBucket); err != nil {
		t.Fatal(err)
	}
	// a comes back into a new bucket; b never does.
	kv, err := remote.EnsureNodes(ctx, e.js, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a.kv = kv
	a.advertise(false)
	if id := recv(t, gone, "b taken as gone after the watch restarted"); id != b.id {
		t.Fatalf("gone %s, want b %s", id, b.id)
	}
	if got := p.Capacity(); got != 2 {
		t.Fatalf("Capacity = %d, want a's 2", got)
	}
	_, err = p.Submit(ctx, pools.Batch{Module: "m", Function: "double", Items: ints(1, 1), Session: "s1"})
	if err == nil || !errorsIsSessionLost(err) {
		t.Fatalf("the session on b after b went: %v", err)
	}
	// A node that comes back is live again, and stays listed whatever else
	// comes and goes (it is off the list of gone nodes).
	b.kv = kv
	b.advertise(false)
	for recv(t, seen, "b back") != b.id { // (a's re-advert may come first)
	}
	// b was only cut off: the state of the session failed as lost is
	// dropped there.
	if c := recv(t, b.controls, "close-session of s1 on b"); c.Control != remote.ControlCloseSession || c.Batch.Session != "s1" {
		t.Fatalf("control call %+v", c)
	}
	for i := range 40 {
		n := startNode(t, e.s, testPool, 1, nil)
		// Seen first: a watch that is behind may see only the deletion of
		// a value that history 1 already replaced.
		for recv(t, seen, fmt.Sprint("transient node ", i, " to come")) != n.id {
		}
		n.unadvertise()
		for recv(t, gone, fmt.Sprint("transient node ", i)) != n.id {
		}
	}
	if got := p.Capacity(); got != 5 {
		t.Fatalf("Capacity = %d, want a's 2 + b's 3", got)
	}
	live := 0
	for _, w := range p.Stats().Workers {
		if w.State != pools.WorkerStopped {
			live++
		}
	}
	if live != 2 {
		t.Fatalf("%d live workers in Stats, want 2: %+v", live, p.Stats().Workers)
	}
}

func drain[T any](ch <-chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func errorsIsSessionLost(err error) bool { return errors.Is(err, pools.ErrSessionLost) }

// TestResyncGraceCoversSlowHeartbeats: a restarted watch waits two of the
// slowest live node's heartbeats (at least the bucket's default TTL)
// before it takes a silent node as gone.
func TestResyncGraceCoversSlowHeartbeats(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	seen := make(chan string, 16)
	p := e.newPool(t, remote.Options{}, remote.Hooks{Node: func(id string, g bool) {
		if !g {
			seen <- id
		}
	}})
	if got := p.ResyncGrace(); got != remote.DefaultNodeTTL {
		t.Fatalf("grace with no node = %v, want %v", got, remote.DefaultNodeTTL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, remote.NodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	a := remote.Advert{Node: "slow-1", Heartbeat: 7 * time.Second, Pools: map[string]remote.PoolAdvert{testPool: {Capacity: 1}}}
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, a.Node, data); err != nil {
		t.Fatal(err)
	}
	recv(t, seen, "the slow node")
	if got := p.ResyncGrace(); got != 14*time.Second {
		t.Fatalf("grace with a 7s heartbeat = %v, want 14s", got)
	}
}
