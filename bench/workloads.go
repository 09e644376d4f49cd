package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
)

type kind int

const (
	plain   kind = iota
	rmw          // read-modify-write of shared state: count lost updates
	session      // a stateful model kept per session
	crash        // the failure domain
)

// workload is one row of the matrix.
type workload struct {
	name, function string
	desc           string
	items          []any
	batch          int
	kind           kind
	// payload is the bytes each item carries each way (a payload row: it
	// gets a copy floor), or 0.
	payload int
	// solo rows also time calls from one caller alone (Cell.P50Solo).
	solo bool
	// want is the expected result of item i (nil: results not checked).
	want func(i int, item any) any
}

func ints(n int, f func(i int) any) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// payload1MiB is what each item of the payload row carries each way.
var payload1MiB = bytes.Repeat([]byte{'x'}, 1<<20)

func workloads(quick bool) []workload {
	size := func(full, small int) int {
		if quick {
			return small
		}
		return full
	}
	mb := payload1MiB
	const cpuN = 60_000
	cpuWant := expectedCPU(cpuN)
	return []workload{
		{name: "noop-b1", function: "noop", desc: "no-op, batch 1 (pure overhead)", batch: 1, solo: true,
			items: ints(size(20_000, 400), func(i int) any { return i }), want: func(i int, _ any) any { return int64(i) }},
		{name: "noop-b64", function: "noop", desc: "no-op, batch 64", batch: 64,
			items: ints(size(256_000, 12_800), func(i int) any { return i }), want: func(i int, _ any) any { return int64(i) }},
		{name: "cpu", function: "cpu", desc: "pure-Python loop, 60k iterations per item", batch: 1,
			items: ints(size(192, 16), func(int) any { return cpuN }), want: func(int, any) any { return cpuWant }},
		{name: "hash-1mb", function: "digest", desc: "sha256 + zlib of 1 MiB (C code, releases the GIL)", batch: 1,
			items: ints(size(192, 16), func(i int) any { return i }), want: func(i int, _ any) any { return expectedDigest(i) }},
		{name: "io-1ms", function: "sleep", desc: "time.sleep(1 ms) per item (I/O wait)", batch: 4,
			items: ints(size(1000, 80), func(i int) any { return i }), want: func(i int, _ any) any { return int64(i) }},
		{name: "shared-rmw", function: "incr", desc: "increment one shared counter (store view / Python dict)", batch: 100, kind: rmw,
			items: ints(size(50_000, 2_000), func(i int) any { return i })},
		{name: "payload-1mb", function: "echo", desc: "1 MiB of bytes each way", batch: 1, payload: len(mb),
			items: ints(size(400, 40), func(int) any { return mb }), want: func(int, any) any { return mb }},
		{name: "model", function: "model", desc: "stateful model built once per session, then used", batch: 50, kind: session,
			items: ints(size(20_000, 500), func(i int) any { return i }), want: func(i int, _ any) any { return expectedModel(i) }},
		{name: "segfault", function: "crash", desc: "one call segfaults: what survives", batch: 1, kind: crash,
			items: []any{0}},
	}
}

// The expected results, computed in Go exactly as _bench.py does.

func expectedCPU(n int) int64 {
	acc := uint64(0)
	for i := range n {
		acc = (acc*31 + uint64(i)) & 0xFFFFFFFF
	}
	return int64(acc)
}

func expectedDigest(seed int) string {
	data := bytes.Repeat(func() []byte {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}(), 4096)
	h := sha256.New()
	h.Write(data)
	h.Write([]byte(strconv.Itoa(seed)))
	return hex.EncodeToString(h.Sum(nil))[:16] + ":" + strconv.FormatUint(uint64(crc32.ChecksumIEEE(data)), 10)
}

func expectedModel(x int) float64 {
	return float64((x%100_000)*7919%1000)/1000 + float64(x)
}

// check compares results with a workload's expectations.
func check(w workload, results []any) (bool, string) {
	if w.want == nil {
		return true, ""
	}
	if len(results) != len(w.items) {
		return false, fmt.Sprintf("%d results for %d items", len(results), len(w.items))
	}
	for i, r := range results {
		want := w.want(i, w.items[i])
		if !equal(r, want) {
			return false, fmt.Sprintf("item %d: got %v, want %v", i, short(r), short(want))
		}
	}
	return true, ""
}

func equal(a, b any) bool {
	if x, ok := b.([]byte); ok {
		y, ok := a.([]byte)
		return ok && bytes.Equal(x, y)
	}
	fa, aNum := number(a)
	fb, bNum := number(b)
	if aNum && bNum { // JSON from the Python executors turns ints into floats
		return math.Abs(fa-fb) < 1e-9*math.Max(1, math.Abs(fb))
	}
	return a == b
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func short(v any) string {
	s := fmt.Sprint(v)
	if b, ok := v.([]byte); ok {
		s = fmt.Sprintf("%d bytes", len(b))
	}
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}
