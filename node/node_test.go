package node_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pyhold"
	"github.com/slither-go/slither/internal/spantest"
	"github.com/slither-go/slither/node"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
	"go.opentelemetry.io/otel/trace"
)

const pool = "default"

// TestServesBatches publishes batches as a coordinator would and reads the
// node's replies: results, a Python error (acknowledged, not handed back),
// the trace the batch carried, a deadline already past, and the advert.
func TestServesBatches(t *testing.T) {
	c := newCoord(t, pool, remote.PoolSettings{})
	acks := c.acks(pool, remote.AnyDurable)
	n := startNode(t, c, 2, nil)
	assert.Equal(t, []string{pool}, n.Pools())

	ok := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "double", Items: []any{int64(1), "ab", 2.5}})
	c.publish(ok)
	r := c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, ok.ID, r.ID)
	assert.Equal(t, n.ID(), r.Node)
	assert.Equal(t, []any{int64(2), "abab", 5.0}, r.Results)
	assert.NotZero(t, r.Pid)
	nextAck(t, acks, "+ACK")

	bad := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "fail", Items: []any{int64(7)}})
	c.publish(bad)
	r = c.reply()
	assert.Equal(t, bad.ID, r.ID)
	var pe *pools.PythonError
	require.ErrorAs(t, r.Err, &pe)
	assert.Equal(t, "ValueError", pe.Type)
	assert.Equal(t, "no good: 7", pe.Message)
	assert.Equal(t, "+ACK", nextAck(t, acks, "+ACK"), "a Python error is an answer: the batch is acknowledged")

	const traceID = "0102030405060708090a0b0c0d0e0f10"
	traced := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "trace", Items: []any{int64(0)}})
	traced.Trace = trace.SpanContextFromContext(spantest.SpanContext(t, traceID, "0102030405060708"))
	c.publish(traced)
	r = c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, []any{traceID}, r.Results, "Python sees the submitting span's trace")

	late := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "double", Items: []any{int64(1)}})
	late.Deadline = time.Now().Add(-time.Second)
	c.publish(late)
	r = c.reply()
	assert.ErrorIs(t, r.Err, context.DeadlineExceeded)

	// Everything answered: nothing left leased or queued.
	require.Eventually(t, func() bool { return c.consumerInfo(pool, remote.AnyDurable).NumAckPending == 0 }, wait, 10*time.Millisecond)
	assert.Zero(t, c.streamMsgs(pool))
	assert.Zero(t, c.consumerInfo(pool, remote.AnyDurable).NumRedelivered)

	kv, err := c.js.KeyValue(context.Background(), remote.NodesBucket)
	require.NoError(t, err)
	e, err := kv.Get(context.Background(), n.ID())
	require.NoError(t, err)
	a, err := remote.ParseAdvert(e.Value())
	require.NoError(t, err)
	assert.Equal(t, n.ID(), a.Node)
	assert.False(t, a.Draining)
	assert.Equal(t, 2, a.Pools[pool].Capacity)
	assert.Equal(t, "router", a.Pools[pool].Kind)
}

// TestMalformedBatchIsAnsweredAndTerminated: a message no node could run
// gets an error reply (its coordinator is known) and is terminated, not
// delivered again.
func TestMalformedBatchIsAnsweredAndTerminated(t *testing.T) {
	c := newCoord(t, pool, remote.PoolSettings{})
	acks := c.acks(pool, remote.AnyDurable)
	startNode(t, c, 1, nil)
	msg := nats.NewMsg(remote.AnySubject(pool))
	msg.Header.Set(remote.HeaderBatch, c.id+"-bad")
	msg.Header.Set(remote.HeaderCoord, c.id)
	msg.Data = []byte("not a frame")
	_, err := c.js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
	r := c.reply()
	assert.Equal(t, c.id+"-bad", r.ID)
	assert.ErrorIs(t, r.Err, remote.ErrMalformed)
	assert.Contains(t, nextAck(t, acks, "+TERM"), "malformed")
	require.Eventually(t, func() bool { return c.streamMsgs(pool) == 0 }, wait, 10*time.Millisecond)
}

