package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/monitor"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// busyState is an engine at work: two pools, a busy and an idle worker in
// each, two dispatches, routes, the GIL turned back on, a pipe and errors.
func busyState() monitor.State {
	return monitor.State{
		Time: t0.Add(90 * time.Minute), Started: t0, Host: "box", Pid: 4242,
		GIL: monitor.GILState{Embedded: true, FreeThreadedBuild: true, Enabled: true, Changes: []monitor.GILChange{
			{Enabled: true, Module: "legacyext", During: "textan.analyze", At: t0.Add(time.Minute)},
		}},
		Totals: monitor.Totals{BatchesOK: 1234, BatchesFailed: 3, Retries: 5, ItemsOK: 98765, ItemsFailed: 7, InFlight: 3, QueuedItems: 12},
		Pools: []monitor.PoolState{
			{Name: "process/default", Kind: "process", Capacity: 2, Busy: 1, Waiting: 4, Saturation: 0.5, Calls: 77, Items: 300, Errors: 2, Restarts: 1,
				Workers: []monitor.WorkerState{
					{ID: 0, State: "busy", Pid: 31337, Current: "etl.validate", RunningS: 2.5, Calls: 40, RSS: 48 << 20},
					{ID: 1, State: "idle", Pid: 31338, Calls: 37, RSS: 47 << 20},
				}},
			{Name: "thread", Kind: "thread", Capacity: 4, Busy: 2, Waiting: 0, Saturation: 0.5, Calls: 1160, Items: 98000,
				Workers: []monitor.WorkerState{
					{ID: 0, State: "idle", Pid: 4242, Thread: 101, Calls: 500},
					{ID: 1, State: "busy", Thread: 102, Current: "textan.analyze", RunningS: 0.25, Calls: 300},
				}},
		},
		Dispatch: []monitor.DispatchState{
			{Name: "analyze", Pool: "thread", Function: "textan.analyze", Runs: 1, InFlight: 2, MaxInFlight: 8, QueuedItems: 12, BatchesOK: 1150, Retries: 1},
			{Name: "validate", Pool: "process/default", Function: "etl.validate", Runs: 1, InFlight: 1, MaxInFlight: 4, BatchesOK: 84, Failed: 3, Retries: 4},
		},
		Routes: []monitor.RouteCount{{Route: "thread", Class: "thread-safe", Count: 1150}, {Route: "process", Class: "gil-enabled", Count: 84}},
		RecentRoutes: []monitor.RouteDecision{
			{At: t0, Function: "etl.validate", Route: "process", Class: "gil-enabled", Reason: "the GIL is on since legacyext was imported", Count: 84},
		},
		Pipes: []monitor.PipeState{{Name: "etl", Runs: 3, Running: 1, Stages: []monitor.StageState{
			{Name: "prepare", Kind: "map", In: 48, Out: 48}, {Name: "validate", Kind: "python", In: 48, Out: 47},
		}}},
		Errors: []monitor.ErrorState{{At: t0.Add(80 * time.Minute), Source: "validate", Function: "etl.validate", Pool: "process/default",
			Type: "ValueError", Message: "dispatch: etl.validate: ValueError: row b1-r03 has no name\nmore detail", Traceback: "Traceback (most recent call last):\n  ...", Count: 3}},
	}
}

// checkFrame asserts the frame's shape: at most height lines, none wider
// than width runes.
func checkFrame(t *testing.T, frame string, width, height int) []string {
	t.Helper()
	lines := strings.Split(frame, "\n")
	assert.LessOrEqual(t, len(lines), height, "%dx%d frame:\n%s", width, height, frame)
	for _, l := range lines {
		assert.LessOrEqual(t, utf8.RuneCountInString(l), width, "%dx%d line %q", width, height, l)
	}
	return lines
}

