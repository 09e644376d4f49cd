package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slither-go/slither/monitor"
)

// renderTop draws one frame of `slither top`: at most height lines, none
// wider than width terminal cells (hence none longer than width runes),
// no trailing newline. Lines are truncated, never wrapped, so a frame
// redrawn in place never scrolls. When the sections do not fit, each
// keeps its header and first row and says how many rows it left out; the
// space left goes to pools, dispatches, routes, workers, errors and pipes,
// in that order.
//
// st comes from the network: every string in it is cleaned of control
// and formatting characters before it reaches the terminal.
func renderTop(st monitor.State, width, height int) string {
	if width < 1 || height < 1 {
		return ""
	}
	fixed := []string{titleLine(st), totalsLine(st.Totals), gilLine(st.GIL)}
	sections := []*topSection{
		poolSection(st.Pools),
		workerSection(st),
		dispatchSection(st.Dispatch),
		routeSection(st),
		pipeSection(st.Pipes),
		errorSection(st.Errors),
	}
	// The order in which the sections get the lines beyond their first two.
	priority := []int{0, 2, 3, 1, 5, 4}

	budget := height - len(fixed)
	for _, i := range priority {
		s := sections[i]
		s.shown = min(s.least(), max(budget, 0))
		budget -= s.shown
	}
	for _, i := range priority {
		s := sections[i]
		extra := min(s.total()-s.shown, max(budget, 0))
		s.shown += extra
		budget -= extra
	}

	lines := fixed
	for _, s := range sections {
		lines = append(lines, s.fit()...)
	}
	lines = lines[:min(len(lines), height)]
	for i, l := range lines {
		lines[i] = clip(l, width)
	}
	return strings.Join(lines, "\n")
}

// topSection is an optional header line followed by rows; shown is how
// many lines the frame gives it.
type topSection struct {
	header string
	rows   []string
	noun   string // what a row is, for "… 3 more workers"
	shown  int
}

func (s *topSection) total() int {
	if len(s.rows) == 0 {
		return 0
	}
	if s.header != "" {
		return len(s.rows) + 1
	}
	return len(s.rows)
}

// least is the lines the section needs to show its header, its first row
// and, when rows are left out, how many.
func (s *topSection) least() int {
	n := min(s.total(), 2)
	if s.total() > 2 {
		n++
	}
	return min(n, s.total())
}

// fit returns the section in shown lines: when rows are left out, the
// last line says how many.
func (s *topSection) fit() []string {
	var lines []string
	room := s.shown
	if room <= 0 || len(s.rows) == 0 {
		return nil
	}
	if s.header != "" {
		lines = append(lines, s.header)
		room--
	}
	if room >= len(s.rows) {
		return append(lines, s.rows...)
	}
	if room <= 0 {
		// Only the header fits: it says how many rows there are.
		return []string{fmt.Sprintf("%s  (%d %s)", s.header, len(s.rows), s.noun)}
	}
	lines = append(lines, s.rows[:room-1]...)
	return append(lines, fmt.Sprintf("  … %d more %s", len(s.rows)-(room-1), s.noun))
}

func titleLine(st monitor.State) string {
	s := "slither top"
	if !st.Time.IsZero() {
		s += " - " + st.Time.Local().Format(time.TimeOnly)
	}
	if !st.Started.IsZero() && !st.Time.IsZero() {
		s += "  up " + short(st.Time.Sub(st.Started))
	}
	if host := clean(st.Host); host != "" {
		s += "  " + host
	}
	if st.Pid != 0 {
		s += fmt.Sprintf(" pid %d", st.Pid)
	}
	if v := clean(st.Version); v != "" {
		s += "  " + v
	}
	return s
}

func totalsLine(t monitor.Totals) string {
	return fmt.Sprintf("batches %s ok %s fail %s retry %s in flight  items %s ok %s fail %s queued",
		count(t.BatchesOK), count(t.BatchesFailed), count(t.Retries), count(t.InFlight),
		count(t.ItemsOK), count(t.ItemsFailed), count(t.QueuedItems))
}

