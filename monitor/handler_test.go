package monitor_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/telemetry"
)

func newMonitor(t *testing.T) (*monitor.Monitor, *telemetry.Bus) {
	t.Helper()
	bus := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: bus})
	require.NoError(t, err)
	t.Cleanup(m.Close)
	return m, bus
}

// serve runs one request through h from remote (an "ip:port"), to the
// host localhost:9090.
func serve(h http.Handler, method, target, remote string, header http.Header) *httptest.ResponseRecorder {
	return serveHost(h, method, target, remote, "localhost:9090", header)
}

// serveHost runs one request through h from remote with the Host host.
func serveHost(h http.Handler, method, target, remote, host string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = remote
	r.Host = host
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

const (
	local  = "127.0.0.1:40000"
	local6 = "[::1]:40000"
	remote = "192.0.2.7:40000"
)

func TestHandlerServesLoopbackOnlyWithoutToken(t *testing.T) {
	m, _ := newMonitor(t)
	h := m.Handler(monitor.HandlerOptions{})
	for _, from := range []string{local, local6} {
		w := serve(h, "GET", "/metrics", from, nil)
		assert.Equal(t, 200, w.Code, from)
		assert.Contains(t, w.Body.String(), "go_goroutines", "the monitor's own registry has the Go collector")
		w = serve(h, "GET", "/debug/slither/state", from, nil)
		require.Equal(t, 200, w.Code, from)
		assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
		var st monitor.State
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &st))
		assert.NotZero(t, st.Pid)
		assert.NotNil(t, st.Pools, "lists are [] rather than null")
	}
	for _, target := range []string{"/metrics", "/debug/slither/state", "/debug/slither/"} {
		w := serve(h, "GET", target, remote, nil)
		assert.Equal(t, http.StatusForbidden, w.Code, target)
		assert.NotContains(t, w.Body.String(), "go_goroutines")
		assert.Contains(t, w.Body.String(), "only loopback clients")
	}
	// A token given to a handler that has none does not open it up.
	w := serve(h, "GET", "/metrics?token=x", remote, http.Header{"Authorization": {"Bearer x"}})
	assert.Equal(t, http.StatusForbidden, w.Code)
}

// Without a token, a loopback client asking for another host name is a
// page of another site that reached the port by DNS rebinding: refused.
func TestHandlerWithoutTokenServesOnlyLoopbackHostNames(t *testing.T) {
	m, _ := newMonitor(t)
	h := m.Handler(monitor.HandlerOptions{})
	// No Host at all (HTTP/1.0) is no browser's: no rebinding either.
	for _, host := range []string{"localhost", "localhost:9090", "LOCALHOST:9090", "localhost.", "127.0.0.1", "127.0.0.1:9090", "127.1.2.3:80",
		"[::1]:9090", "[::1]", "::1", ""} {
		for _, target := range []string{"/metrics", "/debug/slither/state", "/debug/slither/"} {
			assert.Equal(t, 200, serveHost(h, "GET", target, local, host, nil).Code, "%s%s", host, target)
		}
	}
	for _, host := range []string{"evil.example:9090", "evil.example", "localhost.evil.example", "192.0.2.7:9090", "[2001:db8::1]:9090",
		"0.0.0.0:9090"} {
		for _, target := range []string{"/metrics", "/debug/slither/state", "/debug/slither/", "/debug/slither/app.js"} {
			w := serveHost(h, "GET", target, local, host, nil)
			assert.Equal(t, http.StatusForbidden, w.Code, "%q%s", host, target)
			assert.Contains(t, w.Body.String(), "set a token", host)
			assert.NotContains(t, w.Body.String(), "go_goroutines")
		}
	}
	// With a token, any host name is served to a client that has it.
	tok := m.Handler(monitor.HandlerOptions{Token: "s3cret"})
	w := serveHost(tok, "GET", "/metrics", remote, "slither.example:9090", http.Header{"Authorization": {"Bearer s3cret"}})
	assert.Equal(t, 200, w.Code)
}

func TestHandlerToken(t *testing.T) {
	m, _ := newMonitor(t)
	h := m.Handler(monitor.HandlerOptions{Token: "s3cret"})
	for name, c := range map[string]struct {
		target string
		header http.Header
		from   string
		want   int
	}{
		"none":             {"/metrics", nil, local, 401},
		"none from remote": {"/debug/slither/state", nil, remote, 401},
		"wrong bearer":     {"/metrics", http.Header{"Authorization": {"Bearer s3cre"}}, local, 401},
		"wrong query":      {"/metrics?token=s3cretx", nil, remote, 401},
		"basic scheme":     {"/metrics", http.Header{"Authorization": {"Basic s3cret"}}, remote, 401},
		"bearer":           {"/metrics", http.Header{"Authorization": {"Bearer s3cret"}}, remote, 200},
		"bearer lowercase": {"/debug/slither/state", http.Header{"Authorization": {"bearer s3cret"}}, remote, 200},
		"query":            {"/debug/slither/state?token=s3cret", nil, remote, 200},
		// The header wins over the query: a wrong header is refused.
		"wrong bearer, right query": {"/metrics?token=s3cret", http.Header{"Authorization": {"Bearer nope"}}, remote, 401},
	} {
		t.Run(name, func(t *testing.T) {
			w := serve(h, "GET", c.target, c.from, c.header)
			assert.Equal(t, c.want, w.Code)
			if c.want == 401 {
				assert.Equal(t, `Bearer realm="slither"`, w.Header().Get("WWW-Authenticate"))
				assert.NotContains(t, w.Body.String(), "go_goroutines")
			}
		})
	}
}

