// Package pipe builds and runs pipelines of Go stages, Python stages and routers.
//
// Not built yet: issue #7 builds it. The package exists so that the
// module's layout (see the README) is in place from the start.
package pipe
