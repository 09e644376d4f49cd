package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
)

// chromium is Debian's browser, which `make python` installs with the
// other Debian packages the tests need.
const chromium = "/usr/bin/chromium"

// dashmod is the workload's Python: a thread-safe function for the
// embedded pool, one that fails on item 13 (and is not marked, so it runs
// in processes), and one that holds its worker until the test creates a
// file, so the page can be caught with a batch running.
const dashmod = `import os
import time

import slither


@slither.thread_safe
def double(batch):
    return [x * 2 for x in batch]


def parse(batch):
    out = []
    for x in batch:
        if x == 13:
            raise ValueError(f"bad record {x}: expected <int>, got {x!r}")
        out.append(x + 1)
    return out


def hold(batch):
    gate = batch[0]
    while not os.path.exists(gate):
        time.sleep(0.005)
    return [True for _ in batch]
`

// TestDashboardInBrowser opens /debug/slither in headless Chromium while
// an engine runs a known workload (both pool kinds, a pipeline with a
// router and a failing item that is retried, bisected and skipped), and
// checks that the page shows the pools, their workers, the counts, the
// failure's Python traceback, a batch while it runs, and that it updates.
// With SLITHER_SCREENSHOT=1 it saves the page to docs/dashboard.png.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the dashboard test drives Debian's chromium (%s), which is missing: run `make python` "+
			"(it installs chromium with the other Debian packages the tests use): %v", chromium, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dashmod.py"), []byte(dashmod), 0o644))
	features := store.Definition{
		Name:   "features",
		Tables: []store.TableSpec{{Name: "users"}},
		Load: func(ctx context.Context, w *store.Loader) error {
			for _, k := range []string{"ann", "bob", "cy"} {
				if err := w.Put("users", k, len(k)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	const token = "dash-test-token"
	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Workers: 2},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 2}},
		Paths:   []string{dir},
		Stores:  []store.Definition{features},
		HTTP:    engine.HTTPConfig{Addr: "127.0.0.1:0", Token: token},
		Logger:  slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, eng.Close(context.Background())) }()
	// Whatever happens, the held batch is released and its dispatch has
	// returned before the engine closes (deferred calls run last-in
	// first-out).
	var holding sync.WaitGroup
	defer holding.Wait()
	gate := filepath.Join(dir, "gate")
	defer func() { _ = os.WriteFile(gate, nil, 0o644) }()

	// The finished part of the workload: 100 items through the embedded
	// pool in 10 batches, and 40 through a pipeline whose Python stage
	// fails on item 13.
	embedded := eng.ThreadPool() != nil
	out, err := eng.Dispatch(ctx, dispatch.Slice(dashSeq(100)), engine.DispatchOptions{Options: dispatch.Options{
		Module: "dashmod", Function: "double", Name: "double", Strategy: dispatch.FixedBatch(10)}})
	require.NoError(t, err)
	require.Len(t, out.Results, 100)
	p, err := pipe.New("ingest").
		Map("prep", func(_ context.Context, it pipe.Item) (pipe.Item, error) { return it, nil }).
		Python("parse", pipe.Python{Module: "dashmod", Function: "parse", Strategy: dispatch.FixedBatch(8)}).
		Router("split", pipe.When("even", dashEven)).
		Output("even").
		OnError("parse", dispatch.Retry{Attempts: 1, Then: dispatch.Bisect{Then: dispatch.Skip{}}}).
		Build()
	require.NoError(t, err)
	res, err := eng.RunPipe(ctx, p, dispatch.Slice(dashSeq(40)), engine.PipeOptions{})
	require.NoError(t, err)
	require.Equal(t, 39, len(res.Outputs["even"])+len(res.Outputs[pipe.DefaultOutput]), "item 13 is skipped")

	b := openBrowser(t, ctx)
	defer b.close()
	b.navigate("http://" + eng.HTTPAddr() + "/debug/slither?token=" + token)

	// The header: live, this process, a time.
	b.waitText(`[data-testid="status"]`, "live")
	assert.Contains(t, b.text(`[data-testid="who"]`), "pid "+strconv.Itoa(os.Getpid()))
	assert.Regexp(t, `^updated \d\d:\d\d:\d\d$`, b.text(`[data-testid="updated"]`))

	// Pools and their workers.
	proc := `[data-testid="pool"][data-name="process/default"] `
	b.waitText(proc+`[data-testid="pool-kind"]`, "process")
	assert.Equal(t, "0 / 2", b.text(proc+`[data-testid="pool-busy"]`))
	// What it can really run at once: its 2 workers, on as many cores.
	assert.Equal(t, strconv.Itoa(min(2, capacity.Cores().Usable)), b.text(proc+`[data-testid="pool-effective"]`))
	assert.Equal(t, 2, b.count(proc+`[data-testid="worker"]`))
	for _, who := range b.texts(proc + `[data-testid="worker-os"]`) {
		assert.Regexp(t, `^pid [1-9]\d*$`, who)
	}
	for _, rss := range b.texts(proc + `[data-testid="worker-rss"]`) {
		assert.Regexp(t, `^\d+(\.\d)? (KiB|MiB|GiB)$`, rss, "a process worker's RSS")
	}
	thread := `[data-testid="pool"][data-name="thread"] `
	if embedded {
		b.waitText(thread+`[data-testid="pool-kind"]`, "thread")
		assert.Equal(t, "0 / 2", b.text(thread+`[data-testid="pool-busy"]`))
		assert.Equal(t, strconv.Itoa(min(2, capacity.Cores().Usable)), b.text(thread+`[data-testid="pool-effective"]`), "the GIL is off")
		assert.Equal(t, 2, b.count(thread+`[data-testid="worker"]`))
		for _, who := range b.texts(thread + `[data-testid="worker-os"]`) {
			// A direct-mode slot has an OS thread only while a call runs on it.
			assert.Regexp(t, `^(tid [1-9]\d*|—)$`, who)
		}
		assert.Equal(t, "10", b.text(thread+`[data-testid="pool-calls"]`), "the 10 batches of double")
		assert.Equal(t, "100", b.text(thread+`[data-testid="pool-items"]`))
		b.waitText(`[data-testid="gil-state"]`, "GIL disabled")
	} else {
		assert.Contains(t, b.text(`[data-testid="gil-state"]`), "No embedded interpreter")
		assert.Zero(t, b.count(thread), "no thread pool without cgo")
	}

	// The dispatch's counts are what it did.
	double := `[data-testid="dispatch"][data-name="double"] `
	b.waitText(double+`[data-testid="dispatch-items-ok"]`, "100")
	assert.Equal(t, "10", b.text(double+`[data-testid="dispatch-batches-ok"]`))
	assert.Equal(t, "0", b.text(double+`[data-testid="dispatch-batches-failed"]`))
	// The limit is the sum over the dispatch's running runs: none now.
	assert.Equal(t, "0 / —", b.text(double+`[data-testid="dispatch-inflight"]`))

	// The pipeline's stages, in order, with their counts.
	ingest := `[data-testid="pipe"][data-name="ingest"] `
	b.waitText(ingest+`[data-testid="pipe-runs"]`, "1")
	assert.Equal(t, []string{"prep", "parse", "split"}, b.texts(ingest+`[data-testid="stage-name"]`))
	assert.Equal(t, []string{"40", "40", "39"}, b.texts(ingest+`[data-testid="stage-in"]`))
	assert.Equal(t, []string{"40", "39", "39"}, b.texts(ingest+`[data-testid="stage-out"]`))

	// parse's batches of 8: the one holding 13 failed, failed again on its
	// retry, then halved down to 13 alone ([8-11] ok, [12-15] failed,
	// [12 13] failed, [14 15] ok, [12] ok, [13] failed): 5 failed
	// submissions, 4+3 good ones. Items count once: 39 ok, 13 skipped,
	// none failed.
	parse := `[data-testid="dispatch"][data-name="ingest/parse"] `
	b.waitText(parse+`[data-testid="dispatch-items-ok"]`, "39")
	assert.Equal(t, "0", b.text(parse+`[data-testid="dispatch-items-failed"]`))
	assert.Equal(t, "1", b.text(parse+`[data-testid="dispatch-items-skipped"]`))
	assert.Equal(t, "0", b.text(parse+`[data-testid="dispatch-items-routed"]`))
	assert.Equal(t, "0", b.text(parse+`[data-testid="dispatch-items-cancelled"]`))
	assert.Equal(t, "5", b.text(parse+`[data-testid="dispatch-batches-failed"]`))
	assert.Equal(t, "7", b.text(parse+`[data-testid="dispatch-batches-ok"]`))
	assert.Equal(t, "0", b.text(`[data-testid="total-items-failed"]`))
	assert.Equal(t, "1", b.text(`[data-testid="total-items-skipped"]`))
	assert.Equal(t, "0", b.text(`[data-testid="total-items-cancelled"]`))
	assert.Equal(t, "139", b.text(`[data-testid="total-items-ok"]`), "double's 100, parse's 39")

	// The retry of the failed batch, and the failure with its traceback.
	assert.NotEqual(t, "0", b.text(`[data-testid="total-retries"]`))
	b.waitText(`[data-testid="error"] [data-testid="error-type"]`, "ValueError")
	// Python's own message, which looks like markup ("<int>"): the page
	// shows it as text. The Go error chain is beside it.
	assert.Equal(t, "bad record 13: expected <int>, got 13", b.text(`[data-testid="error"] [data-testid="error-message"]`))
	assert.Contains(t, b.text(`[data-testid="error"] [data-testid="error-chain"]`), "ValueError: bad record 13: expected <int>, got 13")
	assert.Equal(t, "true", b.eval(`String(document.querySelector('[data-testid="errors"] int') === null)`))
	tb := b.text(`[data-testid="error"] [data-testid="error-traceback"]`)
	assert.Contains(t, tb, "Traceback (most recent call last)")
	assert.Contains(t, tb, "dashmod.py")
	assert.Contains(t, tb, "in parse")
	assert.Contains(t, tb, `raise ValueError(f"bad record {x}: expected <int>, got {x!r}")`)
	assert.Equal(t, "PRE", b.eval(`document.querySelector('[data-testid="error-traceback"]').tagName`))

	// Routing: double is marked thread-safe, parse is not.
	if embedded {
		assert.Equal(t, "10", b.text(`[data-testid="route-count"][data-route="thread"][data-class="thread-safe"] [data-testid="route-count-n"]`))
	}
	assert.Positive(t, b.count(`[data-testid="route-count"][data-route="process"]`))
	assert.Contains(t, b.texts(`[data-testid="route-decision"] [data-testid="route-function"]`), "dashmod.parse")

	// The store and its table's size.
	assert.Equal(t, "3", b.text(`[data-testid="store"][data-name="features"] [data-testid="store-table"][data-name="users"] [data-testid="store-table-rows"]`))

	// It updates: a batch that starts after the page loaded shows up
	// while it runs, and its end shows up too.
	updated := b.text(`[data-testid="updated"]`)
	where, held := pools.Process, proc
	if embedded {
		where, held = pools.Thread, thread
	}
	callsBefore := b.text(held + `[data-testid="pool-calls"]`)
	var holdErr error
	holding.Go(func() {
		_, holdErr = eng.Dispatch(ctx, dispatch.Slice([]string{gate}), engine.DispatchOptions{Options: dispatch.Options{
			Module: "dashmod", Function: "hold", Name: "hold", Route: where}})
	})
	b.waitText(held+`[data-testid="worker"] [data-testid="worker-current"]`, "dashmod.hold")
	assert.Equal(t, []string{"busy"}, b.cellsWhere(held+`[data-testid="worker"]`, "worker-current", "dashmod.hold", "worker-state"))
	assert.Regexp(t, `^\d+ ms$|^\d+\.\d s$`, b.cellsWhere(held+`[data-testid="worker"]`, "worker-current", "dashmod.hold", "worker-running")[0],
		"how long the batch has run")
	b.waitMatch(`[data-testid="dispatch"][data-name="hold"] [data-testid="dispatch-inflight"]`, `^1 / [1-9]\d*$`)
	assert.NotEqual(t, "—", b.text(`[data-testid="dispatch"][data-name="hold"] [data-testid="dispatch-pool"]`),
		"before its first batch ends, the dispatch shows the pool it was given")
	if os.Getenv("SLITHER_SCREENSHOT") == "1" {
		b.screenshot(filepath.Join("..", "docs", "dashboard.png"))
	}
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	holding.Wait()
	require.NoError(t, holdErr)
	b.waitText(`[data-testid="dispatch"][data-name="hold"] [data-testid="dispatch-batches-ok"]`, "1")
	b.waitChange(held+`[data-testid="pool-calls"]`, callsBefore)
	b.waitChange(`[data-testid="updated"]`, updated)
	assert.NotContains(t, b.texts(held+`[data-testid="worker-current"]`), "dashmod.hold", "the batch ended")
	b.noScriptErrors()

	// Once the engine is gone the page says so, rather than showing the
	// last numbers as live.
	require.NoError(t, eng.Close(ctx))
	b.waitMatch(`[data-testid="status"]`, `^cannot read state: `)
}