func TestRenderTopShowsTheEngine(t *testing.T) {
	frame := renderTop(busyState(), 80, 24)
	lines := checkFrame(t, frame, 80, 24)
	assert.Len(t, lines, 19, frame) // everything fits: no "more" lines
	assert.NotContains(t, frame, "more ")
	for _, want := range []string{
		"up 1h30m  box pid 4242",
		"batches 1234 ok 3 fail 5 retry 3 in flight  items 98765 ok 7 fail 12 queued",
		// the GIL and who turned it on
		"GIL  ON: importing legacyext re-enabled it at " + t0.Add(time.Minute).Local().Format(time.TimeOnly) + " (during textan.analyze)",
		// the last error, its type and message and where
		"ValueError: row b1-r03 has no name x3 [validate etl.validate process",
		"ROUTES  thread/thread-safe 1150  process/gil-enabled 84",
		"etl.validate -> process (gil-enabled) x84: the GIL is on since legacyext",
		"PIPE etl runs 3 (1 running, 0 failed) prepare 48>48 | validate 48>47",
	} {
		assert.Contains(t, frame, want)
	}
	row := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return strings.Join(strings.Fields(l), " ")
			}
		}
		t.Fatalf("no line starts with %q in\n%s", prefix, frame)
		return ""
	}
	// pool: busy/capacity, waiting, saturation, calls, items, errors, restarts
	assert.Equal(t, "process/default process 1/2 4 50% 77 300 2 1", row("process/default "))
	assert.Equal(t, "thread thread 2/4 0 50% 1160 98000 0 0", row("thread  "))
	// workers, the busy ones first, with what they run and for how long
	assert.Equal(t, "process/default#0 busy 31337 etl.validate 2.5s 40 48M", row("process/default#0"))
	assert.Equal(t, "thread#1 busy 102 textan.analyze 250ms 300 -", row("thread#1"), "a thread worker shows its thread id")
	assert.Equal(t, "thread#0 idle 101 - 500 -", row("thread#0"))
	assert.Less(t, strings.Index(frame, "thread#1"), strings.Index(frame, "process/default#1"), "busy workers come first")
	// dispatch: in flight against the limit, queued, ok, failed, retries
	assert.Equal(t, "analyze thread textan.analyze 2/8 12 1150 0 1", row("analyze "))
	assert.Equal(t, "validate process/default etl.validate 1/4 0 84 3 4", row("validate "))
	assert.NotContains(t, frame, "more detail", "only an error's first line")
}

func TestRenderTopGILStates(t *testing.T) {
	for _, c := range []struct {
		gil  monitor.GILState
		want string
	}{
		{monitor.GILState{}, "GIL  no embedded interpreter (process pools only)"},
		{monitor.GILState{Embedded: true}, "GIL  on (not a free-threaded build)"},
		{monitor.GILState{Embedded: true, FreeThreadedBuild: true}, "GIL  off (free-threaded)"},
		{monitor.GILState{Embedded: true, FreeThreadedBuild: true, Enabled: true}, "GIL  ON: re-enabled"},
	} {
		frame := renderTop(monitor.State{GIL: c.gil}, 80, 24)
		assert.Contains(t, frame, c.want)
	}
}

// TestRenderTopErrorMessage: an error whose Message is Python's own
// (Error holds the Go chain) shows as is, even where it names its type
// again; an older state's chain is cut to Python's part.
func TestRenderTopErrorMessage(t *testing.T) {
	for _, c := range []struct {
		e    monitor.ErrorState
		want string
	}{
		{monitor.ErrorState{Type: "ValueError", Message: "expected ValueError: got 3",
			Error: "pools/process: m.f: python: ValueError: expected ValueError: got 3"}, "ValueError: expected ValueError: got 3"},
		{monitor.ErrorState{Type: "ValueError", Message: "pools/process: m.f: python: ValueError: bad"}, "ValueError: bad"},
		{monitor.ErrorState{Message: "dispatch: pool closed"}, "dispatch: pool closed"},
	} {
		frame := renderTop(monitor.State{Errors: []monitor.ErrorState{c.e}}, 80, 24)
		assert.Contains(t, strings.Split(frame, "\n"), "  "+c.want, "%+v:\n%s", c.e, frame)
	}
}