func gilLine(g monitor.GILState) string {
	if !g.Embedded {
		return "GIL  no embedded interpreter (process pools only)"
	}
	if !g.FreeThreadedBuild {
		return "GIL  on (not a free-threaded build)"
	}
	if !g.Enabled {
		s := "GIL  off (free-threaded)"
		if n := len(g.Changes); n > 0 {
			s += fmt.Sprintf(", %d change(s) seen", n)
		}
		return s
	}
	s := "GIL  ON: re-enabled"
	// The newest change that turned it on says who did it.
	for i := len(g.Changes) - 1; i >= 0; i-- {
		c := g.Changes[i]
		if !c.Enabled {
			continue
		}
		if m := clean(c.Module); m != "" {
			s = "GIL  ON: importing " + m + " re-enabled it"
		}
		if !c.At.IsZero() {
			s += " at " + c.At.Local().Format(time.TimeOnly)
		}
		if d := clean(c.During); d != "" {
			s += " (during " + d + ")"
		}
		break
	}
	return s
}

func poolSection(pools []monitor.PoolState) *topSection {
	s := &topSection{noun: "pools"}
	if len(pools) == 0 {
		return s
	}
	s.header = fmt.Sprintf("%-17s %-7s %8s %5s %4s %7s %7s %6s %7s",
		"POOL", "KIND", "BUSY/CAP", "WAIT", "SAT", "CALLS", "ITEMS", "ERRORS", "RESTART")
	for _, p := range pools {
		sat := "-"
		if p.Capacity > 0 {
			sat = fmt.Sprintf("%d%%", int(min(max(p.Saturation, 0), 9.99)*100+0.5))
		}
		s.rows = append(s.rows, fmt.Sprintf("%s %s %8s %5s %4s %7s %7s %6s %7s",
			cell(p.Name, 17), cell(p.Kind, 7), fmt.Sprintf("%d/%d", p.Busy, p.Capacity), count(int64(p.Waiting)), sat,
			ucount(p.Calls), ucount(p.Items), ucount(p.Errors), ucount(p.Restarts)))
	}
	return s
}

// workerSection lists every pool's workers, the ones doing something
// first (as top sorts the busiest first), each pool's in id order.
func workerSection(st monitor.State) *topSection {
	type row struct {
		pool, kind string
		w          monitor.WorkerState
	}
	var rows []row
	for _, p := range st.Pools {
		for _, w := range p.Workers {
			rows = append(rows, row{p.Name, p.Kind, w})
		}
	}
	s := &topSection{noun: "workers"}
	if len(rows) == 0 {
		return s
	}
	rank := func(state string) int {
		switch state {
		case "busy":
			return 0
		case "idle", "stopped":
			return 2
		}
		return 1 // starting, recycling, or a state this build does not know
	}
	slices.SortStableFunc(rows, func(a, b row) int { return cmp.Compare(rank(a.w.State), rank(b.w.State)) })
	s.header = fmt.Sprintf("%-18s %-9s %7s %-22s %6s %6s %5s",
		"WORKER", "STATE", "PID/TID", "CURRENT", "FOR", "CALLS", "RSS")
	for _, r := range rows {
		id := r.w.Pid
		if r.kind == "thread" {
			id = r.w.Thread // its pid is the engine's own
		}
		ids := "-"
		if id != 0 {
			ids = fmt.Sprint(id)
		}
		cur, running := "-", ""
		if c := clean(r.w.Current); c != "" {
			cur, running = c, short(time.Duration(r.w.RunningS*float64(time.Second)))
		}
		rss := "-"
		if r.w.RSS > 0 {
			rss = bytesShort(r.w.RSS)
		}
		s.rows = append(s.rows, fmt.Sprintf("%s %s %7s %s %6s %6s %5s",
			cell(fmt.Sprintf("%s#%d", clean(r.pool), r.w.ID), 18), cell(r.w.State, 9), ids, cell(cur, 22),
			running, ucount(r.w.Calls), rss))
	}
	return s
}

