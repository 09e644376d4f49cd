package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/pools"
)

// Back-off between publish attempts while NATS is unreachable or the
// stream is full; a Submit retries until its context ends.
const (
	minRetryWait = 10 * time.Millisecond
	maxRetryWait = time.Second
)

// waiter is a Submit waiting for its batch's result.
type waiter struct {
	id   string
	b    pools.Batch
	node string       // the node a pinned batch went to; "" for any node
	seq  uint64       // the batch's stream sequence, once published
	done chan outcome // buffered: whoever removes the waiter from p.waiters sends once
}

// outcome ends a waiter: a result message (hdr, data) or an error.
type outcome struct {
	hdr         nats.Header
	data        []byte
	err         error
	redelivered bool // MaxDeliver was reached: the message is still in the stream
}

// Submit publishes b to the pool's work stream and returns its results, in
// item order, once a node has run it; see [pools.Pool.Submit]. It waits for
// a free in-flight slot first (Capacity). A batch of a pinned session goes
// to the node that runs the session (chosen at its first batch: the least
// loaded live node); if that node is gone, the batch fails with
// pools.ErrSessionLost. A batch that every node taking it died under
// (MaxDeliver deliveries) fails with ErrRedelivered. When ctx ends the
// batch is withdrawn (deleted from the stream, and a cancel sent to the
// node running it) and the error wraps ctx's error.
func (p *Pool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	sess, node, err := p.enter(b)
	if err != nil {
		return nil, err
	}
	defer p.leave(sess)
	if err := p.acquire(ctx); err != nil {
		return nil, p.endError(ctx, b, err)
	}
	var settled uint64 // the stream sequence of a batch that got its outcome
	defer func() { p.releaseAfter(settled) }()

	id := p.coord + "-" + strconv.FormatUint(p.seq.Add(1), 10)
	call := Call{ID: id, Coord: p.coord, Pool: p.o.Name, Node: node, Batch: b, Trace: trace.SpanContextFromContext(ctx)}
	if dl, ok := ctx.Deadline(); ok {
		call.Deadline = dl
	}
	msg, err := p.codec.EncodeCall(ctx, call)
	if err != nil {
		return nil, fmt.Errorf("remote pool %s: %w", p.o.Name, err)
	}
	if obj := msg.Header.Get(HeaderObject); obj != "" {
		defer p.deleteObject(obj) // the batch has ended (or was withdrawn) when Submit returns
	}
	w := &waiter{id: id, b: b, node: node, done: make(chan outcome, 1)}
	if err := p.register(w, sess); err != nil {
		return nil, err
	}
	ack, err := p.publish(ctx, msg)
	if err != nil {
		if ctx.Err() != nil || p.life.Err() != nil {
			p.stored(ctx, w, msg)
		}
		p.abandon(ctx, w, b)
		return nil, p.endError(ctx, b, err)
	}
	if !p.published(w, ack.Sequence) {
		// The waiter was ended before its sequence was known (its node
		// was lost): make sure the message does not linger.
		p.deleteMsg(ctx, ack.Sequence)
	}
	if p.hooks.published != nil {
		p.hooks.published(id, ack.Sequence)
	}
	select {
	case o := <-w.done:
		settled = w.seq
		return p.finish(ctx, w, o)
	case <-ctx.Done():
	case <-p.life.Done():
	}
	if o, ok := p.abandon(ctx, w, b); ok {
		settled = w.seq
		return p.finish(ctx, w, o) // it ended just now after all
	}
	return nil, p.endError(ctx, b, nil)
}

// endError is the error of a batch that did not get a result because err,
// ctx ended or the pool closed.
func (p *Pool) endError(ctx context.Context, b pools.Batch, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("remote pool %s: batch %s.%s: %w", p.o.Name, b.Module, b.Function, ctx.Err())
	case p.life.Err() != nil || errors.Is(err, pools.ErrClosed):
		return fmt.Errorf("remote pool %s: batch %s.%s withdrawn: %w", p.o.Name, b.Module, b.Function, pools.ErrClosed)
	default:
		return fmt.Errorf("remote pool %s: batch %s.%s: %w", p.o.Name, b.Module, b.Function, err)
	}
}

// acquire takes an in-flight slot, waiting while Capacity are taken.
func (p *Pool) acquire(ctx context.Context) error {
	p.mu.Lock()
	p.queued++
	defer func() {
		p.mu.Lock()
		p.queued--
		p.mu.Unlock()
	}()
	for {
		if p.inflight < p.capLocked() {
			p.inflight++
			p.mu.Unlock()
			return nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.life.Done():
			return pools.ErrClosed
		}
		p.mu.Lock()
	}
}

// release gives back an in-flight slot.
func (p *Pool) release() {
	p.mu.Lock()
	p.inflight--
	p.broadcastLocked()
	p.mu.Unlock()
}

