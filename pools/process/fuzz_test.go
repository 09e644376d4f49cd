package process_test

// Fuzz targets that drive a real worker process (python/slither/worker.py)
// through its pipes: the Python half of the wire protocol.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slither-go/slither/pools/process/wire"
)

const fuzzMod = "fuzztarget"

func callFrame(id uint64, fn string, items ...any) []byte {
	var e wire.Encoder
	if err := e.List(items); err != nil {
		panic(err)
	}
	var buf bytes.Buffer
	if _, err := wire.WriteFrame(&buf, nil, wire.AppendCall(nil, id, fuzzMod, fn, "", e.Buf), e.Atts); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// drain reads the worker's output until it ends: every frame must be
// well formed and every message one the Go side understands.
func drain(rw *rawWorker) (results int, err error) {
	for {
		hdr, atts, err := wire.ReadFrame(rw.r)
		if errors.Is(err, io.EOF) {
			return results, nil
		}
		if err != nil {
			return results, fmt.Errorf("the worker wrote a bad frame: %w", err)
		}
		m, err := wire.ParseInbound(hdr)
		if err != nil {
			return results, fmt.Errorf("the worker wrote a bad message: %w", err)
		}
		if m.T != wire.TResult {
			return results, fmt.Errorf("the worker sent a %q message: %s", m.T, hdr)
		}
		if m.E == nil {
			if _, err := wire.Decode(m.V, atts); err != nil {
				return results, fmt.Errorf("the worker's result does not decode: %w", err)
			}
		}
		results++
	}
}

// FuzzWorkerFrames writes arbitrary bytes, then a well-formed call, to a
// real worker's call pipe and closes it. The worker must read it all and
// exit 0, or stop at malformed input and exit 65 saying so on stderr:
// never hang (the context bounds each run), crash, print a traceback, or
// write a frame the Go side cannot read.
func FuzzWorkerFrames(f *testing.F) {
	f.Add(callFrame(1, "echo", "a", []byte{0, 1}, int64(3)))
	f.Add(callFrame(2, "fail", 1))
	f.Add(callFrame(3, "unmappable", 1))
	f.Add(append(callFrame(4, "echo", math.NaN(), map[string]any{"$b": "x"}), headerFrame(`{"t":"close_session","s":"x"}`)...))
	f.Add(headerFrame(`{"t":"call","id":5,"m":"fuzztarget","f":"echo","v":[{"$b":0}]}`))
	f.Add(headerFrame(`{"t":"call","id":6,"m":"fuzztarget","f":"echo","v":[{"$d":[["$f","nan"]]}]}`))
	f.Add(headerFrame(`{"t":"reply","h":1,"v":null}`))
	f.Add(headerFrame(`{"t":"cancel","id":1}`))
	f.Add(headerFrame(`{"t":"shutdown"}`))
	f.Add(headerFrame(`{"t":"call","id":7,"m":"fuzztarget","f":"echo","v":[1` + strings.Repeat("0", 5000) + `]}`))
	f.Add(rawFrame(100, 92, nil, []byte(`{"t":`)))
	f.Add(rawFrame(0, 2, []uint32{3}, []byte(`{}abc`)))
	f.Add(rawFrame(0xFFFFFFFF, 0, nil, nil))
	f.Add([]byte{})
	f.Add(headerFrame(`{"t":"call","id":8,"m":"fuzztarget","f":"echo","tr":"4bf92f3577b34da6a3ce929d0e0e4736","sp":"00f067aa0ba902b7","v":[1]}`))
	f.Add(headerFrame(`{"t":"call","id":9,"m":"fuzztarget","f":"echo","tr":{"$b":0},"sp":[1e999],"v":[]}`))
	sentinel := callFrame(1<<52, "echo", "sentinel")
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rw := startRawWorker(t, ctx)
		drained := make(chan error, 1)
		go func() {
			_, err := drain(rw)
			drained <- err
		}()
		// Writes fail once the worker has stopped reading: that is fine.
		if rw.send(data) == nil {
			_ = rw.send(sentinel)
		}
		_ = rw.w.Close()
		err := <-drained
		code, stderr := rw.wait()
		if err != nil {
			t.Fatalf("%v\nexit %d, stderr:\n%s", err, code, stderr)
		}
		switch {
		case code == 0:
		case code == 65 && strings.Contains(stderr, "slither.worker: malformed input from Go on the call pipe: "):
		default:
			t.Fatalf("the worker exited %d; stderr:\n%s", code, stderr)
		}
		if strings.Contains(stderr, "Traceback") || strings.Contains(stderr, "internal error") {
			t.Fatalf("the worker failed in its own code; stderr:\n%s", stderr)
		}
	})
}

// FuzzWorkerValues sends fuzzed values to a real worker's echo and checks
// that what comes back is what went: Go's encoding read by Python, and
// Python's read by Go.
func FuzzWorkerValues(f *testing.F) {
	f.Add("héllo", []byte{0, 255}, int64(-3), 1.5, uint8(3), uint16(0), "k")
	f.Add("", []byte(nil), int64(math.MaxInt64), math.Inf(1), uint8(0), uint16(5000), "$b")
	f.Add("\u2028\x00\"\\", []byte{}, int64(math.MinInt64), math.NaN(), uint8(200), uint16(30), "$d")
	f.Add("{\"$f\": \"nan\"}", []byte("{}"), int64(0), math.Copysign(0, -1), uint8(1), uint16(19), "s")
	rw := startRawWorker(f, context.Background())
	var id uint64
	f.Fuzz(func(t *testing.T, s string, b []byte, i int64, fl float64, depth uint8, digits uint16, key string) {
		rw.t = t
		deadline := time.Now().Add(60 * time.Second)
		_ = rw.rf.SetDeadline(deadline)
		_ = rw.w.SetDeadline(deadline)
		var nested any = s
		for range depth {
			nested = []any{nested, int64(depth)}
		}
		var bigInt any = int64(digits)
		if digits > 0 {
			n, _ := new(big.Int).SetString("9"+strings.Repeat("7", int(digits)), 10)
			bigInt = n.Neg(n)
		}
		items := []any{s, b, i, fl, nested, bigInt, map[string]any{key: b, "s": s}}
		var e wire.Encoder
		if err := e.List(items); err != nil {
			if !utf8.ValidString(s) || !utf8.ValidString(key) {
				return // the Go side refuses what is not UTF-8
			}
			t.Fatal(err)
		}
		want, err := wire.Decode(e.Buf, e.Atts)
		if err != nil {
			t.Fatal(err)
		}
		id++
		if _, err := wire.WriteFrame(rw.w, nil, wire.AppendCall(nil, id, fuzzMod, "echo", "", e.Buf), e.Atts); err != nil {
			t.Fatal(err)
		}
		got, pyErr := rw.result(id)
		if pyErr != nil {
			t.Fatalf("%s: %s", pyErr.Type, pyErr.Message)
		}
		if !sameValue(want, got) {
			t.Fatalf("sent %#v\ngot back %#v", want, got)
		}
	})
}

// sameValue compares decoded values: NaN equals NaN, -0 differs from 0,
// big ints by value, nil and empty bytes alike.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case float64:
		bf, ok := b.(float64)
		return ok && (math.IsNaN(a) && math.IsNaN(bf) || a == bf && math.Signbit(a) == math.Signbit(bf))
	case *big.Int:
		bb, ok := b.(*big.Int)
		return ok && a.Cmp(bb) == 0
	case []byte:
		bb, ok := b.([]byte)
		return ok && bytes.Equal(a, bb)
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], bl[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, v := range a {
			if w, ok := bm[k]; !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
