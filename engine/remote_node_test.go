package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/storetest"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
	"github.com/slither-go/slither/node"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
	"github.com/slither-go/slither/store"
)

// TestEngineRemoteRoundTrip: an engine dispatches through its remote pool
// to a node in this process; the node's Python reaches the engine's store
// views, and a session's batches keep their state on the node.
func TestEngineRemoteRoundTrip(t *testing.T) {
	ctx := context.Background()
	srv := natsdevtest.Start(t, natsdev.Options{})
	n, err := node.Start(ctx, node.Options{
		Engine: engine.Config{
			Thread:  engine.ThreadConfig{Disabled: true},
			Process: map[string]engine.ProcessConfig{"gpu": {Workers: 1}},
			Paths:   []string{testdata(t)},
		},
		NATS:   remote.ConnOptions{URL: srv.URL()},
		Logger: quiet(),
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, n.Shutdown(ctx)) }()

	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}},
		NATS:    remote.ConnOptions{URL: srv.URL()},
		// The node is up: the wait ends when the pool reads its advert.
		Remote: map[string]engine.RemoteConfig{"gpu": {WaitNodes: 1, WaitTimeout: time.Minute}},
		Stores: []store.Definition{storetest.Prices()},
		Logger: quiet(),
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, eng.Close(ctx)) }()

	nodes := eng.RemotePool("gpu").Nodes()
	require.Len(t, nodes, 1)
	assert.Equal(t, n.ID(), nodes[0].Node)

	out, err := eng.Dispatch(ctx, dispatch.Slice([]string{"A1", "A1", "A1"}), engine.DispatchOptions{
		Pool: "gpu", Options: dispatch.Options{Module: "enginetest", Function: "price", Strategy: dispatch.FixedBatch(2)}})
	require.NoError(t, err)
	require.Len(t, out.Results, 3)
	for _, r := range out.Results {
		require.NoError(t, r.Err)
		assert.Equal(t, 9.5, r.Value, "the node's view call answered by this engine's store")
	}
	out, err = eng.Dispatch(ctx, dispatch.Slice([]int{1}), engine.DispatchOptions{
		Pool: "gpu", Options: dispatch.Options{Module: "enginetest", Function: "where"}})
	require.NoError(t, err)
	assert.Equal(t, "process", out.Results[0].Value, "the node's process pool ran it")
	assert.Contains(t, eng.Metrics().Pools, "remote/gpu")

	s, err := eng.Session(ctx, "gpu")
	require.NoError(t, err)
	defer s.Close()
	for want := int64(2); want <= 6; want += 2 {
		got, err := s.Submit(ctx, pools.Batch{Module: "engineremote", Function: "count", Items: []any{0, 0}})
		require.NoError(t, err)
		assert.Equal(t, []any{want, want}, got, "the session's state lives on the node")
	}
}
