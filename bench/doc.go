// Package bench runs the thread-versus-process benchmark matrix behind slither bench.
//
// Not built yet: issue #8 builds it. The package exists so that the
// module's layout (see the README) is in place from the start.
package bench
