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
	for _, seed := range [][]byte{
		nil,
		{20, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 11, 2, 'h', 'i', 28, 15, 3, 1, 2, 3, 1},
		{23, 4, 0, 13, 1, 9, 1, 10, 4, 2, 6, 255, 255, 255, 255, 255, 255, 255, 255, 3, 16, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 0},
		{26, 3, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 27, 2, 4, 1, 'k', 1, 'v', 1, 1, 'w'},
		{29, 14, 1, 2, 3, 12, 3, 0xe6, 0x97, 0xa5, 17, 18, 19, 5, 1, 2, 3, 4, 7, 1, 2},
	} {
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