// TestRenderTopCrowded fills far more than 24 lines: the frame is exactly
// 24 lines, every section keeps its header and first row, and says how
// many rows it left out.
func TestRenderTopCrowded(t *testing.T) {
	st := busyState()
	for i := range 6 {
		p := monitor.PoolState{Name: fmt.Sprintf("process/p%d", i), Kind: "process", Capacity: 8}
		for w := range 8 {
			p.Workers = append(p.Workers, monitor.WorkerState{ID: w, State: "idle", Pid: 1000 + 10*i + w})
		}
		st.Pools = append(st.Pools, p)
		st.Dispatch = append(st.Dispatch, monitor.DispatchState{Name: fmt.Sprintf("d%d", i), Pool: p.Name})
	}
	for i := range 30 {
		st.Errors = append(st.Errors, monitor.ErrorState{Type: "KeyError", Message: fmt.Sprintf("k%d", i)})
	}
	frame := renderTop(st, 80, 24)
	lines := checkFrame(t, frame, 80, 24)
	assert.Len(t, lines, 24, frame)
	for _, want := range []string{"POOL ", "process/default ", "process/p5 ", "WORKER ", "process/default#0", "more workers",
		"DISPATCH ", "analyze ", "LAST ERRORS", "ValueError: row b1-r03", "more errors", "GIL  ON", "ROUTES "} {
		assert.Contains(t, frame, want)
	}
	assert.Contains(t, frame, fmt.Sprintf("… %d more workers", 4+48-1), "the hidden workers are counted")
}

// TestRenderTopAnySize draws at every size from tiny to large: never more
// lines than height, never a line wider than width.
func TestRenderTopAnySize(t *testing.T) {
	st := busyState()
	for width := 1; width <= 140; width += 7 {
		for height := 1; height <= 40; height++ {
			checkFrame(t, renderTop(st, width, height), width, height)
		}
	}
	assert.Empty(t, renderTop(st, 0, 24))
	assert.Empty(t, renderTop(st, 80, 0))
	lines := checkFrame(t, renderTop(monitor.State{}, 80, 24), 80, 24)
	assert.Len(t, lines, 3, "an empty state is its title, totals and GIL")
}

// TestRenderTopHostileText: text from the endpoint cannot reach the
// terminal as escapes, line breaks or bidi overrides, and wide characters
// count as two cells.
func TestRenderTopHostileText(t *testing.T) {
	st := busyState()
	st.Host = "evil\x1b]0;pwned\x07"
	st.Pools[0].Name = "process/\x1b[31mred"
	st.Pools[0].Workers[0].Current = "mod.\u202efn\r\n"
	st.Errors[0].Message = "\x1b[2J\x1b[Hcleared\x9b6n" + string([]byte{0xff, 0xfe}) + strings.Repeat("字", 100)
	st.Errors[0].Type = "Boom\tType"
	frame := renderTop(st, 80, 24)
	lines := checkFrame(t, frame, 80, 24)
	assert.Len(t, lines, 19)
	for _, bad := range []string{"\x1b", "\x07", "\r", "\t", "\u202e", "\x9b", "\ufffe"} {
		assert.NotContains(t, frame, bad)
	}
	assert.True(t, utf8.ValidString(frame))
	assert.Contains(t, frame, "Boom Type:")
	for _, l := range lines {
		n := 0
		for _, r := range l {
			n += cells(r)
		}
		assert.LessOrEqual(t, n, 80, "%q is wider than the terminal", l)
	}
}

