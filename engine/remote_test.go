package engine_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// remoteEngine starts an engine with one small process pool and the remote
// pools rs on the NATS server at url, closed with the test.
func remoteEngine(t *testing.T, url string, rs map[string]engine.RemoteConfig) *engine.Engine {
	t.Helper()
	eng, err := engine.Start(context.Background(), engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}},
		NATS:    remote.ConnOptions{URL: url},
		Remote:  rs,
		Paths:   []string{testdata(t)},
		Logger:  quiet(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, eng.Close(context.Background())) })
	return eng
}

// TestEngineStartsRemotePools: a remote pool in the config is a pool of
// the engine by its name, in its monitor, and sessions open on it.
func TestEngineStartsRemotePools(t *testing.T) {
	srv := natsdevtest.Start(t, natsdev.Options{})
	eng := remoteEngine(t, srv.URL(), map[string]engine.RemoteConfig{"gpu": {}, "cpu-far": {MaxInFlight: 3}})

	p, err := eng.Pool("gpu")
	require.NoError(t, err)
	rp := eng.RemotePool("gpu")
	require.NotNil(t, rp)
	assert.Same(t, rp, p, "Pool(name) is the remote pool itself")
	assert.Equal(t, pools.KindRemote, rp.Kind())
	assert.Equal(t, "remote/gpu", rp.Name())
	assert.Equal(t, 3, eng.RemotePool("cpu-far").Capacity(), "max_in_flight reached the pool")
	assert.Nil(t, eng.RemotePool("default"), "a process pool is no remote pool")

	def, err := eng.Pool("")
	require.NoError(t, err)
	assert.NotEqual(t, pools.KindRemote, def.Kind(), "the default is still the process pool's router")

	_, err = eng.Pool("nope")
	assert.ErrorContains(t, err, `engine: no process pool named "nope" (pools: [default]; remote pools: [cpu-far gpu])`)

	names := map[string]string{}
	for _, ps := range eng.Monitor().State().Pools {
		names[ps.Name] = ps.Kind
	}
	assert.Equal(t, map[string]string{"process/default": "process", "remote/gpu": "remote", "remote/cpu-far": "remote"}, names)

	s, err := eng.Session(context.Background(), "gpu")
	require.NoError(t, err)
	s.Close()
}

// TestEngineRemoteStartFailures: Start fails, naming the cause, when NATS
// is unreachable or no node comes within wait_timeout; it stops what it
// started (the process pool: goleak and the process pool's own checks
// would see it otherwise).
func TestEngineRemoteStartFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "nats://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	cfg := engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}},
		NATS:    remote.ConnOptions{URL: dead},
		Remote:  map[string]engine.RemoteConfig{"gpu": {}},
		Logger:  quiet(),
	}
	_, err = engine.Start(context.Background(), cfg)
	assert.ErrorContains(t, err, "engine: remote pools: remote: connecting to "+dead)

	srv := natsdevtest.Start(t, natsdev.Options{})
	cfg.NATS.URL = srv.URL()
	// No node serves gpu in this test, so the wait ends by its timeout
	// whatever its length; a short one keeps the test quick.
	cfg.Remote["gpu"] = engine.RemoteConfig{WaitNodes: 1, WaitTimeout: 50 * time.Millisecond}
	_, err = engine.Start(context.Background(), cfg)
	assert.ErrorIs(t, err, remote.ErrNoNodes)
	assert.ErrorContains(t, err, `engine: remote pool "gpu"`)

	cfg.NATS = remote.ConnOptions{URL: srv.URL(), User: "only-user"}
	_, err = engine.Start(context.Background(), cfg)
	assert.ErrorIs(t, err, remote.ErrConfig, "the connection settings are checked at Start")
}

// TestConfigHostTakesHostCalls: with Config.Host set, Python's views go to
// it, not to the engine's own registry (which has no "price" view here).
func TestConfigHostTakesHostCalls(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var calls []pools.HostCall
	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Workers: 1},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}},
		Paths:   []string{testdata(t)},
		Logger:  quiet(),
		Host: func(_ context.Context, c pools.HostCall) (any, error) {
			mu.Lock()
			calls = append(calls, c)
			mu.Unlock()
			return 42.5, nil
		},
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()
	routes := []pools.Route{pools.Process}
	if eng.ThreadPool() != nil {
		routes = append(routes, pools.Thread)
	}
	for _, route := range routes {
		out, err := eng.Dispatch(ctx, dispatch.Slice([]string{"A1"}), engine.DispatchOptions{
			Options: dispatch.Options{Module: "enginetest", Function: "price", Route: route}})
		require.NoError(t, err, route)
		require.NoError(t, out.Results[0].Err, route)
		assert.Equal(t, 42.5, out.Results[0].Value, route)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, calls, len(routes))
	for _, c := range calls {
		assert.Equal(t, "slither.view", c.Name)
		require.NotEmpty(t, c.Args)
		assert.Equal(t, "price", c.Args[0])
	}
}
