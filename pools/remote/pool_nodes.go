package remote

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// maxGone is how many gone nodes Stats keeps listing (as stopped), so
// that their counters stay in the totals for a while.
const maxGone = 32

// maxLostKept bounds the lost sessions remembered per node.
const maxLostKept = 1024

// resyncGrace is how long a restarted nodes watch waits for the live nodes
// it knew to advertise again before it takes the silent ones as gone: the
// bucket's default TTL, or two of the slowest live node's heartbeats.
func (p *Pool) resyncGrace() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := DefaultNodeTTL
	for _, n := range p.nodes {
		if n.live {
			g = max(g, 2*n.advert.Heartbeat)
		}
	}
	return g
}

// node is the pool's view of one node serving it.
type node struct {
	id       string
	index    int // the node's worker index in Stats and CallInfo
	advert   Advert
	pool     PoolAdvert // advert.Pools[the pool]
	live     bool       // advertised and serving the pool
	sessions int        // sessions pinned to it
	// lost are sessions pinned to it that were failed when it was taken
	// as gone (at most maxLostKept): if it comes back (it was only cut
	// off), their state there is dropped.
	lost   []string
	calls  uint64 // replies it sent this coordinator
	items  uint64
	errors uint64
	busy   time.Duration
}

// watchNodes follows the nodes bucket: it returns once the current adverts
// are applied and, with Options.WaitNodes, once that many nodes are live.
func (p *Pool) watchNodes(ctx context.Context, kv jetstream.KeyValue) error {
	loaded, err := p.startWatch(kv, false)
	if err != nil {
		return err
	}
	if err := p.waitFor(ctx, loaded, nil); err != nil {
		return fmt.Errorf("reading the nodes bucket: %w", err)
	}
	if p.o.WaitNodes == 0 {
		return nil
	}
	timer := time.NewTimer(p.o.WaitTimeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		n, ch := p.liveCountLocked(), p.changed
		p.mu.Unlock()
		if n >= p.o.WaitNodes {
			return nil
		}
		if err := p.waitFor(ctx, ch, timer.C); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("%w: %d of %d node(s) serve pool %s: %w", ErrNoNodes, n, p.o.WaitNodes, p.o.Name, cerr)
			}
			return fmt.Errorf("%w: %d of %d node(s) serve pool %s after %v", ErrNoNodes, n, p.o.WaitNodes, p.o.Name, p.o.WaitTimeout)
		}
	}
}

// waitFor waits for ch; it fails when ctx ends or timeout fires.
func (p *Pool) waitFor(ctx context.Context, ch <-chan struct{}, timeout <-chan time.Time) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-timeout:
		return fmt.Errorf("timed out")
	}
}

// startWatch watches kv; the returned channel closes once the current
// adverts are applied. With resync (a watch started again after the
// previous one ended) a node whose advert is no longer there is taken as
// gone: its deletion happened while nobody watched. It sets p.watcher and
// p.watching; only New and the supervisor call it.
func (p *Pool) startWatch(kv jetstream.KeyValue, resync bool) (<-chan struct{}, error) {
	info, err := p.watchedStreamInfo()
	if err != nil {
		return nil, fmt.Errorf("reading the nodes bucket's stream: %w", err)
	}
	w, err := kv.WatchAll(p.life)
	if err != nil {
		return nil, fmt.Errorf("watching the nodes bucket: %w", err)
	}
	p.watcher, p.watching, p.watchedCreated = w, make(chan struct{}), info.Created
	loaded := make(chan struct{})
	// teardown (after stopping w) and the supervisor (before watching
	// again) wait for it: <-p.watching.
	go p.watchLoop(w, p.watching, loaded, resync)
	return loaded, nil
}

// watchedStreamInfo reads the nodes bucket's stream.
func (p *Pool) watchedStreamInfo() (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(p.life, cleanupTimeout)
	defer cancel()
	st, err := p.js.Stream(ctx, "KV_"+NodesBucket)
	if err != nil {
		return nil, err
	}
	return st.CachedInfo(), nil
}

// watchLoop applies the bucket's entries until the watcher stops, then
// closes done; it closes loaded at the end of the initial values. With
// resync, the nodes no entry has named a resyncGrace after that (a
// heartbeat or more) are taken as gone.
func (p *Pool) watchLoop(w jetstream.KeyWatcher, done, loaded chan struct{}, resync bool) {
	defer close(done)
	var seen map[string]bool
	if resync {
		seen = map[string]bool{}
	}
	var grace <-chan time.Time
	updates := w.Updates()
	for {
		select {
		case e, ok := <-updates: // read to the end: an unread watcher blocks its subscription
			if !ok {
				return
			}
			if e == nil {
				select {
				case <-loaded:
				default:
					close(loaded)
					if resync {
						t := time.NewTimer(p.resyncGrace())
						defer t.Stop()
						grace = t.C
					}
				}
				continue
			}
			if seen != nil {
				seen[e.Key()] = true
			}
			p.apply(e)
		case <-grace:
			grace = nil
			p.forgetUnseen(seen)
			seen = nil
		}
	}
}

