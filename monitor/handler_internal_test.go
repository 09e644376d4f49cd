package monitor

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/telemetry"
)

// countingHandler is a handler of a new monitor whose clock the test sets
// and whose state readings it counts.
func countingHandler(t *testing.T, o HandlerOptions) (h *handler, reads *atomic.Int32, clock *atomic.Int64) {
	t.Helper()
	m, err := New(Options{Bus: telemetry.New(nil)})
	require.NoError(t, err)
	t.Cleanup(m.Close)
	h = m.Handler(o).(*handler)
	reads, clock = new(atomic.Int32), new(atomic.Int64)
	clock.Store(time.Unix(1_000_000, 0).UnixNano())
	h.now = func() time.Time { return time.Unix(0, clock.Load()) }
	h.read = func() State { reads.Add(1); return m.State() }
	return h, reads, clock
}

func localRequest(ctx context.Context, target string) *http.Request {
	r := httptest.NewRequestWithContext(ctx, "GET", target, nil)
	r.RemoteAddr, r.Host = "127.0.0.1:40000", "localhost:9090"
	return r
}

// flushSignal is a response recorder that says when the handler first
// flushed: an event stream has sent its first state.
type flushSignal struct {
	*httptest.ResponseRecorder
	flushed chan struct{}
	once    sync.Once
}

func newFlushSignal() *flushSignal {
	return &flushSignal{ResponseRecorder: httptest.NewRecorder(), flushed: make(chan struct{})}
}

func (f *flushSignal) Flush() {
	f.ResponseRecorder.Flush()
	f.once.Do(func() { close(f.flushed) })
}

// stream is one event stream served on a goroutine of its own, until
// stop.
type stream struct {
	w    *flushSignal
	stop context.CancelFunc
	done chan struct{}
}

func openStream(h http.Handler) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{w: newFlushSignal(), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		h.ServeHTTP(s.w, localRequest(ctx, "/debug/slither/events"))
	}()
	return s
}

// close ends the stream and waits for its handler to return.
func (s *stream) close() {
	s.stop()
	<-s.done
}

// TestStateIsReadOncePerMaxAge: requests and event streams within
// stateMaxAge of a reading share it; the next one after reads anew.
func TestStateIsReadOncePerMaxAge(t *testing.T) {
	h, reads, clock := countingHandler(t, HandlerOptions{})
	get := func() {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, localRequest(context.Background(), "/debug/slither/state"))
		require.Equal(t, 200, w.Code, w.Body.String())
	}
	for range 5 {
		get()
	}
	s := openStream(h)
	<-s.w.flushed
	s.close()
	assert.Equal(t, int32(1), reads.Load(), "five requests and a stream at one moment: one reading")
	assert.Contains(t, s.w.Body.String(), "event: state\ndata: {")

	clock.Add(int64(stateMaxAge) - 1)
	get()
	assert.Equal(t, int32(1), reads.Load(), "still within stateMaxAge")
	clock.Add(1)
	get()
	assert.Equal(t, int32(2), reads.Load(), "stateMaxAge after the reading")
	clock.Add(-int64(time.Second))
	get()
	assert.Equal(t, int32(3), reads.Load(), "a clock that went back reads anew")

	// A shorter Interval makes the readings as frequent as the stream.
	h2, _, _ := countingHandler(t, HandlerOptions{Interval: 10 * time.Millisecond})
	assert.Equal(t, 10*time.Millisecond, h2.maxAge)
}

// TestEventStreamsAreBounded: past MaxStreams at once, a stream is
// refused with 503; one ending makes room for another.
func TestEventStreamsAreBounded(t *testing.T) {
	h, _, _ := countingHandler(t, HandlerOptions{MaxStreams: 2})
	a, b := openStream(h), openStream(h)
	defer a.close()
	defer b.close()
	<-a.w.flushed
	<-b.w.flushed
	third := openStream(h)
	defer third.close()
	select {
	case <-third.done:
	case <-third.w.flushed:
		t.Fatal("a third stream was served")
	}
	assert.Equal(t, http.StatusServiceUnavailable, third.w.Code)
	assert.Contains(t, third.w.Body.String(), "too many event streams (2 at most)")
	assert.NotEmpty(t, third.w.Header().Get("Retry-After"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, localRequest(context.Background(), "/debug/slither/state"))
	assert.Equal(t, 200, w.Code, "the state is still served")

	a.close()
	c := openStream(h)
	defer c.close()
	<-c.w.flushed
	assert.Equal(t, 200, c.w.Code)

	d, _, _ := countingHandler(t, HandlerOptions{})
	assert.Equal(t, 16, cap(d.streams), "the default bound")
}

// TestStateEncodingFailureIsLoggedOnce: a state JSON cannot encode (a NaN)
// gets 500 from the state endpoint and ends event streams, logged once.
func TestStateEncodingFailureIsLoggedOnce(t *testing.T) {
	var logged strings.Builder
	m, err := New(Options{Bus: telemetry.New(nil), Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	require.NoError(t, err)
	defer m.Close()
	h := m.Handler(HandlerOptions{}).(*handler)
	h.read = func() State { return State{Pools: []PoolState{{Name: "p", Saturation: math.NaN()}}} }
	w := httptest.NewRecorder()
	h.ServeHTTP(w, localRequest(context.Background(), "/debug/slither/state"))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), "encoding the state")
	for range 2 {
		s := openStream(h)
		<-s.done // the stream ended of itself
	}
	assert.Equal(t, 1, strings.Count(logged.String(), "ending an event stream"), logged.String())
	assert.Contains(t, logged.String(), "NaN")
}
