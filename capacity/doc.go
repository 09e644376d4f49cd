// Package capacity detects the runtimes and cores available and turns them into pool sizes, routes and batch sizes.
//
// Not built yet: issue #5 builds it. The package exists so that the
// module's layout (see the README) is in place from the start.
package capacity