// dashEven reports an item whose payload is an even number, whatever numeric
// type it came back from Python as.
func dashEven(it pipe.Item) bool {
	f, err := strconv.ParseFloat(fmt.Sprint(it.Payload), 64)
	return err == nil && int64(f)%2 == 0
}

func dashSeq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// browser is a headless Chromium tab and the test it reports to.
type browser struct {
	t      *testing.T
	ctx    context.Context
	cancel func()

	mu     sync.Mutex
	errors []string // uncaught exceptions, console errors and browser-logged errors (CSP violations...) of the page
}

func openBrowser(t *testing.T, ctx context.Context) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tctx, cancelTab := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: tctx, cancel: func() { cancelTab(); cancelAlloc() }}
	err := chromedp.Listen(tctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += ": " + e.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				msg = "console.error"
				for _, a := range e.Args {
					msg += " " + string(a.Value)
				}
			}
		case *cdplog.EventEntryAdded:
			// What the browser itself logs: a Content-Security-Policy
			// violation (source "security"), a failed load.
			if e.Entry.Level == cdplog.EntryLevelError {
				msg = "browser log (" + string(e.Entry.Source) + "): " + e.Entry.Text + " " + e.Entry.URL
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	})
	if err != nil {
		b.cancel()
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return b
}