func TestRenderHelpers(t *testing.T) {
	assert.Equal(t, "ab…", clip("abcdef", 3))
	assert.Equal(t, "abc", clip("abc", 3))
	assert.Equal(t, "字…", clip("字字字", 4))
	assert.Equal(t, "ab  ", cell("ab", 4))
	assert.Equal(t, "text_ana…/analyze", clipMiddle("text_analysis/analyze", 17))
	assert.Equal(t, "short", clipMiddle("short", 17))
	for w := 1; w < 25; w++ {
		assert.LessOrEqual(t, utf8.RuneCountInString(clipMiddle("text_analysis/analyze", w)), w)
		assert.LessOrEqual(t, utf8.RuneCountInString(clipMiddle("字字字字字字字字", w)), w)
	}
	assert.Equal(t, "99999", count(99_999))
	assert.Equal(t, "123k", count(123_456))
	assert.Equal(t, "12.3M", count(12_345_678))
	assert.Equal(t, "-5", count(-5))
	assert.Equal(t, "850ms", short(850*time.Millisecond))
	assert.Equal(t, "5m03s", short(5*time.Minute+3*time.Second))
	assert.Equal(t, "2h05m", short(2*time.Hour+5*time.Minute))
	assert.Equal(t, "97h00m", short(97*time.Hour))
	assert.Equal(t, "5d01h", short(121*time.Hour))
}

func TestStateURL(t *testing.T) {
	for _, c := range []struct{ addr, token, url, wantToken string }{
		{":9090", "", "http://127.0.0.1:9090/debug/slither/state", ""},
		{"localhost:9090", "t", "http://localhost:9090/debug/slither/state", "t"},
		{"[::1]:9090", "", "http://[::1]:9090/debug/slither/state", ""},
		{"http://h:1/ops/", "", "http://h:1/ops/debug/slither/state", ""},
		{"http://h:1/debug/slither?token=abc", "", "http://h:1/debug/slither/state", "abc"},
		{"https://h/debug/slither/state?token=abc", "mine", "https://h/debug/slither/state", "mine"},
	} {
		c1, err := newStateClient(c.addr, c.token)
		require.NoError(t, err, c.addr)
		assert.Equal(t, c.url, c1.url, c.addr)
		assert.Equal(t, c.wantToken, c1.token, c.addr)
	}
	for _, bad := range []string{"", "9090", "ftp://h/x", "http://"} {
		_, err := newStateClient(bad, "")
		assert.Error(t, err, bad)
	}
}

// serveState answers like the monitor's handler: the state as JSON, to a
// request with the token when there is one.
func serveState(t *testing.T, token string, st monitor.State) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/slither/state" {
			http.NotFound(w, r)
			return
		}
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchState(t *testing.T) {
	ctx := context.Background()
	srv := serveState(t, "s3cret", busyState())
	c, err := newStateClient(srv.URL, "s3cret")
	require.NoError(t, err)
	defer c.close()
	st, err := c.fetch(ctx)
	require.NoError(t, err)
	assert.Equal(t, busyState().Pools[0].Workers[0].Current, st.Pools[0].Workers[0].Current)

	for _, c := range []struct{ token, want string }{
		{"", "needs a token (HTTP 401): pass --token or set SLITHER_HTTP_TOKEN"},
		{"wrong", "refused the token (HTTP 401)"},
	} {
		cl, err := newStateClient(srv.URL, c.token)
		require.NoError(t, err)
		_, err = cl.fetch(ctx)
		assert.ErrorContains(t, err, c.want)
		cl.close()
	}
}

func TestFetchStateErrors(t *testing.T) {
	ctx := context.Background()
	answer := func(status int, ctype, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		defer srv.Close()
		c, err := newStateClient(srv.URL, "")
		require.NoError(t, err)
		defer c.close()
		_, err = c.fetch(ctx)
		require.Error(t, err)
		return err.Error()
	}
	assert.Contains(t, answer(403, "text/plain", "loopback only\x1b[2J"), "HTTP 403: loopback only")
	assert.NotContains(t, answer(403, "text/plain", "loopback only\x1b[2J"), "\x1b")
	assert.Contains(t, answer(403, "text/plain", ""), "without a token the monitor serves loopback clients only")
	assert.Contains(t, answer(404, "text/plain", "no"), "mounted under a prefix")
	assert.Contains(t, answer(500, "text/plain", "boom"), "HTTP 500: boom")
	assert.Contains(t, answer(200, "text/html", "<html>a page</html>"), "did not answer with a Slither state (text/html")
	assert.Contains(t, answer(200, "application/json", `{"pools": 3}`), "did not answer with a Slither state")
	// An endless answer is cut off, not read whole.
	assert.Contains(t, answer(200, "application/json", `{"host":"`+strings.Repeat("x", maxStateBody)+`"}`), "over 8 MiB")

	// Nothing listening: a port that was just free.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	c, err := newStateClient(addr, "")
	require.NoError(t, err)
	defer c.close()
	_, err = c.fetch(ctx)
	assert.ErrorContains(t, err, "nothing is listening at http://"+addr+"/debug/slither/state (connection refused)")
}

