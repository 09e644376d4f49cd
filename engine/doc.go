// Package engine is the one entry point a service needs: it starts and owns the pools, stores, sessions and telemetry, and offers Dispatch, Stream and pipelines on top.
//
// Not built yet: issue #7 builds it. The package exists so that the
// module's layout (see the README) is in place from the start.
package engine
