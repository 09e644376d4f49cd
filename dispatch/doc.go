// Package dispatch fans items out to a pool in batches, with at most MaxInFlight batches in flight, ordering and error policies.
//
// Not built yet: issue #4 builds it. The package exists so that the
// module's layout (see the README) is in place from the start.
package dispatch