// TestProgressKeepsTheLease holds a batch for longer than AckWait: the
// node's progress acks keep it leased, so it is not delivered again (the
// node has a free slot, and would take it), and it is answered once.
func TestProgressKeepsTheLease(t *testing.T) {
	const ackWait = time.Second
	c := newCoord(t, pool, remote.PoolSettings{AckWait: ackWait})
	acks := c.acks(pool, remote.AnyDurable)
	startNode(t, c, 2, nil)
	h := pyhold.New(t, c.dir, "lease")
	held := c.call(pool, "", pools.Batch{Module: "nodehold", Function: "hold", Items: []any{h.Item.Payload}})
	c.publish(held)
	require.NoError(t, h.Started())
	// Four progress acks, a third of AckWait apart: the lease would have
	// run out a third of AckWait ago without them.
	for range 4 {
		nextAck(t, acks, "+WPI")
	}
	info := c.consumerInfo(pool, remote.AnyDurable)
	assert.Zero(t, info.NumRedelivered, "the batch was delivered again while it ran")
	assert.Equal(t, 1, info.NumAckPending)
	h.Release()
	r := c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, held.ID, r.ID)
	nextAck(t, acks, "+ACK")
	assert.Equal(t, uint64(1), c.consumerInfo(pool, remote.AnyDurable).Delivered.Consumer, "delivered once")
}

// TestDrainFinishesRunningBatches: Shutdown advertises the drain, takes no
// new batch, lets the running one finish and answers it, then deletes the
// node's advert and its own consumer; the batch it did not take stays in
// the stream for another node.
func TestDrainFinishesRunningBatches(t *testing.T) {
	ctx := context.Background()
	c := newCoord(t, pool, remote.PoolSettings{})
	n := startNode(t, c, 1, func(o *node.Options) { o.Heartbeat = 50 * time.Millisecond })
	kv, err := c.js.KeyValue(ctx, remote.NodesBucket)
	require.NoError(t, err)
	w, err := kv.Watch(ctx, n.ID())
	require.NoError(t, err)
	defer func() { _ = w.Stop() }()

	h := pyhold.New(t, c.dir, "drain")
	held := c.call(pool, "", pools.Batch{Module: "nodehold", Function: "hold", Items: []any{h.Item.Payload}})
	c.publish(held)
	require.NoError(t, h.Started())
	// The node's one slot is busy, so it has no pull under way: this one
	// waits in the stream.
	waiting := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "double", Items: []any{int64(1)}})
	c.publish(waiting)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		done <- n.Shutdown(ctx)
	}()
	for a := range adverts(t, w) {
		if a.Draining {
			break
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned while a batch ran: %v", err)
	default:
	}
	h.Release()
	require.NoError(t, <-done)
	r := c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, held.ID, r.ID)

	_, err = kv.Get(ctx, n.ID())
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the advert is deleted")
	_, err = c.js.Consumer(ctx, remote.StreamName(pool), remote.NodeDurable(n.ID()))
	assert.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "the node's own consumer is deleted")
	require.Eventually(t, func() bool { return c.consumerInfo(pool, remote.AnyDurable).NumAckPending == 0 }, wait, 10*time.Millisecond)
	info := c.consumerInfo(pool, remote.AnyDurable)
	assert.Equal(t, uint64(1), info.Delivered.Consumer, "the waiting batch was never taken")
	assert.Equal(t, uint64(1), c.streamMsgs(pool), "the waiting batch is still there for another node")
}

// adverts yields the adverts put for a watched key, failing the test on a
// delete or after wait.
func adverts(t *testing.T, w jetstream.KeyWatcher) func(func(remote.Advert) bool) {
	return func(yield func(remote.Advert) bool) {
		timeout := time.After(wait)
		for {
			select {
			case e := <-w.Updates():
				if e == nil {
					continue
				}
				require.Equal(t, jetstream.KeyValuePut, e.Operation())
				a, err := remote.ParseAdvert(e.Value())
				require.NoError(t, err)
				if !yield(a) {
					return
				}
			case <-timeout:
				t.Fatal("no such advert")
			}
		}
	}
}

// TestCloseSessionReachesTheLocalPool runs pinned batches of a session on
// the node's own subject, then a close-session call: the session's state
// is gone for the next batch.
func TestCloseSessionReachesTheLocalPool(t *testing.T) {
	c := newCoord(t, pool, remote.PoolSettings{})
	n := startNode(t, c, 1, nil)
	acks := c.acks(pool, remote.NodeDurable(n.ID()))
	count := func(items ...any) remote.Reply {
		t.Helper()
		call := c.call(pool, n.ID(), pools.Batch{Module: "nodetest", Function: "count", Items: items, Session: "s1"})
		c.publish(call)
		r := c.reply()
		nextAck(t, acks, "+ACK")
		return r
	}
	r := count(int64(0), int64(0))
	require.NoError(t, r.Err)
	assert.Equal(t, []any{int64(2), int64(2)}, r.Results)
	r = count(int64(0))
	require.NoError(t, r.Err)
	assert.Equal(t, []any{int64(3)}, r.Results, "the session's state is kept between its batches")

	closeCall := c.call(pool, n.ID(), pools.Batch{Session: "s1"})
	closeCall.Control = remote.ControlCloseSession
	c.publish(closeCall)
	nextAck(t, acks, "+ACK")
	// The local pool closed it: a batch of the closed session is refused
	// there as it would be in a local pool.
	r = count(int64(0))
	assert.ErrorIs(t, r.Err, pools.ErrSessionLost)
	assert.ErrorContains(t, r.Err, "CloseSession")
}

