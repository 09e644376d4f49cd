package node_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// TestServesARemotePool runs batches through the coordinator side
// (remote.New) against a node: results, host calls answered by the
// pool's Host, a Python error, and a pinned session whose state lives on
// the node until it is closed.
func TestServesARemotePool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c := newCoord(t, pool, remote.PoolSettings{})
	n := startNode(t, c, 2, nil)
	nc, err := nats.Connect(c.srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	p, err := remote.New(ctx, remote.Options{Conn: nc, Name: pool, Logger: quiet(), WaitNodes: 1,
		Host: func(_ context.Context, call pools.HostCall) (any, error) { return call.Args[0].(int64) + 100, nil }})
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close(ctx)) }()
	assert.Equal(t, 2, p.Capacity(), "the node's advertised capacity")

	res, err := p.Submit(ctx, pools.Batch{Module: "nodetest", Function: "double", Items: []any{int64(4), "x"}})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(8), "xx"}, res)

	var ci pools.CallInfo
	res, err = p.Submit(pools.WithCallInfo(ctx, &ci), pools.Batch{Module: "nodetest", Function: "lookup", Items: []any{int64(1), int64(2)}})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(101), int64(102)}, res, "host calls reach the pool's Host")
	assert.NotZero(t, ci.Pid)

	_, err = p.Submit(ctx, pools.Batch{Module: "nodetest", Function: "fail", Items: []any{"z"}})
	var pe *pools.PythonError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "ValueError", pe.Type)

	for want := int64(1); want <= 3; want++ {
		res, err = p.Submit(ctx, pools.Batch{Module: "nodetest", Function: "count", Items: []any{int64(0)}, Session: "s"})
		require.NoError(t, err)
		assert.Equal(t, []any{want}, res, "the session's state stays on its node")
	}
	acks := c.acks(pool, remote.NodeDurable(n.ID()))
	p.CloseSession("s")
	nextAck(t, acks, "+ACK") // the close-session call, on the node's own consumer
}

// TestSessionsOfTwoEnginesStayApart: two engines (coordinators) that name
// a session alike on the same node get a state each; a session view's
// host call goes back with the engine's own session id.
func TestSessionsOfTwoEnginesStayApart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c := newCoord(t, pool, remote.PoolSettings{})
	startNode(t, c, 1, nil)
	var ps []*remote.Pool
	sessions := make(chan string, 8)
	for range 2 {
		nc, err := nats.Connect(c.srv.URL())
		require.NoError(t, err)
		defer nc.Close()
		p, err := remote.New(ctx, remote.Options{Conn: nc, Name: pool, Logger: quiet(), WaitNodes: 1,
			Host: func(_ context.Context, call pools.HostCall) (any, error) {
				sessions <- call.Session
				return call.Args[0], nil
			}})
		require.NoError(t, err)
		defer func() { require.NoError(t, p.Close(ctx)) }()
		ps = append(ps, p)
	}
	for want := int64(1); want <= 3; want++ {
		for i, p := range ps {
			res, err := p.Submit(ctx, pools.Batch{Module: "nodetest", Function: "count", Items: []any{int64(0)}, Session: "same"})
			require.NoError(t, err)
			assert.Equal(t, []any{want}, res, "engine %d's session state is its own", i)
		}
	}
	_, err := ps[0].Submit(ctx, pools.Batch{Module: "nodetest", Function: "lookup", Items: []any{int64(1)}, Session: "same"})
	require.NoError(t, err)
	assert.Equal(t, "same", <-sessions, "the host call names the engine's session id")
}