// forgetUnseen takes every live node whose advert the restarted watch did
// not list as gone.
func (p *Pool) forgetUnseen(seen map[string]bool) {
	p.mu.Lock()
	var missing []string
	for id, n := range p.nodes {
		if n.live && !seen[id] {
			missing = append(missing, id)
		}
	}
	p.mu.Unlock()
	for _, id := range missing {
		p.applyGone(id, "advert gone while the nodes watch was down")
	}
}

// apply takes one advert (or its deletion) into the pool's view.
func (p *Pool) apply(e jetstream.KeyValueEntry) {
	id := e.Key()
	switch e.Operation() {
	case jetstream.KeyValuePut:
		a, err := ParseAdvert(e.Value())
		if err != nil || a.Node != id {
			p.log.Warn("remote pool: ignoring a bad node advert", "key", id, "err", err)
			return
		}
		p.update(id, &a, "no longer serves the pool", pools.ExitClosed)
	case jetstream.KeyValuePurge: // the limit marker of an expired advert
		p.update(id, nil, "advert expired (no heartbeat)", pools.ExitCrash)
	default:
		p.update(id, nil, "advert deleted", pools.ExitClosed)
	}
}

// applyGone takes node id as gone for reason.
func (p *Pool) applyGone(id, reason string) { p.update(id, nil, reason, pools.ExitCrash) }

// update applies node id's advert a (nil: the node is gone); a node that
// was live and is gone or no longer serves the pool leaves for reason,
// with class in its telemetry.
func (p *Pool) update(id string, a *Advert, reason, class string) {
	gone := a == nil
	var pa PoolAdvert
	serves := false
	if a != nil {
		pa, serves = a.Pools[p.o.Name]
	}
	p.mu.Lock()
	n := p.nodes[id]
	var ev func()
	var closes []closeSends
	switch {
	case !gone && serves:
		if n == nil {
			n = &node{id: id, index: p.nextNode}
			p.nextNode++
			p.nodes[id] = n
		}
		if !n.live {
			// Back (a node presumed gone that heartbeats again): off the
			// gone list, so that list never evicts a live node.
			p.gone = slices.DeleteFunc(p.gone, func(g string) bool { return g == id })
			// Its sessions were failed as lost: drop their state there.
			for _, s := range n.lost {
				closes = append(closes, closeSends{id: s, to: []string{id}})
			}
			n.lost = nil
			ev = p.workerEvent(telemetry.PoolWorkerStart, n, *a, "", "")
		}
		n.advert, n.pool, n.live = *a, pa, true
	case n != nil && n.live:
		n.live = false
		p.gone = append(p.gone, id)
		if len(p.gone) > maxGone {
			delete(p.nodes, p.gone[0])
			p.gone = p.gone[1:]
		}
		ev = p.workerEvent(telemetry.PoolWorkerExit, n, n.advert, reason, class)
		p.loseLocked(n, reason)
	}
	if c := p.advertisedLocked(); c > 0 {
		p.lastCap = c
	}
	p.broadcastLocked()
	p.mu.Unlock()
	if ev != nil {
		ev()
	}
	for _, cs := range closes {
		p.sendCloses(cs)
	}
	if gone && n != nil {
		p.purgeNode(id)
	}
	if p.hooks.node != nil && n != nil {
		p.hooks.node(id, gone || !serves)
	}
}

// loseLocked fails the sessions pinned to n, which is gone with their
// state: their waiting batches now, their later ones at Submit. p.mu held.
func (p *Pool) loseLocked(n *node, reason string) {
	for _, sess := range p.sessions {
		if sess.node != n.id || sess.lost != nil {
			continue
		}
		sess.lost = fmt.Errorf("%w: session %s was on node %s (worker %d, pid %d), which went away: %s",
			pools.ErrSessionLost, sess.id, n.id, n.index, n.advert.Pid, reason)
		if len(n.lost) < maxLostKept {
			n.lost = append(n.lost, sess.id)
		}
		p.settleLocked(sess)
	}
	for id, w := range p.waiters {
		if w.node != n.id || !w.b.Pinned() {
			continue
		}
		delete(p.waiters, id)
		delete(p.bySeq, w.seq)
		err := error(fmt.Errorf("%w: session %s was on node %s, which went away: %s", pools.ErrSessionLost, w.b.Session, n.id, reason))
		if sess := p.sessions[w.b.Session]; sess != nil && sess.lost != nil {
			err = sess.lost
		} else if e, ok := p.ended.Get(w.b.Session); ok {
			err = e.Err
		}
		w.done <- outcome{err: err}
	}
	n.sessions = 0
}

