package monitor

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed web
var webFS embed.FS

// HandlerOptions configure [Monitor.Handler].
type HandlerOptions struct {
	// Token, when set, is required of every request, as the header
	// "Authorization: Bearer TOKEN" or the query parameter token=TOKEN
	// (for opening the page in a browser; the page sends it on as the
	// header). Without a Token only loopback clients are served.
	Token string
	// Interval is how often the events stream sends the state; 0 means
	// one second. The handler reads the state at most once per 250 ms
	// (or per Interval when shorter), one reading for every request and
	// stream in that time.
	Interval time.Duration
	// MaxStreams bounds the event streams served at once; more get 503
	// (the page polls the state instead). 0 means 16.
	MaxStreams int
}

// stateMaxAge is how long one reading of the state serves every request
// and stream: reading it samples every pool (for a process pool, /proc
// per worker), which a page per client per second would repeat.
const stateMaxAge = 250 * time.Millisecond

// Handler serves the monitor over HTTP, read-only: GET and HEAD only
// (405 otherwise), nothing it serves changes anything. It answers on
// paths ending in
//
//	metrics                Prometheus metrics (text exposition format)
//	debug/slither          redirects to debug/slither/
//	debug/slither/         the dashboard page (embedded; works offline)
//	debug/slither/state    the State as JSON
//	debug/slither/events   server-sent events: the State every Interval
//	debug/slither/FILE     the page's scripts and styles
//
// so it can be mounted at the root (mux.Handle("/", h)) or under any
// prefix, with or without http.StripPrefix
// (mux.Handle("/ops/", http.StripPrefix("/ops", h)) serves /ops/metrics);
// the page links to the others by relative URLs.
//
// Access: without o.Token, a client whose address is not loopback, or a
// request whose Host is not localhost or a loopback address (a page on
// another site reaching the port through DNS rebinding), gets 403 (behind
// a reverse proxy every client looks local: set a Token there); with a
// Token, a request without it gets 401 — except for the page's scripts
// and styles, which hold nothing but the page's code and which a browser
// fetches without the page's header. Tokens are compared in constant
// time.
func (m *Monitor) Handler(o HandlerOptions) http.Handler {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 16
	}
	h := &handler{m: m, opts: o, metrics: promhttp.HandlerFor(m.gather, promhttp.HandlerOpts{}),
		streams: make(chan struct{}, o.MaxStreams), maxAge: min(stateMaxAge, o.Interval), now: time.Now, read: m.State}
	if o.Token != "" {
		sum := sha256.Sum256([]byte(o.Token))
		h.token = sum[:]
	}
	h.page, h.pageErr = template.ParseFS(webFS, "web/index.html")
	h.assets, _ = fs.Sub(webFS, "web") // cannot fail: "web" is a valid path
	return h
}