func TestTopOnceCommand(t *testing.T) {
	srv := serveState(t, "", busyState())
	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"top", "--addr", strings.TrimPrefix(srv.URL, "http://"), "--once", "--token", ""})
	require.NoError(t, cmd.Execute())
	assert.NotContains(t, out.String(), "\x1b", "--once prints no escapes")
	checkFrame(t, strings.TrimSuffix(out.String(), "\n"), 80, 24)
	assert.Contains(t, out.String(), "thread#1")

	cmd = newRoot()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"top", "--once"})
	assert.ErrorContains(t, cmd.Execute(), `"addr" not set`)
	cmd = newRoot()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"top", "--addr", ":1", "--interval", "1ms"})
	assert.ErrorContains(t, cmd.Execute(), "--interval 1ms is too short")
	cmd = newRoot()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"top", "--addr", strings.TrimPrefix(srv.URL, "http://")})
	assert.ErrorContains(t, cmd.Execute(), "not a terminal", "only --once writes to a file or pipe")
}

// TestTopLoop drives the refresh loop with its own ticks: the screen is
// switched to the alternate one with the cursor hidden, every frame is
// drawn from the home position, a fetch error shows over the last frame
// without ending the watch, and the screen is restored when the context
// ends (as it does on Ctrl-C).
func TestTopLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tick := make(chan time.Time)
	var out bytes.Buffer
	calls := 0
	fetch := func(context.Context) (monitor.State, error) {
		calls++
		st := busyState()
		st.Totals.BatchesOK = int64(calls)
		switch calls {
		case 2:
			return st, fmt.Errorf("top: cannot reach it: boom")
		case 4:
			cancel()
		}
		return st, nil
	}
	done := make(chan error, 1)
	go func() {
		done <- topLoop(ctx, &out, fetch, func() (int, int) { return 80, 24 }, tick, make(chan os.Signal))
	}()
	tick <- time.Time{} // frame 2: the error over frame 1
	tick <- time.Time{} // frame 3: good again
	tick <- time.Time{} // fetch 4 ends the context
	require.NoError(t, <-done)

	s := out.String()
	require.True(t, strings.HasPrefix(s, enterScreen+homeClear), "%q", s[:min(len(s), 40)])
	require.True(t, strings.HasSuffix(s, leaveScreen), "%q", s[max(len(s)-40, 0):])
	frames := strings.Split(strings.TrimSuffix(strings.TrimPrefix(s, enterScreen), leaveScreen), homeClear)[1:]
	require.Len(t, frames, 3)
	assert.Contains(t, frames[0], "batches 1 ok ")
	assert.Contains(t, frames[1], "! top: cannot reach it: boom (retrying every tick)")
	assert.Contains(t, frames[1], "batches 1 ok ", "the last good state stays")
	assert.Contains(t, frames[2], "batches 3 ok ")
	assert.NotContains(t, frames[2], "boom")
	for _, f := range frames {
		assert.True(t, strings.HasSuffix(f, eraseLine+eraseBelow))
		assert.Len(t, strings.Split(f, "\r\n"), 19)
	}

	// An error on the first fetch ends it at once, the screen untouched.
	out.Reset()
	err := topLoop(context.Background(), &out, func(context.Context) (monitor.State, error) {
		return monitor.State{}, fmt.Errorf("top: nope")
	}, func() (int, int) { return 80, 24 }, tick, nil)
	assert.ErrorContains(t, err, "nope")
	assert.Empty(t, out.String())
}
