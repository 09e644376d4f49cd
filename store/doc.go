// Package store holds shared tables with lock-free reads, serialized writes and atomic reload, readable from Python through views.
//
// Not built yet: issue #6 builds it. The package exists so that the
// module's layout (see the README) is in place from the start.
package store
