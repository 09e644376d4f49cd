// Package leaktest holds the goleak options every package of this module
// uses: the embedded interpreter's main-thread goroutine lives for the whole
// process by design and is not a leak.
package leaktest

import "go.uber.org/goleak"

// Options returns the goleak options for this module's tests.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/slither-go/slither/cpython.(*Runtime).serve"),
	}
}