type handler struct {
	m       *Monitor
	opts    HandlerOptions
	token   []byte // sha256 of the token; nil: loopback only
	metrics http.Handler
	page    *template.Template
	pageErr error
	assets  fs.FS

	// streams holds a token per event stream being served.
	streams chan struct{}
	// The state's JSON, read at most once per maxAge for every request
	// and stream; now and read are time.Now and Monitor.State (tests
	// count the readings and move the clock).
	maxAge   time.Duration
	now      func() time.Time
	read     func() State
	mu       sync.Mutex
	cached   []byte
	cachedAt time.Time
	// encodeFailed logs, once, that the state could not be encoded.
	encodeFailed sync.Once
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	p := "/" + strings.TrimPrefix(r.URL.Path, "/")
	if status, msg := h.allow(r, h.isAsset(p)); status != 0 {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="slither"`)
		}
		http.Error(w, msg, status)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "slither monitor: read-only (GET and HEAD only)", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case strings.HasSuffix(p, "/debug/slither/state"):
		h.state(w)
	case strings.HasSuffix(p, "/debug/slither/events"):
		h.events(w, r)
	case strings.HasSuffix(p, "/debug/slither/"):
		h.servePage(w)
	case strings.HasSuffix(p, "/debug/slither"):
		// The page's relative links need the trailing slash. Relative, and
		// not through http.Redirect (which resolves it against the path
		// StripPrefix left): right under any prefix.
		to := "slither/"
		if r.URL.RawQuery != "" {
			to += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", to)
		w.WriteHeader(http.StatusMovedPermanently)
	case strings.HasSuffix(p, "/metrics"):
		h.metrics.ServeHTTP(w, r)
	case h.isAsset(p):
		setPageHeaders(w)
		http.ServeFileFS(w, r, h.assets, path.Base(p))
	default:
		http.NotFound(w, r)
	}
}

// isAsset reports a request for one of the page's scripts or styles.
func (h *handler) isAsset(p string) bool {
	name := path.Base(p)
	if !strings.HasSuffix(path.Dir(p), "/debug/slither") || name == "index.html" || strings.HasPrefix(name, ".") {
		return false
	}
	info, err := fs.Stat(h.assets, name)
	return err == nil && info.Mode().IsRegular()
}

// allow returns 0, or the status and message refusing r. The page's
// scripts and styles need no token (a browser fetches them without the
// page's header, and they hold nothing but the page's code), but only
// loopback clients get them when there is no token.
func (h *handler) allow(r *http.Request, asset bool) (int, string) {
	if h.token == nil {
		if !Loopback(r.RemoteAddr) {
			return http.StatusForbidden, "slither monitor: only loopback clients are served without a token (set HandlerOptions.Token / engine HTTP token)"
		}
		// A page on another site can reach a loopback port by DNS
		// rebinding (its own name resolving to 127.0.0.1): the browser
		// then sends that name as the Host.
		// An HTTP/1.0 request may carry no Host at all: no browser's, so
		// no rebinding either.
		if r.Host != "" && !Loopback(r.Host) {
			return http.StatusForbidden, fmt.Sprintf("slither monitor: without a token only the host names localhost and loopback addresses are served, not %q "+
				"(a guard against DNS rebinding; set a token — HandlerOptions.Token / engine HTTP token — to serve other host names)", r.Host)
		}
		return 0, ""
	}
	if asset {
		return 0, ""
	}
	given := r.URL.Query().Get("token")
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, _ := strings.Cut(auth, " ")
		if strings.EqualFold(scheme, "Bearer") {
			given = strings.TrimSpace(tok)
		}
	}
	sum := sha256.Sum256([]byte(given))
	if given == "" || subtle.ConstantTimeCompare(sum[:], h.token) != 1 {
		return http.StatusUnauthorized, "slither monitor: a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)"
	}
	return 0, ""
}

// Loopback reports whether hostport (a host, or host:port; IPv6 with or
// without brackets) names this machine only: localhost (any case, with or
// without a trailing dot) or a loopback address. The handler serves such
// clients and host names without a token; the engine lets its server
// listen on such a host without one.
func Loopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// stateJSON is the state as JSON, read anew when the last reading is
// older than h.maxAge: one reading serves every request and stream in
// that time.
func (h *handler) stateJSON() ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if h.cached != nil && now.Sub(h.cachedAt) < h.maxAge && !now.Before(h.cachedAt) {
		return h.cached, nil
	}
	b, err := json.Marshal(h.read())
	if err != nil {
		return nil, fmt.Errorf("slither monitor: encoding the state: %w", err)
	}
	h.cached, h.cachedAt = b, now
	return b, nil
}

func (h *handler) state(w http.ResponseWriter) {
	b, err := h.stateJSON()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// events streams the state as server-sent events until the client goes,
// the monitor closes, or the server shuts down. It runs on the request's
// goroutine and starts none.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "text/event-stream")
		return
	}
	select {
	case h.streams <- struct{}{}:
		defer func() { <-h.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("slither monitor: too many event streams (%d at most); poll debug/slither/state instead",
			cap(h.streams)), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	t := time.NewTicker(h.opts.Interval)
	defer t.Stop()
	for {
		b, err := h.stateJSON()
		if err != nil {
			h.encodeFailed.Do(func() { h.m.log.Error("slither monitor: ending an event stream", "err", err) })
			return
		}
		if _, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-h.m.done:
			return
		}
	}
}

// pageData is what the page's template sees. It holds no token: the
// page's scripts and styles need none, and the script reads the token
// from the page's URL itself.
type pageData struct {
	Version string
	Host    string
}

func (h *handler) servePage(w http.ResponseWriter) {
	if h.pageErr != nil {
		http.Error(w, fmt.Sprintf("slither monitor: the page's template: %v", h.pageErr), http.StatusInternalServerError)
		return
	}
	d := pageData{Version: h.m.opts.Version, Host: h.m.host}
	var buf bytes.Buffer
	if err := h.page.Execute(&buf, d); err != nil {
		http.Error(w, fmt.Sprintf("slither monitor: rendering the page: %v", err), http.StatusInternalServerError)
		return
	}
	setPageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// setPageHeaders keeps the page to its own scripts and out of frames, and
// a token in its URL out of Referer headers.
func setPageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy",
		"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
}
