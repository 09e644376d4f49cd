// Package leaktest holds the goleak options every package of this module
// uses: goroutines that live for the whole process by design are not leaks.
package leaktest

import "go.uber.org/goleak"

// Options returns the goleak options for this module's tests.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/slither-go/slither/cpython.(*Runtime).serve"),
		// The process pool's spawner thread lives for the whole process,
		// so that parent-death signals fire only when the process dies.
		goleak.IgnoreAnyFunction("github.com/slither-go/slither/pools/process.spawnLoop"),
	}
}
