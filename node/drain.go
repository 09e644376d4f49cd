package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Shutdown drains the node: it advertises that it is draining, takes no
// new batches, lets running ones finish and answers them, deletes its own
// consumers and its advert, closes the engine and (when it made it) the
// connection. Batches already taken from the node's own consumer (pinned
// batches of its sessions) are run too: no other node can. If ctx ends
// first, running batches are interrupted: shared ones are handed back
// unanswered (a nak: the stream delivers them to another node at once),
// pinned ones are answered with an error matching pools.ErrSessionLost;
// the engine's workers are killed rather than waited for, and Shutdown
// returns an error wrapping ctx's. It is idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() { n.shutErr = n.shutdown(ctx) })
	return n.shutErr
}

func (n *Node) shutdown(ctx context.Context) error {
	var errs []error
	n.draining.Store(true)
	n.stopFetch()
	actx, cancelAdvert := boundCtx(ctx)
	if err := n.advertise(actx, true); err != nil {
		n.log.Warn("slither node: advertising the drain", "node", n.id, "err", err)
	}
	cancelAdvert()
	// The pulls under way end within FetchWait; once they have, no batch
	// is taken any more (and batches.Wait may begin).
	n.loops.Wait()
	idle := make(chan struct{})
	go func() { // both branches of the select below wait for it (<-idle)
		n.batches.Wait()
		close(idle)
	}()
	timedOut := false
	select {
	case <-idle:
	case <-ctx.Done():
		timedOut = true
		errs = append(errs, fmt.Errorf("node %s: drain: %w", n.id, ctx.Err()))
		n.log.Warn("slither node: drain timed out; interrupting running batches", "node", n.id)
		n.stopWork()
		<-idle
	}
	n.stopWork()
	close(n.hbStop)
	<-n.hbDone
	// Nothing runs any more: clean up in a context of its own, so a drain
	// that ran out of time still tidies what it can at once.
	cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if n.cancel != nil {
		_ = n.cancel.Unsubscribe()
	}
	for _, s := range n.served {
		if err := s.deleteNodeConsumer(cctx); err != nil {
			n.log.Warn("slither node: deleting its consumer", "node", n.id, "pool", s.name, "err", err)
		}
	}
	if err := n.nodes().Delete(cctx, n.id); err != nil {
		n.log.Warn("slither node: deleting its advert", "node", n.id, "err", err)
	}
	ectx := cctx
	if timedOut {
		// Out of time: the engine kills its workers rather than wait for
		// the Python calls that ignored the interrupt.
		var cancel context.CancelFunc
		ectx, cancel = context.WithCancel(cctx)
		cancel()
	}
	if err := n.eng.Close(ectx); err != nil {
		errs = append(errs, fmt.Errorf("node %s: closing the engine: %w", n.id, err))
	}
	errs = append(errs, n.closeConn(cctx))
	return errors.Join(errs...)
}

// cleanupTimeout bounds the requests of a shutdown after the batches.
const cleanupTimeout = 5 * time.Second

// boundCtx is ctx, or one that ends after cleanupTimeout when ctx has no
// deadline (a JetStream request needs one).
func boundCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, cleanupTimeout)
}

// closeConn drains a connection the node made (its acks and results are
// flushed first) and waits for it to close; an adopted one is flushed.
func (n *Node) closeConn(ctx context.Context) error {
	if !n.ownConn {
		if n.nc.IsConnected() {
			if err := n.nc.FlushWithContext(ctx); err != nil {
				return fmt.Errorf("node %s: flushing the NATS connection: %w", n.id, err)
			}
		}
		return nil
	}
	closed := make(chan struct{})
	prev := n.nc.Opts.ClosedCB
	n.nc.SetClosedHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		close(closed)
	})
	if err := n.nc.Drain(); err != nil {
		n.nc.Close()
		return nil // already closed or closing: nothing left to flush
	}
	select {
	case <-closed:
	case <-ctx.Done():
		n.nc.Close()
		return fmt.Errorf("node %s: draining the NATS connection: %w", n.id, ctx.Err())
	}
	return nil
}

// abort undoes a Start that failed.
func (n *Node) abort() {
	n.stopWork()
	n.loops.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if n.cancel != nil {
		_ = n.cancel.Unsubscribe()
	}
	for _, s := range n.served {
		_ = s.deleteNodeConsumer(ctx)
	}
	if kv := n.nodes(); kv != nil {
		_ = kv.Delete(ctx, n.id)
	}
	if n.eng != nil {
		_ = n.eng.Close(ctx)
	}
	if n.nc != nil {
		if n.ownConn {
			n.nc.Close()
		}
	}
}