// purgeNode removes what is left on a gone node's subject (its sessions'
// batches and control calls): no node will ever read it.
func (p *Pool) purgeNode(id string) {
	ctx, cancel := cleanupContext(p.life)
	defer cancel()
	if err := p.work.Purge(ctx, jetstream.WithPurgeSubject(NodeSubject(p.o.Name, id))); err != nil {
		p.log.Debug("remote pool: purging a gone node's subject", "node", id, "err", err)
	}
}

// workerEvent returns the emission of a pool.worker.start or .exit event
// for n, to call once p.mu is released. p.mu held.
func (p *Pool) workerEvent(ev telemetry.Event, n *node, a Advert, reason, class string) func() {
	if p.o.Telemetry == nil {
		return nil
	}
	md := telemetry.Metadata{"pool": p.name, "kind": string(pools.KindRemote), "worker": n.index, "pid": a.Pid,
		"node": n.id, "host": a.Host}
	if ev == telemetry.PoolWorkerExit {
		md["reason"], md["class"] = reason, class
	}
	return func() { p.o.Telemetry.Emit(ev, telemetry.Measurements{}, md) }
}

// advertisedLocked sums the capacity live, non-draining nodes advertise.
// p.mu held.
func (p *Pool) advertisedLocked() int {
	c := 0
	for _, n := range p.nodes {
		if n.live && !n.advert.Draining {
			c += n.pool.Capacity
		}
	}
	return c
}

// liveCountLocked counts live, non-draining nodes with capacity. p.mu held.
func (p *Pool) liveCountLocked() int {
	c := 0
	for _, n := range p.nodes {
		if n.live && !n.advert.Draining && n.pool.Capacity > 0 {
			c++
		}
	}
	return c
}

// capLocked is Capacity. p.mu held.
func (p *Pool) capLocked() int {
	if p.o.MaxInFlight > 0 {
		return p.o.MaxInFlight
	}
	if c := p.advertisedLocked(); c > 0 {
		return c
	}
	return max(p.lastCap, 1)
}

// pickLocked chooses the node for a new pinned session: the live,
// non-draining node with the least load (running, waiting and pinned
// sessions) per unit of capacity; nil when there is none. p.mu held.
func (p *Pool) pickLocked() *node {
	var best *node
	var bestLoad, bestCap int
	for _, n := range p.nodes {
		if !n.live || n.advert.Draining || n.pool.Capacity <= 0 {
			continue
		}
		load := n.pool.Running + n.pool.Waiting + n.sessions
		// load/cap < bestLoad/bestCap, ties to the lower index (stable)
		if best == nil || load*bestCap < bestLoad*n.pool.Capacity ||
			(load*bestCap == bestLoad*n.pool.Capacity && n.index < best.index) {
			best, bestLoad, bestCap = n, load, n.pool.Capacity
		}
	}
	return best
}

// account counts a reply in its node's counters and returns the node's
// index and pid for CallInfo (-1 and the reply's pid for a node never
// advertised).
func (p *Pool) account(r Reply, failed bool, items int) (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.nodes[r.Node]
	if n == nil {
		return -1, r.Pid
	}
	n.calls++
	n.items += uint64(items)
	n.busy += r.Service
	if failed {
		n.errors++
	}
	return n.index, n.advert.Pid
}

// Stats returns one WorkerStats per node serving the pool (and the last
// gone ones, stopped), by index: its state and pid from its advert, its
// counters from the replies this coordinator got. Waiting counts Submits
// waiting for an in-flight slot, Running the batches in flight.
func (p *Pool) Stats() pools.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := pools.Stats{Name: p.name, Kind: pools.KindRemote, Waiting: p.queued, Running: p.inflight}
	for _, n := range p.nodes {
		ws := pools.WorkerStats{ID: n.index, Pid: n.advert.Pid, Calls: n.calls, Items: n.items, Errors: n.errors, Busy: n.busy}
		switch {
		case !n.live:
			ws.State = pools.WorkerStopped
		case n.pool.Running > 0:
			ws.State, ws.Running = pools.WorkerBusy, true
		default:
			ws.State = pools.WorkerIdle
		}
		st.Workers = append(st.Workers, ws)
	}
	slices.SortFunc(st.Workers, func(a, b pools.WorkerStats) int { return a.ID - b.ID })
	return st
}

// Nodes returns the adverts of the live nodes serving the pool, sorted by
// node id.
func (p *Pool) Nodes() []Advert {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Advert
	for _, n := range p.nodes {
		if n.live {
			out = append(out, n.advert)
		}
	}
	sortAdverts(out)
	return out
}
