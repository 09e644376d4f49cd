package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// served is one pool the node serves: the local engine pool and the two
// consumers it pulls from.
type served struct {
	n        *Node
	name     string
	pool     pools.Pool
	capacity int
	any, own *consumer

	stmu   sync.Mutex
	stream jetstream.Stream // replaced when the stream is made again

	// pinned holds the pinned batches of each session taken from the own
	// consumer and not yet answered, so that a close-session control call
	// runs after the batches queued before it.
	smu    sync.Mutex
	pinned map[string]map[*inflight]struct{}

	// pausedUntil (Unix ns) stops the pulls while the local pool's
	// breaker is open: the node would only hand the batches back.
	pausedUntil atomic.Int64
}

// pause stops s's pulls for d.
func (s *served) pause(d time.Duration) {
	s.pausedUntil.Store(time.Now().Add(d).UnixNano())
}

// waitUnpaused waits while s is paused; false means the drain began.
func (n *Node) waitUnpaused(s *served) bool {
	for {
		d := time.Until(time.Unix(0, s.pausedUntil.Load()))
		if d <= 0 {
			return n.fetchCtx.Err() == nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-n.fetchCtx.Done():
			t.Stop()
			return false
		}
	}
}

// consumer is one durable the node pulls from, with its own slots: the
// shared one holds at most capacity leases (batches any node could run
// must not wait here while another node idles); the node's own one holds
// at most capacity more, which only this node can run anyway. Both kinds
// then queue in the local pool, which runs capacity at a time.
type consumer struct {
	durable string
	node    bool // the node's own consumer
	slots   chan struct{}

	mu   sync.Mutex
	cons jetstream.Consumer
	// ackWait is the consumer's AckWait, refreshed every infoRefresh: a
	// coordinator may change it after the node started.
	ackWait atomic.Int64
	// maxDeliver is the consumer's MaxDeliver (<= 0: unlimited), refreshed
	// with ackWait: the node answers a batch's last delivery itself
	// (see redelivered).
	maxDeliver atomic.Int64
	refreshed  time.Time // fetch loop only
}

// infoRefresh is how often a fetch loop re-reads its consumer's settings.
const infoRefresh = 10 * time.Second

// retryPause is how long a fetch loop waits after an error before pulling
// again (NATS reconnecting, a consumer being re-created).
const retryPause = 250 * time.Millisecond

// serve sets up pool name: its stream and shared consumer (created with
// default settings when no coordinator has yet), and the node's own
// consumer with the shared one's settings.
func (n *Node) serve(ctx context.Context, name string) (*served, error) {
	p, err := n.poolOf(name)
	if err != nil {
		return nil, err
	}
	s := &served{n: n, name: name, pool: p, capacity: max(p.Capacity(), 1), pinned: map[string]map[*inflight]struct{}{}}
	st, anyCons, err := remote.EnsurePool(ctx, n.js, name, remote.PoolSettings{}, false)
	if err != nil {
		return nil, fmt.Errorf("node: serving pool %q: %w", name, err)
	}
	s.stream = st
	s.any = &consumer{durable: remote.AnyDurable, slots: make(chan struct{}, s.capacity), refreshed: time.Now()}
	s.any.set(anyCons)
	s.own = &consumer{durable: remote.NodeDurable(n.id), node: true, slots: make(chan struct{}, s.capacity), refreshed: time.Now()}
	if err := s.ensureOwn(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *served) workStream() jetstream.Stream {
	s.stmu.Lock()
	defer s.stmu.Unlock()
	return s.stream
}

func (s *served) consumers() []*consumer { return []*consumer{s.any, s.own} }

// settings are the shared consumer's, for the node's own.
func (s *served) settings() remote.PoolSettings {
	c := s.any.current().CachedInfo().Config
	runs := c.MaxDeliver
	if runs > 1 {
		runs-- // the consumer has the answering delivery too; PoolSettings adds it back
	}
	return remote.PoolSettings{AckWait: c.AckWait, MaxDeliver: runs, MaxAckPending: c.MaxAckPending}
}

// ensureOwn creates (or re-creates) the node's own consumer.
func (s *served) ensureOwn(ctx context.Context) error {
	cons, err := s.workStream().CreateOrUpdateConsumer(ctx, s.settings().NodeConsumerConfig(s.name, s.n.id))
	if err != nil {
		return fmt.Errorf("node: pool %q: creating consumer %s: %w", s.name, s.own.durable, err)
	}
	s.own.set(cons)
	return nil
}

// reensure looks c up again after its consumer (or stream) went away: a
// coordinator or an operator deleted it, or the server dropped it.
func (s *served) reensure(ctx context.Context, c *consumer) error {
	if c.node {
		return s.ensureOwn(ctx)
	}
	st, cons, err := remote.EnsurePool(ctx, s.n.js, s.name, remote.PoolSettings{}, false)
	if err != nil {
		return err
	}
	s.stmu.Lock()
	s.stream = st
	s.stmu.Unlock()
	c.set(cons)
	return nil
}

func (c *consumer) current() jetstream.Consumer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cons
}

