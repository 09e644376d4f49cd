package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/pools"
)

// hostConcurrency bounds the host calls (views) a pool answers at once;
// further requests wait in the subscription (a callback runs serially).
const hostConcurrency = 64

// hostTimeout bounds a host call whose batch has no deadline (the node
// waits as long: node.DefaultHostTimeout).
const hostTimeout = time.Minute

// What the pool listens to: its results, the server's MAX_DELIVERIES
// advisories for its stream, and host calls from its batches' Python code.

// serve creates this coordinator's results consumer and subscribes to the
// advisories and host calls.
func (p *Pool) serve(ctx context.Context) error {
	if err := p.consumeResults(ctx); err != nil {
		return err
	}
	adv, err := p.nc.Subscribe(MaxDeliveriesSubject(p.o.Name), p.onMaxDeliveries)
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", MaxDeliveriesSubject(p.o.Name), err)
	}
	p.subs = append(p.subs, adv)
	host, err := p.nc.Subscribe(HostSubject(p.coord), p.onHostCall)
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", HostSubject(p.coord), err)
	}
	p.subs = append(p.subs, host)
	// Make sure the server has the subscriptions before any batch is
	// published, so no early host call or advisory is missed.
	fctx, cancel := context.WithTimeout(ctx, cleanupTimeout) // Flush requires a deadline
	defer cancel()
	if err := p.nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("flushing subscriptions: %w", err)
	}
	return nil
}

// onResult takes one result message: it goes to the Submit waiting for its
// batch, or is dropped when none waits (a duplicate from a redelivered
// batch, or a batch whose caller gave up). Either way it is acked at once:
// the waiter decodes it on its own goroutine, so a large result read from
// the object store holds up no other.
func (p *Pool) onResult(m jetstream.Msg) {
	h := m.Headers()
	id := h.Get(HeaderBatch)
	w := p.take(id)
	if err := m.Ack(); err != nil {
		p.log.Debug("remote pool: acking a result", "batch", id, "err", err)
	}
	if w == nil {
		p.log.Debug("remote pool: dropped a result no Submit waits for", "batch", id, "node", h.Get(HeaderNode))
		if obj := h.Get(HeaderObject); obj != "" {
			p.goBackground(func() { p.deleteObject(obj) })
		}
		if p.hooks.dropped != nil {
			p.hooks.dropped(id)
		}
		return
	}
	w.done <- outcome{hdr: h, data: m.Data()}
}

// consumeResults (re)creates this coordinator's results consumer and
// consumes it into onResult. Results stored while it was missing are
// still in the stream: the new consumer delivers them.
func (p *Pool) consumeResults(ctx context.Context) error {
	cons, err := p.res.CreateOrUpdateConsumer(ctx, ResultConsumerConfig(p.coord))
	if err != nil {
		return fmt.Errorf("results consumer %s: %w", ResultDurable(p.coord), err)
	}
	cc, err := cons.Consume(p.onResult, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		p.log.Debug("remote pool: results consumer", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("consuming results: %w", err)
	}
	p.consume = cc // only a working one: the supervisor waits on it
	return nil
}

// advisory is the part of the server's MAX_DELIVERIES advisory the pool reads.
type advisory struct {
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// onMaxDeliveries fails the Submit whose batch reached MaxDeliver: every
// node that took it died or lost its lease. The Submit deletes the message
// (the server leaves it in the stream). Advisories of other coordinators'
// batches are ignored.
func (p *Pool) onMaxDeliveries(m *nats.Msg) {
	var a advisory
	if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
		p.log.Debug("remote pool: unreadable MAX_DELIVERIES advisory", "err", err)
		return
	}
	p.mu.Lock()
	w := p.bySeq[a.StreamSeq]
	if w != nil {
		delete(p.waiters, w.id)
		delete(p.bySeq, w.seq)
	}
	p.mu.Unlock()
	if w == nil {
		return
	}
	w.done <- outcome{err: fmt.Errorf("%w: batch %s (%s.%s) was delivered %d times without a result: %w",
		ErrRedelivered, w.id, w.b.Module, w.b.Function, a.Deliveries, pools.ErrWorkerCrashed), redelivered: true}
}

// onHostCall answers one host call on a goroutine of its own, at most
// hostConcurrency at once: the subscription's callback runs serially, and
// one slow view must not hold up the others.
func (p *Pool) onHostCall(m *nats.Msg) {
	select {
	case p.hostSem <- struct{}{}:
	case <-p.life.Done():
		return
	}
	if !p.goBackground(func() {
		defer func() { <-p.hostSem }()
		p.answerHost(m)
	}) {
		<-p.hostSem
	}
}

// answerHost runs Options.Host for the request m and replies. Its context
// ends when the pool closes.
func (p *Pool) answerHost(m *nats.Msg) {
	var data []byte
	call, dl, err := p.codec.DecodeHostCall(m.Data)
	if err != nil {
		data = p.codec.EncodeHostReply(nil, fmt.Errorf("remote pool %s: %w", p.o.Name, err))
	} else {
		// Bounded by the calling batch's deadline (the node gives up then
		// anyway), else by hostTimeout: a stuck view must not hold a slot
		// of hostSem for ever.
		if dl.IsZero() {
			dl = time.Now().Add(hostTimeout)
		}
		ctx, cancel := context.WithDeadline(p.life, dl)
		v, err := p.o.Host.Call(ctx, call)
		cancel()
		data = p.codec.EncodeHostReply(v, err)
	}
	if err := m.Respond(data); err != nil {
		p.log.Debug("remote pool: answering a host call", "call", call.Name, "err", err)
	}
}

// deleteObject removes a payload object, logging a failure (it ages out).
func (p *Pool) deleteObject(name string) {
	ctx, cancel := cleanupContext(p.life)
	defer cancel()
	if err := p.codec.DeleteObject(ctx, name); err != nil {
		p.log.Debug("remote pool: deleting a payload object", "object", name, "err", err)
	}
}
