package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/monitor"
)

// statePath is where the monitor's handler serves its JSON state,
// relative to where the handler is mounted.
const statePath = "debug/slither/state"

// maxStateBody caps what top reads of an answer: the state comes from the
// network, and a bigger one is not a Slither monitor's.
const maxStateBody = 8 << 20

type topOptions struct {
	addr, token   string
	interval      time.Duration
	once          bool
	width, height int
}

func newTop() *cobra.Command {
	o := topOptions{}
	cmd := &cobra.Command{
		Use:   "top --addr HOST:PORT",
		Short: "Watch a running engine's pools, workers, dispatches, routes, GIL and errors in the terminal",
		Long: `top reads the state an engine serves on its HTTP endpoint (engine Config.HTTP.Addr, or a
service that mounts Engine.Handler(); see ` + "`slither example NAME --serve ADDR`" + `) and draws it in
the terminal, refreshed in place every --interval until Ctrl-C: pools with busy/capacity, queue
depth and saturation, each worker with its state and the function it is running, dispatches in
flight against their limit, route decisions with their reasons, the GIL, and the last errors.

--addr is HOST:PORT (":9090" means 127.0.0.1:9090) or the URL the handler is mounted at
(http://host:9090/prefix, or the page's URL http://host:9090/debug/slither). A monitor with a
token wants --token (default: $SLITHER_HTTP_TOKEN); it is sent as a Bearer header.

--once prints one frame, without terminal escapes, and exits: non-zero with the reason when the
endpoint cannot be reached, refuses the token or does not answer with a Slither state.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTop(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "", "the engine's HTTP address, HOST:PORT or URL (required)")
	f.StringVar(&o.token, "token", os.Getenv("SLITHER_HTTP_TOKEN"), "the monitor's token (default $SLITHER_HTTP_TOKEN)")
	f.DurationVar(&o.interval, "interval", time.Second, "time between refreshes")
	f.BoolVar(&o.once, "once", false, "print one frame without escapes and exit")
	f.IntVar(&o.width, "width", 0, "columns to draw in (default: the terminal's, else 80)")
	f.IntVar(&o.height, "height", 0, "lines to draw in (default: the terminal's, else 24)")
	_ = cmd.MarkFlagRequired("addr")
	return cmd
}

func runTop(ctx context.Context, w io.Writer, o topOptions) error {
	if o.interval < 100*time.Millisecond {
		return fmt.Errorf("top: --interval %v is too short (at least 100ms)", o.interval)
	}
	if o.width < 0 || o.height < 0 {
		return fmt.Errorf("top: --width (%d) and --height (%d) must not be negative", o.width, o.height)
	}
	c, err := newStateClient(o.addr, o.token)
	if err != nil {
		return err
	}
	defer c.close()
	size := func() (int, int) {
		cols, rows, ok := termSize(w)
		if !ok {
			cols, rows = 80, 24
		}
		return orDetected(o.width, cols), orDetected(o.height, rows)
	}
	if o.once {
		st, err := c.fetch(ctx)
		if err != nil {
			return err
		}
		cols, rows := size()
		_, err = fmt.Fprintln(w, renderTop(st, cols, rows))
		return err
	}
	if _, _, ok := termSize(w); !ok {
		return errors.New("top: the output is not a terminal, so it cannot be redrawn in place; use --once for one plain frame")
	}
	winch := make(chan os.Signal, 1)
	if len(resizeSignals) > 0 {
		signal.Notify(winch, resizeSignals...)
		defer signal.Stop(winch)
	}
	ticker := time.NewTicker(o.interval)
	defer ticker.Stop()
	return topLoop(ctx, w, c.fetch, size, ticker.C, winch)
}

// orDetected is the flag's value when set, else the detected one.
func orDetected(flag, detected int) int {
	if flag > 0 {
		return flag
	}
	return detected
}

// Terminal control: the alternate screen keeps the user's scrollback
// intact, and every frame starts at the home position and clears what the
// previous one left below and to the right of it.
const (
	enterScreen = "\x1b[?1049h\x1b[?25l" // alternate screen, hide the cursor
	leaveScreen = "\x1b[?25h\x1b[?1049l" // show the cursor, back to the normal screen
	homeClear   = "\x1b[H"
	eraseLine   = "\x1b[K"
	eraseBelow  = "\x1b[J"
)

// topLoop draws a frame now, then on every tick and every resize until
// ctx ends (Ctrl-C: main's context ends on SIGINT and SIGTERM); it always
// restores the screen. The first fetch's error ends it, since an address
// or token that is wrong now will stay wrong; later errors are shown over
// the last good frame while it keeps trying, so an engine restarting does
// not end the watch.
func topLoop(ctx context.Context, w io.Writer, fetch func(context.Context) (monitor.State, error),
	size func() (int, int), tick <-chan time.Time, resize <-chan os.Signal) error {
	st, err := fetch(ctx)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, enterScreen); err != nil {
		return err
	}
	defer io.WriteString(w, leaveScreen) //nolint:errcheck // best effort on the way out
	var fetchErr error
	for {
		cols, rows := size()
		frame := renderTop(st, cols, rows)
		if fetchErr != nil {
			// The error replaces the frame's first line, so the frame keeps
			// its size.
			msg := clip(clean(fmt.Sprintf("! %v (retrying every tick)", fetchErr)), cols)
			if _, rest, ok := strings.Cut(frame, "\n"); ok {
				frame = msg + "\n" + rest
			} else {
				frame = msg
			}
		}
		var b strings.Builder
		b.WriteString(homeClear)
		b.WriteString(strings.ReplaceAll(frame, "\n", eraseLine+"\r\n"))
		b.WriteString(eraseLine + eraseBelow)
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil // the user ended it: not a failure
		case <-tick:
		case <-resize:
		}
		next, err := fetch(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			fetchErr = err
		default:
			st, fetchErr = next, nil
		}
	}
}

// stateClient GETs the monitor's state.
type stateClient struct {
	url, token string
	http       *http.Client
	transport  *http.Transport
}

// newStateClient resolves addr (HOST:PORT, :PORT, or a URL where the
// monitor's handler is mounted, the page's URL included) to the state's
// URL. A ?token= in the URL is moved to the Bearer header, so that it is
// not sent in the query; an explicit token wins over it.
func newStateClient(addr, token string) (*stateClient, error) {
	if addr == "" {
		return nil, errors.New("top: --addr is required (the engine's HTTP address, e.g. 127.0.0.1:9090)")
	}
	var u *url.URL
	if strings.Contains(addr, "://") {
		var err error
		if u, err = url.Parse(addr); err != nil {
			return nil, fmt.Errorf("top: --addr %q: %w", addr, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("top: --addr %q: only http and https URLs", addr)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("top: --addr %q: no host", addr)
		}
		if q := u.Query(); q.Has("token") {
			if token == "" {
				token = q.Get("token")
			}
			q.Del("token")
			u.RawQuery = q.Encode()
		}
	} else {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("top: --addr %q is not HOST:PORT or a URL: %w", addr, err)
		}
		if host == "" {
			host = "127.0.0.1" // as the engine binds a host-less address
		}
		u = &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}
	}
	p := strings.TrimSuffix(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/"+statePath):
	case strings.HasSuffix(p, "/debug/slither"):
		p += "/state"
	default:
		p += "/" + statePath
	}
	u.Path, u.RawPath, u.Fragment = p, "", ""
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &stateClient{url: u.String(), token: token, transport: t, http: &http.Client{Transport: t, Timeout: 10 * time.Second}}, nil
}

// close drops the client's idle connections (and their goroutines).
func (c *stateClient) close() { c.transport.CloseIdleConnections() }

// fetch reads one state. Its errors say what was wrong and what to do.
func (c *stateClient) fetch(ctx context.Context) (monitor.State, error) {
	var st monitor.State
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return st, fmt.Errorf("top: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return st, fmt.Errorf("top: nothing is listening at %s (connection refused): is the engine running with Config.HTTP.Addr set? (%w)", c.url, err)
		}
		return st, fmt.Errorf("top: cannot reach %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStateBody+1))
	if err != nil {
		return st, fmt.Errorf("top: reading the answer from %s: %w", c.url, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		if c.token == "" {
			return st, fmt.Errorf("top: %s needs a token (HTTP 401): pass --token or set SLITHER_HTTP_TOKEN to the engine's Config.HTTP.Token", c.url)
		}
		return st, fmt.Errorf("top: %s refused the token (HTTP 401): check --token / SLITHER_HTTP_TOKEN against the engine's Config.HTTP.Token", c.url)
	case http.StatusForbidden:
		if c.token == "" {
			return st, fmt.Errorf("top: %s refused this client (HTTP 403: %s): without a token the monitor serves loopback clients only; give the engine a Config.HTTP.Token and pass it with --token", c.url, snippet(body))
		}
		return st, fmt.Errorf("top: %s refused the request (HTTP 403: %s): check --token / SLITHER_HTTP_TOKEN", c.url, snippet(body))
	case http.StatusNotFound:
		return st, fmt.Errorf("top: %s has no Slither state (HTTP 404): if the handler is mounted under a prefix, pass --addr http://HOST:PORT/PREFIX", c.url)
	default:
		return st, fmt.Errorf("top: %s answered HTTP %d: %s", c.url, resp.StatusCode, snippet(body))
	}
	if len(body) > maxStateBody {
		return st, fmt.Errorf("top: the answer from %s is over %d MiB: not a Slither state", c.url, maxStateBody>>20)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("top: %s did not answer with a Slither state (%s, %q...): %w",
			c.url, resp.Header.Get("Content-Type"), snippet(body), err)
	}
	return st, nil
}

// snippet is the start of an answer's body, cleaned for the terminal.
func snippet(body []byte) string {
	s := strings.TrimSpace(clean(string(body)))
	return clip(s, 120)
}