func dispatchSection(ds []monitor.DispatchState) *topSection {
	s := &topSection{noun: "dispatches"}
	if len(ds) == 0 {
		return s
	}
	s.header = fmt.Sprintf("%-18s %-15s %-14s %7s %5s %5s %4s %5s",
		"DISPATCH", "POOL", "FUNCTION", "FLY/MAX", "QUEUE", "OK", "FAIL", "RETRY")
	for _, d := range ds {
		s.rows = append(s.rows, fmt.Sprintf("%s %s %s %7s %5s %5s %4s %5s",
			cell(clipMiddle(clean(d.Name), 18), 18), cell(d.Pool, 15), cell(d.Function, 14), fmt.Sprintf("%d/%d", d.InFlight, d.MaxInFlight),
			count(d.QueuedItems), count(d.BatchesOK), count(d.Failed), count(d.Retries)))
	}
	return s
}

// routeSection is one line of counts by route and reason class, then the
// latest decisions with their full reasons.
func routeSection(st monitor.State) *topSection {
	s := &topSection{noun: "route decisions"}
	if len(st.Routes) == 0 && len(st.RecentRoutes) == 0 {
		return s
	}
	counts := "ROUTES"
	for _, r := range st.Routes {
		counts += fmt.Sprintf("  %s/%s %s", clean(r.Route), clean(r.Class), count(r.Count))
	}
	if len(st.RecentRoutes) == 0 {
		s.rows = []string{counts}
		return s
	}
	s.header = counts
	for _, r := range st.RecentRoutes {
		l := fmt.Sprintf("  %s -> %s (%s)", clean(r.Function), clean(r.Route), clean(r.Class))
		if r.Count > 1 {
			l += fmt.Sprintf(" x%s", count(r.Count))
		}
		if reason := clean(r.Reason); reason != "" {
			l += ": " + reason
		}
		if w := clean(r.Warning); w != "" {
			l += " [" + w + "]"
		}
		s.rows = append(s.rows, l)
	}
	return s
}

func pipeSection(ps []monitor.PipeState) *topSection {
	s := &topSection{noun: "pipes"}
	for _, p := range ps {
		l := fmt.Sprintf("PIPE %s runs %s (%s running, %s failed)", clean(p.Name), count(p.Runs), count(p.Running), count(p.Failed))
		for i, st := range p.Stages {
			sep := ""
			if i > 0 {
				sep = " |"
			}
			l += fmt.Sprintf("%s %s %s>%s", sep, clean(st.Name), count(st.In), count(st.Out))
		}
		s.rows = append(s.rows, l)
	}
	return s
}

func errorSection(es []monitor.ErrorState) *topSection {
	s := &topSection{noun: "errors"}
	if len(es) == 0 {
		return s
	}
	s.header = "LAST ERRORS (newest first)"
	for _, e := range es {
		l := "  "
		if !e.At.IsZero() {
			l += e.At.Local().Format(time.TimeOnly) + " "
		}
		msg := e.Message
		if t := clean(e.Type); t != "" {
			l += t + ": "
			// With Error set, Message is Python's own message. Without,
			// the message may carry the Go error chain before Python's
			// "Type: message"; the type is shown already.
			if i := strings.Index(msg, e.Type+": "); i >= 0 && e.Error == "" {
				msg = msg[i+len(e.Type)+2:]
			}
		}
		l += firstLine(msg)
		if e.Count > 1 {
			l += fmt.Sprintf(" x%s", count(e.Count))
		}
		// Where it happened comes last: the message matters more when the
		// line is cut.
		var where []string
		for _, w := range []string{e.Source, e.Function, e.Pool} {
			if w = clean(w); w != "" && !slices.Contains(where, w) {
				where = append(where, w)
			}
		}
		if len(where) > 0 {
			l += " [" + strings.Join(where, " ") + "]"
		}
		s.rows = append(s.rows, l)
	}
	return s
}
