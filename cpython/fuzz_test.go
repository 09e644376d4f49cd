//go:build cgo

package cpython_test

import (
	"testing"

	"github.com/slither-go/slither/internal/convert/convtest"
)

// FuzzCpythonRoundTrip sends generated Go values through the real
// interpreter (cpytest.echo) and back: each must come back as the value
// the pools document for it.
func FuzzCpythonRoundTrip(f *testing.F) {
	for _, seed := range convtest.Seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, want := convtest.Build(data)
		th := thread(t) // on this input's goroutine
		out, err := th.CallBatch("cpytest", "echo", []any{in})
		if err != nil {
			t.Fatalf("echo of %#v: %v", in, err)
		}
		if len(out) != 1 || !convtest.Equal(want, out[0]) {
			t.Fatalf("echo of %#v:\n got %#v\nwant %#v", in, out, want)
		}
	})
}
