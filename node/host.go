package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// DefaultHostTimeout bounds a forwarded host call whose batch has no
// deadline: a coordinator that died after taking the request would
// otherwise hold its Python caller for ever.
const DefaultHostTimeout = time.Minute

type coordKey struct{}

// withCoord marks ctx as a batch of coordinator coord, for the host-call
// forwarder.
func withCoord(ctx context.Context, coord string) context.Context {
	return context.WithValue(ctx, coordKey{}, coord)
}

// forwardHost is the local engine's Host: Python's host calls and views
// go, as a NATS request, to the coordinator whose batch makes them, within
// the batch's deadline.
func (n *Node) forwardHost(ctx context.Context, call pools.HostCall) (any, error) {
	coord, _ := ctx.Value(coordKey{}).(string)
	if coord == "" {
		return nil, fmt.Errorf("node: host call %q outside a remote batch: no coordinator to ask", call.Name)
	}
	// The batch's deadline (the engine's clock set it) bounds the call on
	// both sides; without one each side waits DefaultHostTimeout by its own
	// clock, so a skew between machines cannot expire the call early.
	dl, _ := ctx.Deadline()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultHostTimeout)
		defer cancel()
	}
	call.Session = strings.TrimPrefix(call.Session, coord+"/") // the engine's own id (scopedSession)
	data, err := n.codec.EncodeHostCall(call, dl)              // the coordinator bounds the call by it too
	if err != nil {
		return nil, err
	}
	msg, err := n.nc.RequestWithContext(ctx, remote.HostSubject(coord), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("node: host call %q: coordinator %s does not answer host calls (gone, or its pool has no Host): %w", call.Name, coord, err)
	case err != nil:
		return nil, fmt.Errorf("node: host call %q to coordinator %s: %w", call.Name, coord, err)
	}
	return n.codec.DecodeHostReply(msg.Data)
}

// cancelKey names a batch across coordinators: a coordinator can cancel
// only its own batches.
type cancelKey struct{ coord, id string }

// canceler is one running delivery's cancel (a batch runs on a node once
// at a time: see handle).
type canceler struct{ cancel context.CancelCauseFunc }

// registerCancel makes batch id of coord cancellable by its coordinator's
// cancel messages until the returned func is called.
func (n *Node) registerCancel(coord, id string, cancel context.CancelCauseFunc) (unregister func()) {
	k, c := cancelKey{coord, id}, &canceler{cancel}
	n.cmu.Lock()
	n.cancels[k] = c
	n.cmu.Unlock()
	return func() {
		n.cmu.Lock()
		if n.cancels[k] == c {
			delete(n.cancels, k)
		}
		n.cmu.Unlock()
	}
}

// onCancel handles a message on CancelSubject(coord): its body is the id
// of a batch whose caller gave up.
func (n *Node) onCancel(m *nats.Msg) {
	coord, ok := strings.CutPrefix(m.Subject, remote.CancelSubject(""))
	if !ok || coord == "" {
		return
	}
	n.cmu.Lock()
	c := n.cancels[cancelKey{coord, string(m.Data)}]
	n.cmu.Unlock()
	if c != nil {
		c.cancel(errCancelled)
	}
}
