package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/slither-go/slither/python"
)

// scriptExecutor runs cells on Python's own executors (_bench_runner).
func scriptExecutor(kind string, o Options) runner {
	return func(ctx context.Context, w workload) Cell {
		fn := w.function
		if w.kind == rmw {
			fn = "incr_dict" // the naive way: a module dict with no lock
		}
		var batches [][]any
		for i := 0; i < len(w.items); i += w.batch {
			batches = append(batches, w.items[i:min(i+w.batch, len(w.items))])
		}
		payload := map[string]any{"function": fn, "batches": batches, "workers": o.Workers, "return_results": w.want != nil}
		if w.payload > 0 { // bytes do not go through JSON: the script makes its own
			small := make([][]any, len(batches))
			for i, b := range batches {
				small[i] = make([]any, len(b))
			}
			payload["batches"], payload["make_bytes"] = small, w.payload
		}
		arg, err := json.Marshal(payload)
		if err != nil {
			return Cell{Note: err.Error()}
		}
		pkg, err := python.Dir()
		if err != nil {
			return Cell{Note: err.Error()}
		}
		py := o.FreeThreaded
		cmd := exec.CommandContext(ctx, py, "-m", "slither._bench_runner", kind)
		cmd.Env = append(os.Environ(), "PYTHONPATH="+pkg)
		cmd.Stdin = bytes.NewReader(arg) // the batches: too big for an argument
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			return Cell{Note: err.Error()}
		}
		sampler := startRSS(cmd.Process.Pid)
		err = cmd.Wait()
		rss := sampler.stop()
		if w.kind == crash {
			c := scriptCrash(kind, err, stdout.Bytes(), rss)
			c.Function = benchModule + "." + fn
			return c
		}
		if err != nil {
			return Cell{Note: fmt.Sprintf("%v: %s", err, lastLine(stderr.String())), PeakRSS: rss}
		}
		var out struct {
			Seconds   float64
			Latencies []float64
			Results   [][]any
			Counter   *int64
			Error     string
		}
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
			return Cell{Note: fmt.Sprintf("unreadable runner output: %v", err)}
		}
		c := Cell{Function: benchModule + "." + fn, Items: len(w.items), Seconds: out.Seconds,
			ItemsPerSec: float64(len(w.items)) / out.Seconds, PeakRSS: rss}
		lat := make([]time.Duration, len(out.Latencies))
		for i, l := range out.Latencies {
			lat[i] = time.Duration(l * 1e9)
		}
		c.P50, c.P99 = percentiles(lat)
		if out.Error != "" {
			c.Note = out.Error
			return c
		}
		switch {
		case w.kind == rmw:
			got := int64(0)
			if out.Counter != nil {
				got = *out.Counter
			}
			c.Lost = int64(len(w.items)) - got
			c.Correct = c.Lost == 0
			switch {
			case kind == "processes":
				c.Note = "each worker process counts in its own dict: nothing is shared"
			case c.Lost > 0:
				c.Note = fmt.Sprintf("unguarded dict shared by threads: %.1f%% of updates lost", 100*float64(c.Lost)/float64(len(w.items)))
			case kind == "threads":
				c.Note = "unguarded dict shared by threads: none lost this time (races depend on timing)"
			default:
				c.Note = "one thread: a plain dict is safe"
			}
		case w.payload > 0:
			c.Correct = len(out.Results) == len(batches)
			c.Note = payloadNotes[kind]
			for _, r := range out.Results {
				for _, n := range r {
					c.Correct = c.Correct && n == float64(w.payload)
					if n == float64(-1) {
						c.Note = "a result is the source object itself: nothing was copied"
					}
				}
			}
		default:
			var flat []any
			for _, r := range out.Results {
				flat = append(flat, r...)
			}
			c.Correct, c.Note = check(w, flat)
		}
		return c
	}
}

// payloadNotes say how each Python executor moves a payload row's bytes:
// like the pools, every call gets bytes of its own and returns new ones.
var payloadNotes = map[string]string{
	"threads": "a copy each way in the worker thread, as the embedded pool's boundary copies: " +
		"the function gets a fresh bytes and its result is copied into a new one",
	"processes": "pickled to the worker process and back: the executor copies each way",
	"serial":    "a copy each way around the call, as for ThreadPoolExecutor",
}

func scriptCrash(kind string, err error, stdout []byte, rss uint64) Cell {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return Cell{Note: fmt.Sprintf("the Python process died (%s): every pending call lost", ws.Signal()), PeakRSS: rss}
		}
	}
	var out struct{ Error, After string }
	_ = json.Unmarshal(stdout, &out)
	if out.Error != "" {
		return Cell{Note: out.Error + "; " + out.After, Correct: strings.Contains(out.After, "still works"), PeakRSS: rss}
	}
	return Cell{Note: fmt.Sprintf("ended with %v", err), PeakRSS: rss}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
