package node_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/pyhold"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/node"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// TestAdvertSurvivesBucketLoss: the nodes bucket disappears under a
// running node (an operator deleted it; NATS restarted on a fresh store).
// The next heartbeat makes it again and puts the advert, and says so
// once, with no heartbeat warning.
func TestAdvertSurvivesBucketLoss(t *testing.T) {
	ctx := context.Background()
	c := newCoord(t, pool, remote.PoolSettings{})
	l := &logs{}
	n := startNode(t, c, 1, func(o *node.Options) {
		o.Heartbeat = 20 * time.Millisecond
		o.Logger = slog.New(l)
	})
	require.NoError(t, c.js.DeleteKeyValue(ctx, remote.NodesBucket))
	require.Eventually(t, func() bool {
		kv, err := c.js.KeyValue(ctx, remote.NodesBucket)
		if err != nil {
			return false
		}
		_, err = kv.Get(ctx, n.ID())
		return err == nil
	}, wait, 10*time.Millisecond, "the node's advert did not come back")
	assert.Equal(t, 1, l.count(slog.LevelInfo, "made it again"))
	assert.Zero(t, l.count(slog.LevelWarn, "heartbeat"))
}

// TestOwnBatchAnsweredWhenPoolFailed: a batch of the node's own consumer
// that meets the local pool's open breaker is answered with
// pools.ErrPoolFailed and acknowledged, not handed back (it could only
// come back to this node, until MaxDeliver, and then hang its caller).
func TestOwnBatchAnsweredWhenPoolFailed(t *testing.T) {
	c := newCoord(t, pool, remote.PoolSettings{})
	n := startNode(t, c, 1, func(o *node.Options) {
		pc := o.Engine.Process[engine.DefaultPool]
		// The second crash opens the breaker, for longer than the test.
		pc.MaxRestarts, pc.RestartBackoff = 1, 10*time.Minute
		o.Engine.Process[engine.DefaultPool] = pc
	})
	for i := 0; ; i++ {
		require.Less(t, i, 10, "the breaker never opened")
		call := c.call(pool, n.ID(), pools.Batch{Module: "nodetest", Function: "crash", Items: []any{int64(i)}})
		c.publish(call)
		r := c.reply()
		require.Equal(t, call.ID, r.ID)
		require.Equal(t, 1, r.Deliveries, "handed back, and delivered again")
		// The breaker's error wraps its last crash too; across the wire it
		// is still ErrPoolFailed.
		if errors.Is(r.Err, pools.ErrPoolFailed) {
			break
		}
		require.ErrorIs(t, r.Err, pools.ErrWorkerCrashed)
	}
	own := remote.NodeDurable(n.ID())
	require.Eventually(t, func() bool { return c.consumerInfo(pool, own).NumAckPending == 0 }, wait, 10*time.Millisecond)
	assert.Zero(t, c.consumerInfo(pool, own).NumRedelivered)
	assert.Zero(t, c.streamMsgs(pool), "every batch was acknowledged")
}

// TestOwnBatchAnsweredWhenDrainTimesOut: a pinned batch interrupted by a
// drain that ran out of time is answered (its session's state goes with
// the node) and acknowledged, not handed back to a consumer about to go.
func TestOwnBatchAnsweredWhenDrainTimesOut(t *testing.T) {
	c := newCoord(t, pool, remote.PoolSettings{AckWait: 10 * wait})
	n := startNode(t, c, 1, nil)
	acks := c.acks(pool, remote.NodeDurable(n.ID()))
	h := pyhold.New(t, c.dir, "pinned")
	held := c.call(pool, n.ID(), pools.Batch{Module: "nodehold", Function: "hold", Items: []any{h.Item.Payload}, Session: "s1"})
	c.publish(held)
	require.NoError(t, h.Started())
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no time at all
	assert.ErrorIs(t, n.Shutdown(ctx), context.Canceled)
	r := c.reply()
	assert.Equal(t, held.ID, r.ID)
	assert.ErrorIs(t, r.Err, pools.ErrSessionLost)
	nextAck(t, acks, "+ACK")
}

