// Package examples holds the five end-to-end examples behind slither example.
//
// Not built yet: issue #9 builds it. The package exists so that the
// module's layout (see the README) is in place from the start.
package examples
