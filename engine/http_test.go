package engine_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/engine"
)

// startOneProcess starts an engine of one process worker (pool "cpu")
// and no thread pool, serving its monitor as h says; the test's cleanup closes it (Close
// is idempotent, so a test may close it first).
func startOneProcess(t *testing.T, h engine.HTTPConfig) *engine.Engine {
	t.Helper()
	eng, err := engine.Start(context.Background(), engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"cpu": {Workers: 1}},
		HTTP:    h,
		Logger:  quiet(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, eng.Close(context.Background())) })
	return eng
}

func TestHTTPConfig(t *testing.T) {
	c, err := engine.ParseConfig([]byte("http: {addr: ':9090', token: t0k}\n"))
	require.NoError(t, err)
	assert.Equal(t, engine.HTTPConfig{Addr: ":9090", Token: "t0k"}, c.HTTP)

	for _, ok := range []string{":0", ":9090", "127.0.0.1:9090", "localhost:9090", "[::1]:9090"} {
		_, err := engine.ParseConfig([]byte("http: {addr: '" + ok + "'}"))
		assert.NoError(t, err, ok)
	}
	for _, open := range []string{"0.0.0.0:9090", "[::]:9090", "192.0.2.1:9090", "example.com:9090"} {
		_, err := engine.ParseConfig([]byte("http: {addr: '" + open + "'}"))
		assert.ErrorContains(t, err, "listens beyond this machine and http.token is empty", open)
		_, err = engine.ParseConfig([]byte("http: {addr: '" + open + "', token: x}"))
		assert.NoError(t, err, "with a token: %s", open)
	}
	_, err = engine.ParseConfig([]byte("http: {addr: '9090'}"))
	assert.ErrorContains(t, err, `http.addr "9090"`)

	var env engine.Config
	require.NoError(t, env.ApplyEnv([]string{"SLITHER_HTTP_ADDR=:0", "SLITHER_HTTP_TOKEN=abc"}))
	assert.Equal(t, engine.HTTPConfig{Addr: ":0", Token: "abc"}, env.HTTP)
	err = env.ApplyEnv([]string{"SLITHER_HTTP_PORT=1"})
	assert.ErrorContains(t, err, "SLITHER_HTTP_PORT: unknown setting (SLITHER_HTTP_<SETTING>, settings: ADDR, TOKEN)")
}

// TestEngineServesItsMonitor: Config.HTTP.Addr ":0" binds a free loopback
// port that HTTPAddr names; the token guards it; Close stops the server.
func TestEngineServesItsMonitor(t *testing.T) {
	ctx := context.Background()
	eng := startOneProcess(t, engine.HTTPConfig{Addr: ":0", Token: "t0k"})
	addr := eng.HTTPAddr()
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host, "a host-less address binds loopback only")

	get := func(path string, token string) (int, string) {
		req, err := http.NewRequest("GET", "http://"+addr+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, _ := get("/metrics", "")
	assert.Equal(t, 401, code)
	code, body := get("/metrics", "t0k")
	require.Equal(t, 200, code)
	assert.Contains(t, body, `slither_pool_capacity{kind="process",pool="process/cpu"} 1`)
	code, body = get("/debug/slither/state", "t0k")
	require.Equal(t, 200, code)
	assert.Contains(t, body, `"name":"process/cpu"`)

	// Headers past the server's 64 KiB limit are refused before any
	// handler runs (net/http's default would take a megabyte).
	req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer t0k")
	req.Header.Set("X-Padding", strings.Repeat("x", 128<<10))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	// The same handler, for a program's own server.
	assert.NotNil(t, eng.Handler())
	assert.NotNil(t, eng.Monitor())

	// A client watching the event stream does not keep Close waiting.
	req, err = http.NewRequest("GET", "http://"+addr+"/debug/slither/events?token=t0k", nil)
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	first := make([]byte, len("event: state"))
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	assert.Equal(t, "event: state", string(first))

	require.NoError(t, eng.Close(ctx))
	_, err = io.ReadAll(resp.Body) // the stream ended with the engine
	require.NoError(t, err)
	_, err = http.Get("http://" + addr + "/metrics")
	require.Error(t, err, "the server is closed with the engine")
	assert.True(t, strings.Contains(err.Error(), "refused"), err.Error())
}

func TestEngineWithoutHTTPAddrServesNothing(t *testing.T) {
	eng := startOneProcess(t, engine.HTTPConfig{})
	assert.Empty(t, eng.HTTPAddr())
	assert.NotNil(t, eng.Handler(), "the handler is there to mount")
}

// TestHandlerOnAProgramsServer follows Handler's doc: the handler mounted
// on a program's own server, its metrics served with the program's from
// one endpoint, and the engine closed before the server's Shutdown, which
// then does not wait on a dashboard's open event stream.
func TestHandlerOnAProgramsServer(t *testing.T) {
	ctx := context.Background()
	eng := startOneProcess(t, engine.HTTPConfig{})

	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounter(prometheus.CounterOpts{Name: "myprog_requests_total", Help: "The program's own."})
	reg.MustRegister(requests)
	requests.Inc()
	mux := http.NewServeMux()
	mux.Handle("/", eng.Handler())
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{reg, eng.Monitor().Gatherer()}, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, string(b))
	for _, want := range []string{"myprog_requests_total 1\n", `slither_pool_capacity{kind="process",pool="process/cpu"} 1`, "go_goroutines "} {
		assert.Contains(t, string(b), want)
	}
	// What the doc warns against: the default gatherer has the Go and
	// process collectors the monitor's registry has.
	_, err = prometheus.Gatherers{prometheus.DefaultGatherer, eng.Monitor().Gatherer()}.Gather()
	assert.ErrorContains(t, err, "collected before with the same name and label values")

	stream, err := http.Get(base + "/debug/slither/events")
	require.NoError(t, err)
	defer stream.Body.Close()
	first := make([]byte, len("event: state"))
	_, err = io.ReadFull(stream.Body, first)
	require.NoError(t, err)
	assert.Equal(t, "event: state", string(first))

	require.NoError(t, eng.Close(ctx))
	// No deadline: with the stream still open this would wait for ever.
	require.NoError(t, srv.Shutdown(context.Background()))
	require.ErrorIs(t, <-served, http.ErrServerClosed)
	_, err = io.ReadAll(stream.Body)
	require.NoError(t, err, "the stream ended with the engine")
}