// TestLastDeliveryAnsweredRedelivered: a batch on its consumer's last
// delivery (MaxDeliver) is not run: the node answers it with the error a
// coordinator's MAX_DELIVERIES advisory would give (which a coordinator
// reconnecting may never get) and terminates it.
func TestLastDeliveryAnsweredRedelivered(t *testing.T) {
	ctx := context.Background()
	// One run: the consumer's MaxDeliver is 2 (the run, and the answer).
	c := newCoord(t, pool, remote.PoolSettings{MaxDeliver: 1})
	acks := c.acks(pool, remote.AnyDurable)
	call := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "double", Items: []any{int64(21)}})
	c.publish(call)
	// The first delivery goes to a node that hands it back (as one that
	// died would, at its lease's end).
	cons, err := c.js.Consumer(ctx, remote.StreamName(pool), remote.AnyDurable)
	require.NoError(t, err)
	m, err := cons.Next(jetstream.FetchMaxWait(wait))
	require.NoError(t, err)
	require.NoError(t, m.Nak())

	n := startNode(t, c, 1, nil)
	r := c.reply()
	assert.Equal(t, call.ID, r.ID)
	assert.Equal(t, n.ID(), r.Node)
	assert.Equal(t, 2, r.Deliveries)
	assert.Nil(t, r.Results, "the batch was not run")
	assert.ErrorIs(t, r.Err, remote.ErrRedelivered)
	assert.ErrorIs(t, r.Err, pools.ErrWorkerCrashed)
	assert.ErrorContains(t, r.Err, "nodetest.double")
	assert.Contains(t, nextAck(t, acks, "+TERM"), "MaxDeliver 2")
	require.Eventually(t, func() bool { return c.streamMsgs(pool) == 0 }, wait, 10*time.Millisecond)
}

// TestDuplicateReplyDropsItsObject: when another delivery's reply to the
// batch was stored first, the node's reply is a duplicate the results
// stream drops, and the payload object holding its large results is
// deleted rather than left for a day.
func TestDuplicateReplyDropsItsObject(t *testing.T) {
	ctx := context.Background()
	c := newCoordOn(t, pool, remote.PoolSettings{}, natsdev.Options{MaxPayload: 64 << 10})
	acks := c.acks(pool, remote.AnyDurable)
	startNode(t, c, 1, nil)
	call := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "double", Items: []any{strings.Repeat("x", 100<<10)}})
	first, err := c.codec.EncodeReply(ctx, c.id, remote.Reply{ID: call.ID, Node: "other", Results: []any{"first"}})
	require.NoError(t, err)
	_, err = c.js.PublishMsg(ctx, first, jetstream.WithMsgID(remote.ReplyMsgID(call.ID)))
	require.NoError(t, err)

	c.publish(call)
	nextAck(t, acks, "+ACK")
	r := c.reply()
	assert.Equal(t, []any{"first"}, r.Results, "the first reply stored is the batch's")
	obs, err := c.js.ObjectStore(ctx, remote.PayloadBucket)
	require.NoError(t, err)
	infos, err := obs.List(ctx)
	if !errors.Is(err, jetstream.ErrNoObjectsFound) {
		require.NoError(t, err)
	}
	for _, info := range infos {
		assert.False(t, strings.HasPrefix(info.Name, call.ID+".out"), "the duplicate's object %s is left", info.Name)
	}
}

// TestRedeliveryWhileRunningRunsOnce: a pinned batch whose lease runs out
// while it runs (its progress acks lost) is delivered to the node again.
// The second delivery is not run (the session's state sees the batch
// once); it is acknowledged once the first is answered.
func TestRedeliveryWhileRunningRunsOnce(t *testing.T) {
	ctx := context.Background()
	c := newCoord(t, pool, remote.PoolSettings{})
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "nodesession.py"), []byte(pyhold.Source+`
import slither


def count_hold(batch):
    s = slither.session()
    s["n"] = s.get("n", 0) + 1
    hold(batch)
    return [s["n"]]
`), 0o600))
	n := startNode(t, c, 2, nil)
	own := remote.NodeDurable(n.ID())
	h := pyhold.New(t, c.dir, "twice")
	held := c.call(pool, n.ID(), pools.Batch{Module: "nodesession", Function: "count_hold", Items: []any{h.Item.Payload}, Session: "s1"})
	c.publish(held)
	require.NoError(t, h.Started())
	// The node renews the lease every third of the AckWait it read (10s):
	// a lease shortened under it runs out, as if its progress acks were
	// lost, and the server delivers the running batch again.
	st, err := c.js.Stream(ctx, remote.StreamName(pool))
	require.NoError(t, err)
	_, err = st.UpdateConsumer(ctx, remote.PoolSettings{AckWait: 100 * time.Millisecond}.NodeConsumerConfig(pool, n.ID()))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.consumerInfo(pool, own).Delivered.Consumer >= 2 }, wait, 10*time.Millisecond,
		"the running batch was not delivered again")

	h.Release()
	r := c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, held.ID, r.ID)
	assert.Equal(t, []any{int64(1)}, r.Results)
	next := c.call(pool, n.ID(), pools.Batch{Module: "nodetest", Function: "count", Items: []any{int64(0)}, Session: "s1"})
	c.publish(next)
	r = c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, []any{int64(2)}, r.Results, "the session saw the batch run twice")
	require.Eventually(t, func() bool { return c.consumerInfo(pool, own).NumAckPending == 0 }, wait, 10*time.Millisecond)
	assert.Zero(t, c.streamMsgs(pool))
	info, err := c.results.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.NumPending, "one reply per batch")
}

