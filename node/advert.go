package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// advert is what the node says of itself now.
func (n *Node) advert(draining bool) remote.Advert {
	a := remote.Advert{Node: n.id, Host: n.host, Pid: os.Getpid(), Version: n.o.Version, Started: n.started,
		Updated: time.Now(), Heartbeat: n.o.Heartbeat, Draining: draining, Pools: map[string]remote.PoolAdvert{}}
	// The embedded interpreter's GIL; without one, no free-threaded
	// interpreter runs in this process.
	gil := true
	if rt, ok := n.eng.ThreadPool().(pools.Runtime); ok {
		gil = rt.GILEnabled()
	}
	for _, s := range n.served {
		st := s.pool.Stats()
		t := st.Totals()
		a.Pools[s.name] = remote.PoolAdvert{Kind: string(s.pool.Kind()), Capacity: min(s.capacity, remote.MaxNodeCapacity),
			Running: st.Running, Waiting: st.Waiting, GILEnabled: gil, Calls: t.Calls, Items: t.Items, Errors: t.Errors}
	}
	return a
}

// advertise puts the node's advert in the nodes bucket. Adverts are put one
// at a time, and once the drain has begun every one says so: a heartbeat
// racing the drain's advert cannot undo it. A bucket that has gone (an
// operator deleted it, or NATS restarted on a fresh store) is made again.
func (n *Node) advertise(ctx context.Context, draining bool) error {
	n.amu.Lock()
	defer n.amu.Unlock()
	data, err := json.Marshal(n.advert(draining || n.draining.Load()))
	if err != nil {
		return fmt.Errorf("node: encoding its advert: %w", err)
	}
	_, err = n.kv.Put(ctx, n.id, data)
	if err != nil && missing(err) {
		kv, kerr := remote.EnsureNodes(ctx, n.js, n.nodesTTL())
		if kerr != nil {
			return fmt.Errorf("node: advertising in %s: %w (making the bucket again: %w)", remote.NodesBucket, err, kerr)
		}
		n.kv = kv
		if _, err = kv.Put(ctx, n.id, data); err == nil {
			n.log.Info("slither node: the nodes bucket had gone; made it again", "node", n.id, "bucket", remote.NodesBucket)
		}
	}
	if err != nil {
		return fmt.Errorf("node: advertising in %s: %w", remote.NodesBucket, err)
	}
	return nil
}

// missing reports whether a call failed because the JetStream object it
// needs (a consumer, a stream, a bucket) is gone: the node makes it again.
// No responders is among them: a pull on a consumer the server removed
// (the node's own one after a minute cut off), or a put into a bucket
// whose stream is gone, gets no answer at all.
func missing(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// nodesTTL is the TTL of a nodes bucket this node makes: three heartbeats,
// remote.DefaultNodeTTL at least (0 says that).
func (n *Node) nodesTTL() time.Duration {
	if 3*n.o.Heartbeat > remote.DefaultNodeTTL {
		return 3 * n.o.Heartbeat
	}
	return 0
}

// nodes is the nodes bucket (advertise may replace it).
func (n *Node) nodes() jetstream.KeyValue {
	n.amu.Lock()
	defer n.amu.Unlock()
	return n.kv
}

// heartbeat refreshes the advert every Heartbeat until hbStop is closed
// (after the drain: a draining node still runs batches, and its sessions
// must not look lost). An outage is logged when it starts and when it
// ends, not at every beat.
func (n *Node) heartbeat() {
	defer close(n.hbDone)
	t := time.NewTicker(n.o.Heartbeat)
	defer t.Stop()
	failing := 0 // heartbeats failed in a row
	for {
		select {
		case <-n.hbStop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(n.o.Heartbeat, time.Second))
			err := n.advertise(ctx, false)
			cancel()
			switch {
			case err == nil && failing > 0:
				n.log.Info("slither node: heartbeat resumed", "node", n.id, "failed", failing)
				failing = 0
			case err != nil && failing == 0:
				n.log.Warn("slither node: heartbeat", "node", n.id, "err", err)
				failing++
			case err != nil:
				n.log.Debug("slither node: heartbeat", "node", n.id, "err", err, "failures", failing+1)
				failing++
			}
		}
	}
}

// checkTTL warns when the nodes bucket forgets a node before it has missed
// two heartbeats: coordinators would see a live node die and come back.
func (n *Node) checkTTL(ctx context.Context) {
	st, err := n.nodes().Status(ctx)
	if err != nil {
		return
	}
	if ttl := st.TTL(); ttl > 0 && ttl < 2*n.o.Heartbeat {
		n.log.Warn("slither node: the nodes bucket's TTL is shorter than two heartbeats", "node", n.id, "ttl", ttl, "heartbeat", n.o.Heartbeat)
	}
}
