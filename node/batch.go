package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/internal/textcut"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// inflight is a pinned batch taken from the node's own consumer; done is
// closed once it is answered.
type inflight struct{ done chan struct{} }

// order is what a message taken from the node's own consumer must keep of
// the order it arrived in: a pinned batch is tracked until answered, and a
// close-session call waits for the session's batches taken before it.
type order struct {
	track   *inflight
	session string
	after   []*inflight
}

// Timeouts of the node's own requests.
const (
	// decodeTimeout bounds reading a batch, its payload object included.
	decodeTimeout = time.Minute
	// publishTimeout bounds one attempt to publish a result (and get the
	// server's acknowledgement), and is the least time a node tries for.
	publishTimeout = 10 * time.Second
	// poolFailedPause is how long the node takes no batches of a pool whose
	// local breaker is open (and how long the batch it hands back waits).
	poolFailedPause = time.Second
	// maxTermReason bounds the reason given with a terminated message.
	maxTermReason = 256
)

// errCancelled is the cause of a batch cancelled by its coordinator.
var errCancelled = errors.New("node: cancelled by its coordinator")

// take starts the handling of one message. It runs in the fetch loop, so
// the bookkeeping of message order happens in the order of delivery.
func (n *Node) take(s *served, c *consumer, m jetstream.Msg) {
	var o order
	if c.node {
		h := m.Headers()
		o.session = scopedSession(h.Get(remote.HeaderCoord), h.Get(remote.HeaderSession))
		switch {
		case o.session == "":
		case h.Get(remote.HeaderControl) != "":
			o.after = s.pinnedOf(o.session)
		case h.Get(remote.HeaderUnpinned) != "1":
			o.track = s.trackPinned(o.session)
		}
	}
	n.batches.Add(1)
	go func() { // Shutdown waits for it: n.batches.Wait, in the drain
		defer n.batches.Done()
		defer func() { <-c.slots }()
		if o.track != nil {
			defer s.untrackPinned(o.session, o.track)
		}
		n.handle(s, c, m, o)
	}()
}

// handle runs one message to its end: answered and acknowledged, handed
// back (Nak), or terminated. A delivery of a batch that already runs on
// this node (its lease ran out while it ran: a NATS outage) is not run
// again: it waits, leased, for the running one, whose reply is the
// batch's, and is then acknowledged; if that one handed the batch back
// instead, this delivery is handled as any other.
func (n *Node) handle(s *served, c *consumer, m jetstream.Msg, o order) {
	stop := n.keepAlive(c, m)
	defer stop()
	h := m.Headers()
	key := cancelKey{h.Get(remote.HeaderCoord), h.Get(remote.HeaderBatch)}
	if key.id == "" {
		n.settle(s, c, m, o)
		return
	}
	if c.node && n.wasAnswered(key) {
		n.log.Info("slither node: an answered batch was delivered again (its ack was lost); acknowledging it",
			"node", n.id, "pool", s.name, "batch", key.id, "coord", key.coord)
		_ = m.Ack()
		return
	}
	r, first := n.startRunning(key)
	if !first {
		n.log.Info("slither node: a batch running here was delivered again; its first delivery answered it",
			"node", n.id, "pool", s.name, "batch", key.id, "coord", key.coord)
		_ = m.Ack()
		return
	}
	settled := false
	defer func() { n.stopRunning(key, r, settled) }()
	settled = n.settle(s, c, m, o)
	if settled && c.node {
		n.remember(key)
	}
}

// settle handles one delivery and reports whether the batch is settled
// (answered, or dropped for good, and acknowledged) rather than handed
// back to the stream.
//
// Only a batch of the shared consumer is ever handed back: another node
// may run it. One of the node's own consumer (a pinned batch, a control
// call) would only come back here, and after MaxDeliver deliveries never
// again, holding its caller until its context ends: it is answered with
// the error instead (the local breaker is open, its payload cannot be
// read, the drain ran out of time). During a drain, batches already taken
// from the own consumer are run and answered; only shared ones go back.
func (n *Node) settle(s *served, c *consumer, m jetstream.Msg, o order) bool {
	if n.draining.Load() && !c.node {
		// Taken by a pull under way as the drain began: another node runs it.
		_ = m.Nak()
		return false
	}
	deliveries := deliveriesOf(m)
	if limit := c.maxDeliver.Load(); overDelivered(deliveries, limit) && m.Headers().Get(remote.HeaderControl) == "" {
		return n.redelivered(s, c, m, deliveries, limit)
	}
	dctx, cancel := context.WithTimeout(n.workCtx, decodeTimeout)
	call, err := n.codec.DecodeCall(dctx, m.Headers(), m.Data())
	cancel()
	if err != nil {
		return n.undecodable(s, c, m, call, deliveries, err)
	}
	if call.Control != "" {
		return n.control(s, m, call, o)
	}
	results, ci, err := n.run(s, call)
	r := remote.Reply{ID: call.ID, Node: n.id, Worker: ci.Worker, Pid: ci.Pid, Service: ci.Service,
		Deliveries: deliveries, Results: results, Err: err} // Deliveries > 1: a node before this one died holding it
	switch {
	case err != nil && n.workCtx.Err() != nil:
		if !c.node {
			// The drain ran out of time: hand the batch back at once.
			_ = m.Nak()
			return false
		}
		// Only this node could run it, and it is going: so is the
		// session's state.
		r.Results, r.Err = nil, fmt.Errorf("node %s shut down before the batch ended: %w: %w", n.id, pools.ErrSessionLost, err)
	case errors.Is(err, errCancelled):
		// Its caller has gone and waits for no reply.
		_ = m.Ack()
		return true
	case errors.Is(err, pools.ErrPoolFailed):
		s.pause(poolFailedPause)
		if !c.node {
			// This node cannot run it now; another node may.
			_ = m.NakWithDelay(poolFailedPause)
			return false
		}
		// No other node can: its caller hears of the breaker.
	}
	return n.answer(c, m, call.Coord, r)
}

