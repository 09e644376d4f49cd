//go:build cgo

package cpython_test

import (
	"bytes"
	"testing"

	"github.com/slither-go/slither/internal/convert/convtest"
)

// FuzzCpythonRoundTrip sends generated Go values through the real
// interpreter (cpytest.echo) and back, through a Thread and a Caller: each
// must come back as the value the pools document for it. A large bytes
// value made from the input rides along, so that the by-reference path
// (32 KiB and more, each way) is fuzzed too.
func FuzzCpythonRoundTrip(f *testing.F) {
	for _, seed := range convtest.Seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, want := convtest.Build(data)
		large := bytes.Repeat(append([]byte{0}, data...), 40<<10/(len(data)+1)+1)
		th := thread(t) // on this input's goroutine
		c := caller(t)
		for name, call := range map[string]func(string, string, []any) ([]any, error){"Thread": th.CallBatch, "Caller": c.CallBatch} {
			out, err := call("cpytest", "echo", []any{in, large})
			if err != nil {
				t.Fatalf("%s: echo of %#v: %v", name, in, err)
			}
			if len(out) != 2 || !convtest.Equal(want, out[0]) || !bytes.Equal(large, out[1].([]byte)) {
				t.Fatalf("%s: echo of %#v:\n got %#v\nwant %#v", name, in, out[0], want)
			}
		}
	})
}
