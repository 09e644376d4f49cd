package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/pools/remote"
)

// replyCtx bounds the publishing of a reply to a batch of c: twice c's
// AckWait (publishTimeout at least), while the node works. The batch's
// lease is kept meanwhile, so no other node can answer it: past that, the
// node had better hand it back. A batch of the node's own consumer is
// never handed back while the node works (it would run here again), and
// is answered even after the drain ran out of time, within
// cleanupTimeout.
func (n *Node) replyCtx(c *consumer) (context.Context, context.CancelFunc) {
	if c.node {
		if n.workCtx.Err() != nil {
			return context.WithTimeout(context.Background(), cleanupTimeout)
		}
		// Handing it back would only run it here again, on the session's
		// state: keep trying while the node works (its lease is kept).
		return context.WithCancel(n.workCtx)
	}
	return context.WithTimeout(n.workCtx, max(2*c.lease(), publishTimeout))
}

// publishReply publishes r to coord's results and waits for the server to
// store it. It retries, with back-off and the same message id (a retry
// that follows a lost acknowledgement stores nothing twice), until the
// reply is stored or ctx ends; a closed connection ends it at once.
//
// When the server says the reply is a duplicate (another delivery's reply
// to the batch was stored first) the payload object this one used is
// deleted: nobody will read it.
func (n *Node) publishReply(ctx context.Context, coord string, r remote.Reply) error {
	pause := 50 * time.Millisecond
	var msg *nats.Msg
	maybeStored := false // a failed attempt may yet have stored this reply
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, publishTimeout)
		var err error
		if msg == nil { // encoded (its payload object stored) once
			msg, err = n.codec.EncodeReply(actx, coord, r)
		}
		var ack *jetstream.PubAck
		if err == nil {
			ack, err = n.js.PublishMsg(actx, msg, jetstream.WithMsgID(remote.ReplyMsgID(r.ID)))
			switch {
			case err == nil:
			case errors.Is(err, jetstream.ErrNoStreamResponse):
				// The results stream is gone (or its leader is): make it again.
				_, _ = remote.EnsureResults(actx, n.js)
			case !refused(err):
				maybeStored = true
			}
		}
		cancel()
		if err == nil {
			if obj := msg.Header.Get(remote.HeaderObject); ack.Duplicate && obj != "" && !maybeStored {
				n.dropObject(ctx, r.ID, obj)
			}
			return nil
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("node %s: publishing the result of batch %s: %w", n.id, r.ID, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("node %s: publishing the result of batch %s: gave up after %d attempts (%w): %w", n.id, r.ID, attempt, ctx.Err(), err)
		}
		level := slog.LevelWarn
		if attempt > 1 {
			level = slog.LevelDebug
		}
		n.log.Log(context.Background(), level, "slither node: publishing a result", "node", n.id, "batch", r.ID, "coord", coord, "err", err, "attempt", attempt)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// refused reports whether a failed publish certainly stored nothing: the
// stream answered with an error, or no stream answered.
func refused(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) || errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// dropObject deletes the payload object of a reply the results stream
// dropped as a duplicate.
func (n *Node) dropObject(ctx context.Context, id, obj string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := n.codec.DeleteObject(ctx, obj); err != nil {
		n.log.Debug("slither node: deleting the payload object of a duplicate result", "node", n.id, "batch", id, "object", obj, "err", err)
	}
}