// answer publishes r and, once it is stored, acknowledges m (only then:
// acknowledging first could lose the result). A reply that cannot be
// stored in time hands the batch back.
func (n *Node) answer(c *consumer, m jetstream.Msg, coord string, r remote.Reply) bool {
	ctx, cancel := n.replyCtx(c)
	defer cancel()
	err := n.publishReply(ctx, coord, r)
	if err != nil && c.node && n.workCtx.Err() != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		// The drain ran out while this pinned batch's reply was being
		// retried: one last try (no other node can answer it).
		lctx, lcancel := context.WithTimeout(context.Background(), cleanupTimeout)
		err = n.publishReply(lctx, coord, r)
		lcancel()
	}
	if err != nil {
		n.handBack(c, m, r.ID, err)
		return false
	}
	_ = m.Ack()
	return true
}

// handBack naks m after its reply could not be published: another node
// (or this one, for its own consumer's batches: they run again) answers it
// later, and the coordinator keeps the first reply stored.
func (n *Node) handBack(c *consumer, m jetstream.Msg, id string, err error) {
	if n.workCtx.Err() == nil && !errors.Is(err, nats.ErrConnectionClosed) {
		n.log.Warn("slither node: gave up publishing a result; handing the batch back", "node", n.id,
			"consumer", c.durable, "batch", id, "err", err)
	}
	_ = m.Nak()
}

// deliveriesOf is how many times m has been delivered (0 when unknown).
func deliveriesOf(m jetstream.Msg) int {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	return int(md.NumDelivered)
}

// overDelivered reports whether a delivery is its consumer's last one
// (limit is MaxDeliver, <= 0 unlimited): the server delivers it no more,
// so whatever happens to this run, nobody would answer the batch. The
// first delivery is always run (MaxDeliver 1: no redelivery at all).
func overDelivered(deliveries int, limit int64) bool {
	return limit > 0 && deliveries > 1 && int64(deliveries) >= limit
}

// redelivered answers a batch's last delivery, without running it, with
// an error matching remote.ErrRedelivered and pools.ErrWorkerCrashed (the
// error a coordinator's MAX_DELIVERIES advisory gives; the reply, unlike
// the advisory, is stored until read), and terminates it.
func (n *Node) redelivered(s *served, c *consumer, m jetstream.Msg, deliveries int, limit int64) bool {
	h := m.Headers()
	id, coord := h.Get(remote.HeaderBatch), h.Get(remote.HeaderCoord)
	reason := fmt.Sprintf("delivered %d times (MaxDeliver %d) without a result", deliveries, limit)
	n.log.Warn("slither node: not running a batch delivered too many times", "node", n.id, "pool", s.name,
		"consumer", c.durable, "batch", id, "coord", coord, "deliveries", deliveries, "max_deliver", limit)
	if id != "" && remote.ValidName(coord) == nil {
		what := id
		if h.Get(remote.HeaderObject) == "" { // naming it costs no object store read
			if call, err := n.codec.DecodeCall(n.workCtx, h, m.Data()); err == nil {
				what = fmt.Sprintf("%s (%s.%s)", id, call.Batch.Module, call.Batch.Function)
			}
		}
		err := fmt.Errorf("%w: batch %s was delivered %d times without a result: %w",
			remote.ErrRedelivered, what, deliveries, pools.ErrWorkerCrashed)
		ctx, cancel := n.replyCtx(c)
		defer cancel()
		if perr := n.publishReply(ctx, coord, remote.Reply{ID: id, Node: n.id, Deliveries: deliveries, Err: err}); perr != nil {
			// The server delivers it no more: its coordinator's advisory
			// ends the caller's wait.
			n.handBack(c, m, id, perr)
			return false
		}
	}
	_ = m.TermWithReason(reason)
	return true
}

