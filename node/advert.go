package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

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
// racing the drain's advert cannot undo it.
func (n *Node) advertise(ctx context.Context, draining bool) error {
	n.amu.Lock()
	defer n.amu.Unlock()
	data, err := json.Marshal(n.advert(draining || n.draining.Load()))
	if err != nil {
		return fmt.Errorf("node: encoding its advert: %w", err)
	}
	if _, err := n.kv.Put(ctx, n.id, data); err != nil {
		return fmt.Errorf("node: advertising in %s: %w", remote.NodesBucket, err)
	}
	return nil
}

// heartbeat refreshes the advert every Heartbeat until hbStop is closed
// (after the drain: a draining node still runs batches, and its sessions
// must not look lost).
func (n *Node) heartbeat() {
	defer close(n.hbDone)
	t := time.NewTicker(n.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-n.hbStop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(n.o.Heartbeat, time.Second))
			if err := n.advertise(ctx, false); err != nil {
				n.log.Warn("slither node: heartbeat", "node", n.id, "err", err)
			}
			cancel()
		}
	}
}

// checkTTL warns when the nodes bucket forgets a node before it has missed
// two heartbeats: coordinators would see a live node die and come back.
func (n *Node) checkTTL(ctx context.Context) {
	st, err := n.kv.Status(ctx)
	if err != nil {
		return
	}
	if ttl := st.TTL(); ttl > 0 && ttl < 2*n.o.Heartbeat {
		n.log.Warn("slither node: the nodes bucket's TTL is shorter than two heartbeats", "node", n.id, "ttl", ttl, "heartbeat", n.o.Heartbeat)
	}
}
