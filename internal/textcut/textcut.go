// Package textcut cuts strings from untrusted or unbounded sources (error
// texts, tracebacks, reasons sent over the wire) to a byte budget without
// leaving half a UTF-8 character at the cut.
package textcut

import "strings"

// Bytes returns s cut to at most n bytes, never inside a UTF-8 sequence
// (invalid sequences are dropped too).
func Bytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:max(n, 0)], "")
}