// run submits call's batch to the local pool with the call's deadline,
// trace and coordinator, cancellable by the coordinator.
func (n *Node) run(s *served, call remote.Call) ([]any, pools.CallInfo, error) {
	ctx := withCoord(n.workCtx, call.Coord)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer n.registerCancel(call.Coord, call.ID, cancel)()
	if !call.Deadline.IsZero() {
		var dcancel context.CancelFunc
		ctx, dcancel = context.WithDeadline(ctx, call.Deadline)
		defer dcancel()
	}
	if call.Trace.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, call.Trace)
	}
	var ci pools.CallInfo
	b := call.Batch
	b.Session = scopedSession(call.Coord, b.Session)
	results, err := s.pool.Submit(pools.WithCallInfo(ctx, &ci), b)
	if err != nil && context.Cause(ctx) == errCancelled {
		err = fmt.Errorf("%w: %w", errCancelled, err)
	}
	return results, ci, err
}

// control runs a control call from the node's own consumer.
func (n *Node) control(s *served, m jetstream.Msg, call remote.Call, o order) bool {
	switch call.Control {
	case remote.ControlCloseSession:
		for _, b := range o.after {
			select {
			case <-b.done:
			case <-n.workCtx.Done():
				// Out of time: closing the engine closes every session.
				_ = m.Ack()
				return true
			}
		}
		if call.Batch.Session != "" {
			s.pool.CloseSession(scopedSession(call.Coord, call.Batch.Session))
		}
		_ = m.Ack()
	default:
		n.log.Warn("slither node: unknown control call", "node", n.id, "pool", s.name, "control", call.Control, "coord", call.Coord)
		_ = m.TermWithReason(textcut.Bytes("unknown control call "+call.Control, maxTermReason))
	}
	return true
}

// undecodable deals with a message that does not decode. A malformed one
// is answered with the error (when its coordinator is known) and
// terminated, since no node could run it; so is one of the node's own
// consumer, whatever the error (no other node would take it). A failure to
// read the payload object of a shared batch, which may pass, hands it back.
func (n *Node) undecodable(s *served, c *consumer, m jetstream.Msg, call remote.Call, deliveries int, err error) bool {
	permanent := errors.Is(err, remote.ErrMalformed) || errors.Is(err, remote.ErrPayloadTooLarge) ||
		errors.Is(err, jetstream.ErrObjectNotFound)
	if !permanent && !c.node {
		n.log.Warn("slither node: reading a batch", "node", n.id, "pool", s.name, "batch", call.ID, "err", err)
		_ = m.NakWithDelay(poolFailedPause)
		return false
	}
	n.log.Warn("slither node: answering a batch it cannot read", "node", n.id, "pool", s.name, "consumer", c.durable,
		"batch", call.ID, "coord", call.Coord, "err", err)
	if call.ID != "" && remote.ValidName(call.Coord) == nil && call.Control == "" {
		ctx, cancel := n.replyCtx(c)
		defer cancel()
		if perr := n.publishReply(ctx, call.Coord, remote.Reply{ID: call.ID, Node: n.id, Deliveries: deliveries, Err: err}); perr != nil {
			n.handBack(c, m, call.ID, perr)
			return false
		}
	}
	_ = m.TermWithReason(textcut.Bytes(err.Error(), maxTermReason))
	return true
}

// keepAlive renews m's lease (a progress ack) every third of the
// consumer's AckWait until the returned stop is called; stop waits for the
// renewing goroutine to end.
func (n *Node) keepAlive(c *consumer, m jetstream.Msg) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() { // the returned stop waits for it (<-done)
		defer close(done)
		t := time.NewTimer(c.progressEvery())
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				// A failed progress ack (NATS reconnecting) is retried at
				// the next tick; the lease may then run out, and the batch
				// run twice: the coordinator keeps one result.
				_ = m.InProgress()
				t.Reset(c.progressEvery())
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// trackPinned records a pinned batch of session taken from the node's own
// consumer.
func (s *served) trackPinned(session string) *inflight {
	b := &inflight{done: make(chan struct{})}
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.pinned[session] == nil {
		s.pinned[session] = map[*inflight]struct{}{}
	}
	s.pinned[session][b] = struct{}{}
	return b
}

func (s *served) untrackPinned(session string, b *inflight) {
	close(b.done)
	s.smu.Lock()
	defer s.smu.Unlock()
	delete(s.pinned[session], b)
	if len(s.pinned[session]) == 0 {
		delete(s.pinned, session)
	}
}

// pinnedOf lists the pinned batches of session not yet answered.
func (s *served) pinnedOf(session string) []*inflight {
	s.smu.Lock()
	defer s.smu.Unlock()
	out := make([]*inflight, 0, len(s.pinned[session]))
	for b := range s.pinned[session] {
		out = append(out, b)
	}
	return out
}

// scopedSession is the local pool's id of coordinator coord's session id:
// two engines that name a session alike must not share its state on a
// node they both use. Python on the node sees this id as
// slither.context().session_id; host calls go back with the engine's own.
func scopedSession(coord, id string) string {
	if id == "" {
		return ""
	}
	return coord + "/" + id
}