// close ends the tab and the browser, and waits for the browser to exit.
func (b *browser) close() {
	if b.t.Failed() {
		body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		b.t.Logf("the page's text at the failure:\n%s", body)
	}
	b.cancel()
}

func (b *browser) navigate(url string) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, chromedp.Navigate(url)), "opening %s", url)
}

// eval returns a JavaScript expression's value as a string.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	require.NoError(b.t, err, "evaluating %s", expr)
	return v
}

// text is the text of the first element sel matches, or "<none>".
func (b *browser) text(sel string) string {
	b.t.Helper()
	return b.eval(fmt.Sprintf(`(n => n ? n.textContent : "<none>")(document.querySelector(%s))`, jsString(sel)))
}

// texts are the texts of every element sel matches, in document order.
func (b *browser) texts(sel string) []string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](
		fmt.Sprintf(`Array.from(document.querySelectorAll(%s), n => n.textContent)`, jsString(sel))))
	require.NoError(b.t, err, "reading %s", sel)
	return v
}

// cellsWhere reads, in each row sel matches whose cell (by data-testid)
// key has the text value, the text of the cell named cell.
func (b *browser) cellsWhere(sel, key, value, cell string) []string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%s)).filter(r => { const k = r.querySelector('[data-testid="' + %s + '"]'); return k && k.textContent === %s; })`+
			`.map(r => { const c = r.querySelector('[data-testid="' + %s + '"]'); return c ? c.textContent : "<none>"; })`,
		jsString(sel), jsString(key), jsString(value), jsString(cell))))
	require.NoError(b.t, err, "reading %s", sel)
	return v
}

func (b *browser) count(sel string) int {
	b.t.Helper()
	return len(b.texts(sel))
}

// wait waits until the JavaScript function fn, called with a selector
// and an argument, returns true for some element the selector matches:
// the page polls the state once a second, so what the engine did shows up
// on one of its next renders. On a timeout it fails with the texts found.
func (b *browser) wait(fn, what, sel, arg string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.PollFunction[chromedp.Void](
		`(sel, arg) => Array.from(document.querySelectorAll(sel)).some(`+fn+`)`,
		chromedp.WithPollingArgs(sel, arg), chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		b.t.Fatalf("the page never showed %s %q at %s (it shows %q): %v", what, arg, sel, b.texts(sel), err)
	}
}

// waitText waits until an element sel matches has exactly the text want.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	b.wait(`n => n.textContent === arg`, "the text", sel, want)
}

// waitMatch waits until an element sel matches has a text that the
// regular expression pattern matches.
func (b *browser) waitMatch(sel, pattern string) {
	b.t.Helper()
	b.wait(`n => new RegExp(arg).test(n.textContent)`, "a text matching", sel, pattern)
}

// waitChange waits until an element sel matches has a text other than
// before.
func (b *browser) waitChange(sel, before string) {
	b.t.Helper()
	b.wait(`n => n.textContent !== arg`, "a text other than", sel, before)
}

func (b *browser) screenshot(path string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err)
	require.NoError(b.t, os.WriteFile(path, png, 0o644))
	b.t.Logf("saved %s", path)
}

// noScriptErrors fails the test if the page threw or logged an error, or
// the browser logged one for it (a Content-Security-Policy violation, a
// failed load).
func (b *browser) noScriptErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	assert.Empty(b.t, b.errors, "the page's script errors and the browser's errors for it")
}

func jsString(s string) string {
	j, _ := json.Marshal(s)
	return string(j)
}