func TestHandlerIsReadOnly(t *testing.T) {
	m, _ := newMonitor(t)
	h := m.Handler(monitor.HandlerOptions{})
	for _, method := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		w := serve(h, method, "/debug/slither/state", local, nil)
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code, method)
		assert.Equal(t, "GET, HEAD", w.Header().Get("Allow"))
	}
	w := serve(h, "HEAD", "/metrics", local, nil)
	assert.Equal(t, 200, w.Code)
	w = serve(h, "HEAD", "/debug/slither/events", local, nil)
	assert.Equal(t, 200, w.Code)
	assert.Equal(t, "text/event-stream", w.Header().Get("Content-Type"))
	assert.Empty(t, w.Body.String())
}

func TestHandlerRoutesAndPrefixes(t *testing.T) {
	m, _ := newMonitor(t)
	h := m.Handler(monitor.HandlerOptions{})
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", h))
	mux.Handle("/raw/", h) // no StripPrefix: it still answers on the path's end
	for _, target := range []string{"/ops/metrics", "/ops/debug/slither/state", "/raw/metrics", "/raw/debug/slither/state"} {
		assert.Equal(t, 200, serve(mux, "GET", target, local, nil).Code, target)
	}
	for _, target := range []string{"/ops/", "/ops/nothing", "/ops/debug/slither/index.html", "/ops/debug/slither/no-such.js",
		"/ops/debug/slither/.hidden"} {
		assert.Equal(t, 404, serve(mux, "GET", target, local, nil).Code, target)
	}

	w := serve(h, "GET", "/debug/slither?token=a%20b", local, nil)
	assert.Equal(t, http.StatusMovedPermanently, w.Code)
	assert.Equal(t, "slither/?token=a%20b", w.Header().Get("Location"), "relative, so it works under any prefix")

	w = serve(mux, "GET", "/ops/debug/slither/", local, nil)
	require.Equal(t, 200, w.Code)
	assert.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"))
	assert.Contains(t, w.Body.String(), "<html")
	csp := w.Header().Get("Content-Security-Policy")
	assert.Contains(t, csp, "script-src 'self';")
	assert.Contains(t, csp, "style-src 'self';", "the page's styles come from style.css only")
	assert.NotContains(t, csp, "unsafe-", "no inline script or style, no eval")
	assert.Equal(t, "no-referrer", w.Header().Get("Referrer-Policy"))
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
}

// The event stream sends the state at once, then ends when the monitor
// closes.
func TestHandlerEventsEndWithMonitor(t *testing.T) {
	m, _ := newMonitor(t)
	srv := httptest.NewServer(m.Handler(monitor.HandlerOptions{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/slither/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	buf := make([]byte, 6)
	_, err = io.ReadFull(resp.Body, buf)
	require.NoError(t, err)
	assert.Equal(t, "event:", string(buf))
	m.Close()
	rest, err := io.ReadAll(resp.Body) // returns once the handler has ended the stream
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(rest), " state\ndata: {"), string(rest))
}

// The page's scripts and styles load without the token (a browser fetches
// them without the page's header); its data does not.
func TestHandlerPageAssetsNeedNoToken(t *testing.T) {
	m, _ := newMonitor(t)
	h := m.Handler(monitor.HandlerOptions{Token: "s3cret"})
	w := serve(h, "GET", "/debug/slither/?token=s3cret", remote, nil)
	require.Equal(t, 200, w.Code)
	assets := regexp.MustCompile(`(?:src|href)="([a-z0-9_-]+\.(?:js|css))(\?[^"]*)?"`).FindAllStringSubmatch(w.Body.String(), -1)
	require.Len(t, assets, 2, "the page links its script and its styles relatively")
	for _, a := range assets {
		assert.Empty(t, a[2], "%s: the page does not spread its token into the assets' URLs (and so into logs)", a[0])
	}
	assert.NotContains(t, w.Body.String(), "s3cret", "the page itself holds no token")
	for _, a := range assets {
		w := serve(h, "GET", "/debug/slither/"+a[1], remote, nil)
		assert.Equal(t, 200, w.Code, a[1])
		assert.NotEmpty(t, w.Body.String(), a[1])
	}
	assert.Equal(t, 401, serve(h, "GET", "/debug/slither/", remote, nil).Code, "the page itself needs the token")

	open := m.Handler(monitor.HandlerOptions{})
	assert.Equal(t, 403, serve(open, "GET", "/debug/slither/"+assets[0][1], remote, nil).Code,
		"without a token, assets too are for loopback clients only")
}