func (c *consumer) set(cons jetstream.Consumer) {
	c.mu.Lock()
	c.cons = cons
	c.mu.Unlock()
	if info := cons.CachedInfo(); info != nil {
		c.store(info.Config)
	}
}

// store keeps the settings of c's consumer that pace and bound its batches.
func (c *consumer) store(cfg jetstream.ConsumerConfig) {
	c.ackWait.Store(int64(cfg.AckWait))
	c.maxDeliver.Store(int64(cfg.MaxDeliver))
}

// lease is the consumer's AckWait (remote.DefaultAckWait when unknown).
func (c *consumer) lease() time.Duration {
	if aw := time.Duration(c.ackWait.Load()); aw > 0 {
		return aw
	}
	return remote.DefaultAckWait
}

// progressEvery is how often a running batch's lease is renewed: three
// times per AckWait, so one lost progress ack does not cost the lease.
func (c *consumer) progressEvery() time.Duration {
	return max(c.lease()/3, 10*time.Millisecond)
}

// deleteNodeConsumer removes the node's own consumer (the server would
// after its inactive threshold anyway).
func (s *served) deleteNodeConsumer(ctx context.Context) error {
	if s.own == nil || s.own.current() == nil {
		return nil
	}
	err := s.workStream().DeleteConsumer(ctx, s.own.durable)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	return nil
}

// fetchLoop pulls batches from c while the node is not draining: it takes
// a free slot (waiting for one), grabs every other free one, and asks for
// that many messages; each message keeps its slot until it is answered.
func (n *Node) fetchLoop(s *served, c *consumer) {
	defer n.loops.Done()
	fails := 0 // pulls failed in a row
	for {
		if !n.waitUnpaused(s) {
			return
		}
		select {
		case c.slots <- struct{}{}:
		case <-n.fetchCtx.Done():
			return
		}
		free := 1
	grab:
		for free < cap(c.slots) {
			select {
			case c.slots <- struct{}{}:
				free++
			default:
				break grab
			}
		}
		got, err := n.fetch(s, c, free)
		for ; got < free; got++ {
			<-c.slots
		}
		if err != nil {
			fails++
			n.fetchFailed(s, c, err, fails)
		} else {
			fails = 0
		}
		if time.Since(c.refreshed) > infoRefresh {
			n.refresh(s, c)
		}
	}
}

// fetch pulls up to free messages and starts each; it returns how many it
// started (each holds a slot until it is answered).
func (n *Node) fetch(s *served, c *consumer, free int) (int, error) {
	b, err := c.current().Fetch(free, jetstream.FetchMaxWait(n.o.FetchWait))
	if err != nil {
		return 0, err
	}
	got := 0
	for m := range b.Messages() {
		got++
		n.take(s, c, m)
	}
	return got, b.Error()
}

// fetchFailed deals with a failed pull: a closed connection fails the
// node; a missing consumer is made again; anything else (NATS restarting)
// is retried after a pause. fails counts the failures in a row: an outage
// is logged once, not at every retry.
func (n *Node) fetchFailed(s *served, c *consumer, err error, fails int) {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed):
		n.fail(fmt.Errorf("node %s: pool %q: the NATS connection is closed: %w", n.id, s.name, err))
		n.stopFetch()
		return
	case missing(err):
		ctx, cancel := context.WithTimeout(n.fetchCtx, cleanupTimeout)
		rerr := s.reensure(ctx, c)
		cancel()
		if rerr == nil {
			n.log.Info("slither node: consumer made again", "node", n.id, "pool", s.name, "consumer", c.durable, "after", err)
			return
		}
		err = fmt.Errorf("%w (making it again: %w)", err, rerr)
	}
	if n.fetchCtx.Err() != nil {
		return
	}
	level := slog.LevelWarn
	if fails > 1 {
		level = slog.LevelDebug
	}
	n.log.Log(context.Background(), level, "slither node: pulling batches", "node", n.id, "pool", s.name, "consumer", c.durable, "err", err, "failures", fails)
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-n.fetchCtx.Done():
	}
}

// refresh re-reads c's settings (its AckWait paces the progress acks, its
// MaxDeliver bounds the deliveries the node runs).
func (n *Node) refresh(s *served, c *consumer) {
	c.refreshed = time.Now()
	ctx, cancel := context.WithTimeout(n.fetchCtx, cleanupTimeout)
	defer cancel()
	info, err := c.current().Info(ctx)
	if err != nil {
		if n.fetchCtx.Err() == nil {
			n.log.Debug("slither node: reading consumer settings", "node", n.id, "pool", s.name, "consumer", c.durable, "err", err)
		}
		return
	}
	c.store(info.Config)
}
