// Package telemetry carries events and metrics from every other package to attached handlers.
//
// Not built yet: issue #4 builds it. The package exists so that the
// module's layout (see the README) is in place from the start.
package telemetry
