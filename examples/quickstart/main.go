// Command quickstart is the smallest complete Slither program: it starts an
// engine whose Python path holds this directory, runs mymod.score (a
// @slither.thread_safe function in mymod.py, beside this file) over a slice
// of sentences through Auto (which puts it on the embedded free-threaded
// thread pool) and through a process pool, and checks every result against
// the same function written in Go.
//
// Run it from this directory: go run . (see README.md for the set-up).
// `slither init DIR` writes a copy of this folder as a module of your own.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
)

func main() {
	dir := flag.String("dir", ".", "the directory holding mymod.py")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *dir); err != nil {
		log.Fatal(err)
	}
}

// run starts an engine with pyDir on its Python path and runs mymod.score
// on both routes, printing where each ran.
func run(ctx context.Context, w io.Writer, pyDir string) error {
	eng, err := start(ctx, pyDir)
	if err != nil {
		return err
	}
	defer eng.Close(ctx)
	for _, route := range []pools.Route{pools.Auto, pools.Process} {
		ran, err := score(ctx, eng, route, sentences)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: %d sentences scored, batches ran on %s, every result matches Go\n",
			route, len(sentences), describe(ran))
	}
	return nil
}

// start starts the engine. Paths puts pyDir on the Python path of every
// pool, so `import mymod` works in the embedded interpreter and in process
// workers alike; Required makes a missing embedded pool (a build without
// cgo, no free-threaded libpython) an error instead of a quiet fallback to
// processes.
func start(ctx context.Context, pyDir string) (*engine.Engine, error) {
	abs, err := filepath.Abs(pyDir)
	if err != nil {
		return nil, fmt.Errorf("quickstart: the Python directory %q: %w", pyDir, err)
	}
	return engine.Start(ctx, engine.Config{
		Paths:  []string{abs},
		Thread: engine.ThreadConfig{Required: true},
	})
}

// Score is what mymod.score returns for one sentence.
type Score struct {
	Words   int
	Longest string
}

// reference is mymod.score in Go: the first of the longest words (counted
// in characters, as Python does) and the number of words.
func reference(sentence string) Score {
	words := strings.Fields(sentence)
	s := Score{Words: len(words)}
	for _, w := range words {
		if utf8.RuneCountInString(w) > utf8.RuneCountInString(s.Longest) {
			s.Longest = w
		}
	}
	return s
}

// score runs mymod.score over items on route, checks every result against
// reference and returns how many batches ran where ("thread", "process").
func score(ctx context.Context, eng *engine.Engine, route pools.Route, items []string) (map[string]int, error) {
	p, err := pipe.New("score-"+route.String()).
		Python("score", pipe.Python{Module: "mymod", Function: "score", Route: route}).
		Build()
	if err != nil {
		return nil, err
	}
	res, err := eng.RunPipe(ctx, p, dispatch.Slice(items), engine.PipeOptions{})
	if err != nil {
		return nil, fmt.Errorf("quickstart: mymod.score on route %s: %w", route, err)
	}
	out := res.Outputs[pipe.DefaultOutput]
	if len(out) != len(items) {
		return nil, fmt.Errorf("quickstart: route %s returned %d results for %d sentences", route, len(out), len(items))
	}
	for _, it := range out {
		i, err := strconv.Atoi(it.ID) // dispatch.Slice numbers items by index
		if err != nil {
			return nil, fmt.Errorf("quickstart: item id %q: %w", it.ID, err)
		}
		got, err := decode(it.Payload)
		if err != nil {
			return nil, fmt.Errorf("quickstart: route %s, sentence %d: %w", route, i, err)
		}
		if want := reference(items[i]); got != want {
			return nil, fmt.Errorf("quickstart: route %s, sentence %d (%q): Python returned %+v, Go %+v", route, i, items[i], got, want)
		}
	}
	return res.Report.Stages[0].Ran, nil
}

// decode reads one of mymod.score's dicts: Python ints arrive as int64.
func decode(v any) (Score, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Score{}, fmt.Errorf("want a dict, got %T", v)
	}
	words, ok := m["words"].(int64)
	if !ok {
		return Score{}, fmt.Errorf("want an int for words, got %T", m["words"])
	}
	longest, ok := m["longest"].(string)
	if !ok {
		return Score{}, fmt.Errorf("want a str for longest, got %T", m["longest"])
	}
	return Score{Words: int(words), Longest: longest}, nil
}

// describe prints a Ran map in a stable order: "thread (4 batches)".
func describe(ran map[string]int) string {
	var parts []string
	for _, where := range slices.Sorted(maps.Keys(ran)) {
		parts = append(parts, fmt.Sprintf("%s (%d batches)", where, ran[where]))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// sentences is the input: a few hundred short lines.
var sentences = func() []string {
	words := []string{"go", "owns", "concurrency", "python", "does", "the", "compute", "free-threaded", "pools", "über"}
	s := make([]string, 300)
	for i := range s {
		var b strings.Builder
		for j := range i%7 + 1 {
			if j > 0 {
				b.WriteString(strings.Repeat(" ", j%2+1))
			}
			b.WriteString(words[(i*3+j*5)%len(words)])
		}
		s[i] = b.String()
	}
	return s
}()
