//go:build cgo

package cpython_test

import (
	"fmt"
	"testing"
)

// BenchmarkCallBatch is the binding's own cost: one call of a Python
// function that returns its batch, on a thread that keeps its thread state,
// with no hand-off between goroutines.
func BenchmarkCallBatch(b *testing.B) {
	for _, size := range []int{0, 1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			th, err := rt(b).NewThread()
			if err != nil {
				b.Fatal(err)
			}
			defer th.Close()
			items := make([]any, size)
			for i := range items {
				items[i] = int64(i)
			}
			if _, err := th.CallBatch("cpytest", "echo", items); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := th.CallBatch("cpytest", "echo", items); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