// TestHostCallsGoToTheCoordinator: Python's slither.host_call on the node
// reaches a responder on the coordinator's host subject, and its answer
// (or error) comes back to Python.
func TestHostCallsGoToTheCoordinator(t *testing.T) {
	c := newCoord(t, pool, remote.PoolSettings{})
	var mu sync.Mutex
	var seen []pools.HostCall
	sub, err := c.nc.Subscribe(remote.HostSubject(c.id), func(m *nats.Msg) {
		call, _, err := c.codec.DecodeHostCall(m.Data)
		if err == nil {
			mu.Lock()
			seen = append(seen, call)
			mu.Unlock()
		}
		var v any
		switch {
		case err != nil:
		case call.Args[0] == int64(13):
			err = errors.New("unlucky")
		default:
			v = call.Args[0].(int64) * 10
		}
		_ = m.Respond(c.codec.EncodeHostReply(v, err))
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	startNode(t, c, 1, nil)

	call := c.call(pool, "", pools.Batch{Module: "nodetest", Function: "lookup", Items: []any{int64(1), int64(2)}, Session: "s9", Unpinned: true})
	c.publish(call)
	r := c.reply()
	require.NoError(t, r.Err)
	assert.Equal(t, []any{int64(10), int64(20)}, r.Results)
	mu.Lock()
	require.Len(t, seen, 2)
	assert.Equal(t, "lookup", seen[0].Name)
	assert.Equal(t, []any{int64(1)}, seen[0].Args)
	assert.Equal(t, "s9", seen[0].Session)
	mu.Unlock()

	c.publish(c.call(pool, "", pools.Batch{Module: "nodetest", Function: "lookup", Items: []any{int64(13)}}))
	r = c.reply()
	var pe *pools.PythonError
	require.ErrorAs(t, r.Err, &pe)
	assert.Contains(t, pe.Type, "HostError")
	assert.Contains(t, pe.Message, "unlucky")
}

// TestCancelStopsTheBatchWithoutReply: a coordinator's cancel ends the
// local call; the batch is acknowledged and nobody is answered.
func TestCancelStopsTheBatchWithoutReply(t *testing.T) {
	c := newCoord(t, pool, remote.PoolSettings{})
	acks := c.acks(pool, remote.AnyDurable)
	startNode(t, c, 1, nil)
	h := pyhold.New(t, c.dir, "cancel")
	held := c.call(pool, "", pools.Batch{Module: "nodehold", Function: "hold", Items: []any{h.Item.Payload}})
	c.publish(held)
	require.NoError(t, h.Started())
	require.NoError(t, c.nc.Publish(remote.CancelSubject(c.id), []byte(held.ID)))
	nextAck(t, acks, "+ACK")
	info, err := c.results.Info(context.Background())
	require.NoError(t, err)
	assert.Zero(t, info.NumPending, "no reply for a cancelled batch")
}

// TestDrainTimeoutHandsBatchesBack: a drain whose time is up interrupts the
// running batch and hands it back to the stream at once (a nak) for
// another node, without answering it, and says the drain was cut short.
func TestDrainTimeoutHandsBatchesBack(t *testing.T) {
	// A lease longer than the test's waits: the batch comes back only if
	// the node hands it back.
	c := newCoord(t, pool, remote.PoolSettings{AckWait: 10 * wait})
	acks := c.acks(pool, remote.AnyDurable)
	n := startNode(t, c, 1, nil)
	h := pyhold.New(t, c.dir, "stuck")
	c.publish(c.call(pool, "", pools.Batch{Module: "nodehold", Function: "hold", Items: []any{h.Item.Payload}}))
	require.NoError(t, h.Started())
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no time at all
	err := n.Shutdown(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, "drain")
	nextAck(t, acks, "-NAK")
	info, err := c.results.Info(context.Background())
	require.NoError(t, err)
	assert.Zero(t, info.NumPending, "an interrupted batch is not answered")
	cons, err := c.js.Consumer(context.Background(), remote.StreamName(pool), remote.AnyDurable)
	require.NoError(t, err)
	m, err := cons.Next(jetstream.FetchMaxWait(wait))
	require.NoError(t, err, "the batch is not back in the stream")
	meta, err := m.Metadata()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), meta.NumDelivered)
}