// TestPublishStopsOnClosedConnection: a node whose connection closed for
// good does not retry publishing a result until its drain runs out: the
// batch's handling ends at once and the drain is clean.
func TestPublishStopsOnClosedConnection(t *testing.T) {
	c := newCoord(t, pool, remote.PoolSettings{})
	nc, err := nats.Connect(c.srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	n := startNode(t, c, 1, func(o *node.Options) { o.Conn = nc })
	h := pyhold.New(t, c.dir, "closed")
	c.publish(c.call(pool, "", pools.Batch{Module: "nodehold", Function: "hold", Items: []any{h.Item.Payload}}))
	require.NoError(t, h.Started())
	nc.Close()
	h.Release()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	assert.NoError(t, n.Shutdown(ctx), "the drain waited for a result that could never be published")
}

// TestPublishGivesUpAndHandsBack: a result the results stream keeps
// refusing is not retried for ever: after twice the AckWait (10s at
// least) the node hands the batch back, and once the stream takes
// results again its next delivery is answered.
func TestPublishGivesUpAndHandsBack(t *testing.T) {
	ctx := context.Background()
	c := newCoord(t, pool, remote.PoolSettings{AckWait: time.Second})
	rs, err := c.js.Stream(ctx, remote.ResultsStream)
	require.NoError(t, err)
	full := rs.CachedInfo().Config
	open := full
	full.MaxMsgs, full.Discard = 1, jetstream.DiscardNew
	_, err = c.js.UpdateStream(ctx, full)
	require.NoError(t, err)
	_, err = c.js.Publish(ctx, remote.ResultSubject("elsewhere"), []byte("filler"))
	require.NoError(t, err)

	acks := c.acks(pool, remote.AnyDurable)
	startNode(t, c, 1, nil)
	call := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "double", Items: []any{int64(5)}})
	c.publish(call)
	nextAck(t, acks, "-NAK")
	_, err = c.js.UpdateStream(ctx, open)
	require.NoError(t, err)
	r := c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, call.ID, r.ID)
	assert.Equal(t, []any{int64(10)}, r.Results)
	assert.GreaterOrEqual(t, r.Deliveries, 2)
}

// TestAnsweredOwnBatchDeliveredAgainIsNotRun: a pinned batch answered and
// acknowledged whose ack was lost comes back to the same node (only it
// consumes its subject): the node acknowledges it without running it on
// the session's state again.
func TestAnsweredOwnBatchDeliveredAgainIsNotRun(t *testing.T) {
	ctx := context.Background()
	c := newCoord(t, pool, remote.PoolSettings{})
	n := startNode(t, c, 1, nil)
	acks := c.acks(pool, remote.NodeDurable(n.ID()))
	first := c.call(pool, n.ID(), pools.Batch{Module: "nodetest", Function: "count", Items: []any{int64(0)}, Session: "s1"})
	c.publish(first)
	r := c.reply()
	require.NoError(t, r.Err)
	require.Equal(t, []any{int64(1)}, r.Results)
	nextAck(t, acks, "+ACK")
	// The same batch again, as the server redelivers it when the ack was
	// lost (another message id: the stream would drop a same-id copy).
	msg, err := c.codec.EncodeCall(ctx, first)
	require.NoError(t, err)
	msg.Header.Set(jetstream.MsgIDHeader, first.ID+"-again")
	_, err = c.js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	nextAck(t, acks, "+ACK")
	next := c.call(pool, n.ID(), pools.Batch{Module: "nodetest", Function: "count", Items: []any{int64(0)}, Session: "s1"})
	c.publish(next)
	r = c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, next.ID, r.ID, "no reply to the answered batch's second delivery")
	assert.Equal(t, []any{int64(2)}, r.Results, "the answered batch ran a second time on the session")
}
