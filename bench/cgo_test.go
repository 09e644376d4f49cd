//go:build cgo

package bench_test

// cgoBuild says whether this test binary has the embedded thread pool.
const cgoBuild = true