// releaseAfter gives back an in-flight slot once the message of the batch
// at stream sequence seq (0: none, or already deleted) is gone. A node acks
// a batch only after its result is stored, so the result can arrive before
// the ack has removed the message: deleting it first (a no-op when the ack
// won) keeps the stream at most Capacity batches deep, as the in-flight
// bound promises. The caller has its results already; only a Submit
// waiting for the slot waits for the delete.
func (p *Pool) releaseAfter(seq uint64) {
	if seq == 0 {
		p.release()
		return
	}
	settle := func() {
		p.deleteMsg(context.Background(), seq)
		p.release()
	}
	if !p.goBackground(settle) {
		settle() // the pool is tearing down: no new goroutines
	}
}

// broadcastLocked wakes every Submit waiting for a slot. p.mu held.
func (p *Pool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// register records w so its result finds it; a pinned batch whose node is
// already gone fails instead.
func (p *Pool) register(w *waiter, sess *session) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.node != "" && sess != nil && sess.lost != nil {
		return sess.lost
	}
	p.waiters[w.id] = w
	return nil
}

// published records w's stream sequence (for advisories and withdrawal);
// it reports false when w has already ended.
func (p *Pool) published(w *waiter, seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiters[w.id] != w {
		return false
	}
	w.seq = seq
	p.bySeq[seq] = w
	return true
}

// take removes and returns the waiter of batch id, nil when none waits.
func (p *Pool) take(id string) *waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.waiters[id]
	if w != nil {
		delete(p.waiters, id)
		delete(p.bySeq, w.seq)
	}
	return w
}

// abandon withdraws w after its caller gave up: the message is deleted
// from the stream (a queued batch never runs; a running one is not
// redelivered) and a cancel goes to the nodes (a running one is
// interrupted). When w had ended already, its outcome is returned instead.
func (p *Pool) abandon(ctx context.Context, w *waiter, b pools.Batch) (outcome, bool) {
	if p.take(w.id) == nil {
		return <-w.done, true
	}
	if w.seq != 0 {
		p.deleteMsg(ctx, w.seq)
	}
	if err := p.nc.Publish(CancelSubject(p.coord), []byte(w.id)); err != nil {
		p.log.Debug("remote pool: publishing a cancel", "batch", w.id, "err", err)
	}
	p.log.Debug("remote pool: withdrew a batch", "batch", w.id, "module", b.Module, "function", b.Function)
	return outcome{}, false
}

// stored learns the stream sequence of w's message after its publish was
// given up: the message may have been stored (and even delivered) before
// the PubAck came back. Publishing it again under the same id is answered
// with the original's sequence (or stores it, to be deleted at once).
func (p *Pool) stored(ctx context.Context, w *waiter, msg *nats.Msg) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if ack, err := p.js.PublishMsg(cctx, msg); err == nil {
		p.published(w, ack.Sequence)
	}
}

// deleteMsg removes a batch's message from the work stream; one already
// gone (acked) is no error.
func (p *Pool) deleteMsg(ctx context.Context, seq uint64) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := p.work.DeleteMsg(cctx, seq); err != nil {
		p.log.Debug("remote pool: deleting a batch message", "seq", seq, "err", err)
	}
}

// publish publishes msg, retrying with the same message id (the stream
// drops a second copy) while NATS does not answer or the stream is full,
// until ctx ends.
func (p *Pool) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	wait := minRetryWait
	for {
		ack, err := p.js.PublishMsg(ctx, msg)
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return nil, err
		}
		p.log.Debug("remote pool: publish failed, retrying", "batch", msg.Header.Get(HeaderBatch), "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-p.life.Done():
			t.Stop()
			return nil, pools.ErrClosed
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// jsErrStreamFull is the server's "maximum messages exceeded" (a stream
// with DiscardNew at its limit): back-pressure, not failure.
const jsErrStreamFull jetstream.ErrorCode = 10077

// retryable reports publish errors that a later attempt may not have: no
// answer (NATS down or reconnecting, no stream responder yet) or a full
// stream.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsErrStreamFull
	}
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected)
}

// finish turns w's outcome into Submit's return values, recording where
// the batch ran.
func (p *Pool) finish(ctx context.Context, w *waiter, o outcome) ([]any, error) {
	if o.err != nil {
		if o.redelivered {
			p.deleteMsg(ctx, w.seq)
		}
		return nil, fmt.Errorf("remote pool %s: %w", p.o.Name, o.err)
	}
	r, err := p.codec.DecodeReply(ctx, o.hdr, o.data)
	if r.Object != "" {
		defer p.deleteObject(r.Object)
	}
	if err != nil {
		return nil, fmt.Errorf("remote pool %s: result of batch %s (%s.%s): %w", p.o.Name, w.id, w.b.Module, w.b.Function, err)
	}
	if r.Deliveries > 1 {
		p.redelivered.Add(1)
	}
	idx, pid := p.account(r, r.Err != nil || len(r.Results) != len(w.b.Items), len(w.b.Items))
	if ci := pools.CallInfoFrom(ctx); ci != nil {
		ci.Pool, ci.Worker, ci.Pid, ci.Service = p.name, idx, pid, r.Service
	}
	if r.Err != nil {
		return nil, fmt.Errorf("remote pool %s: batch %s.%s on node %s: %w", p.o.Name, w.b.Module, w.b.Function, r.Node, r.Err)
	}
	return pools.CheckResults(w.b, r.Results)
}
