package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

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
	// server's acknowledgement).
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
		o.session = h.Get(remote.HeaderSession)
		switch {
		case o.session == "":
		case h.Get(remote.HeaderControl) != "":
			o.after = s.pinnedOf(o.session)
		case h.Get(remote.HeaderUnpinned) != "1":
			o.track = s.trackPinned(o.session)
		}
	}
	n.batches.Add(1)
	go func() {
		defer n.batches.Done()
		defer func() { <-c.slots }()
		if o.track != nil {
			defer s.untrackPinned(o.session, o.track)
		}
		n.handle(s, c, m, o)
	}()
}

// handle runs one message to its end: answered and acknowledged, handed
// back (Nak), or terminated.
func (n *Node) handle(s *served, c *consumer, m jetstream.Msg, o order) {
	if n.draining.Load() {
		// Taken by a pull under way as the drain began: another node runs it.
		_ = m.Nak()
		return
	}
	stop := n.keepAlive(c, m)
	defer stop()
	dctx, cancel := context.WithTimeout(n.workCtx, decodeTimeout)
	call, err := n.codec.DecodeCall(dctx, m.Headers(), m.Data())
	cancel()
	if err != nil {
		n.undecodable(s, m, call, err)
		return
	}
	if call.Control != "" {
		n.control(s, m, call, o)
		return
	}
	results, ci, err := n.run(s, call)
	switch {
	case err != nil && n.workCtx.Err() != nil:
		// The drain ran out of time: hand the batch back at once.
		_ = m.Nak()
		return
	case err != nil && errors.Is(err, errCancelled):
		// Its caller has gone and waits for no reply.
		_ = m.Ack()
		return
	case errors.Is(err, pools.ErrPoolFailed):
		// This node cannot run it now; another node may.
		s.pause(poolFailedPause)
		_ = m.NakWithDelay(poolFailedPause)
		return
	}
	r := remote.Reply{ID: call.ID, Node: n.id, Worker: ci.Worker, Pid: ci.Pid, Service: ci.Service, Results: results, Err: err}
	if md, merr := m.Metadata(); merr == nil {
		r.Deliveries = int(md.NumDelivered) // > 1: a node before this one died holding it
	}
	if err := n.publishReply(call.Coord, r); err != nil {
		_ = m.Nak()
		return
	}
	// Only now: the result is stored, so acknowledging cannot lose it.
	_ = m.Ack()
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
	results, err := s.pool.Submit(pools.WithCallInfo(ctx, &ci), call.Batch)
	if err != nil && context.Cause(ctx) == errCancelled {
		err = fmt.Errorf("%w: %w", errCancelled, err)
	}
	return results, ci, err
}

// control runs a control call from the node's own consumer.
func (n *Node) control(s *served, m jetstream.Msg, call remote.Call, o order) {
	switch call.Control {
	case remote.ControlCloseSession:
		for _, b := range o.after {
			select {
			case <-b.done:
			case <-n.workCtx.Done():
				_ = m.Nak()
				return
			}
		}
		if call.Batch.Session != "" {
			s.pool.CloseSession(call.Batch.Session)
		}
		_ = m.Ack()
	default:
		n.log.Warn("slither node: unknown control call", "node", n.id, "pool", s.name, "control", call.Control, "coord", call.Coord)
		_ = m.TermWithReason(truncate("unknown control call "+call.Control, maxTermReason))
	}
}

// undecodable deals with a message that does not decode: a malformed one
// is answered with the error (when its coordinator is known) and
// terminated, since no node could run it; a failure to read its payload
// object that may pass is retried later.
func (n *Node) undecodable(s *served, m jetstream.Msg, call remote.Call, err error) {
	permanent := errors.Is(err, remote.ErrMalformed) || errors.Is(err, remote.ErrPayloadTooLarge) ||
		errors.Is(err, jetstream.ErrObjectNotFound)
	if !permanent && n.workCtx.Err() == nil {
		n.log.Warn("slither node: reading a batch", "node", n.id, "pool", s.name, "batch", call.ID, "err", err)
		_ = m.NakWithDelay(poolFailedPause)
		return
	}
	n.log.Warn("slither node: dropping a malformed batch", "node", n.id, "pool", s.name, "batch", call.ID, "coord", call.Coord, "err", err)
	if call.ID != "" && remote.ValidName(call.Coord) == nil && call.Control == "" {
		if perr := n.publishReply(call.Coord, remote.Reply{ID: call.ID, Node: n.id, Err: err}); perr != nil {
			_ = m.Nak()
			return
		}
	}
	_ = m.TermWithReason(truncate(err.Error(), maxTermReason))
}

// publishReply publishes r to coord's results and waits for the server to
// store it, retrying (with the same message id, so a retry that follows a
// lost acknowledgement stores nothing twice) until it is stored or the
// node stops for good.
func (n *Node) publishReply(coord string, r remote.Reply) error {
	pause := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(n.workCtx, publishTimeout)
		msg, err := n.codec.EncodeReply(ctx, coord, r)
		if err == nil {
			_, err = n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(remote.ReplyMsgID(r.ID)))
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			// The results stream is gone (or its leader is): make it again.
			_, _ = remote.EnsureResults(ctx, n.js)
		}
		cancel()
		if err == nil {
			return nil
		}
		if n.workCtx.Err() != nil {
			return fmt.Errorf("node %s: publishing the result of batch %s: %w", n.id, r.ID, err)
		}
		n.log.Warn("slither node: publishing a result", "node", n.id, "batch", r.ID, "coord", coord, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-n.workCtx.Done():
			t.Stop()
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// keepAlive renews m's lease (a progress ack) every third of the
// consumer's AckWait until the returned stop is called; stop waits for the
// renewing goroutine to end.
func (n *Node) keepAlive(c *consumer, m jetstream.Msg) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
