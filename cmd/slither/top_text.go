package main

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/width"
)

// Text helpers for `slither top`: cleaning what comes from the network,
// measuring and cutting it in terminal cells, and compact numbers.

// firstLine is the first non-blank line of a message, cleaned.
func firstLine(msg string) string {
	for l := range strings.SplitSeq(msg, "\n") {
		if l = strings.TrimSpace(clean(l)); l != "" {
			return l
		}
	}
	return ""
}

// clean makes text from the state safe to print on a terminal: invalid
// UTF-8 is replaced, control characters (escape sequences, newlines, tabs)
// become spaces and formatting characters (bidi overrides, zero-width
// joiners) are dropped, so a message cannot move the cursor, recolour the
// terminal or reorder what is drawn around it.
func clean(s string) string {
	ok := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case unicode.IsControl(r):
			b.WriteByte(' ')
		case unicode.Is(unicode.Cf, r):
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cells is how many terminal cells r takes: two for East Asian wide and
// fullwidth characters, one for everything else (combining marks
// included, which keeps cells >= runes).
func cells(r rune) int {
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}

// clip cuts s to at most w cells, marking a cut with "…".
func clip(s string, w int) string {
	n := 0
	for i, r := range s {
		n += cells(r)
		if n > w {
			// Cut back far enough that "…" (one cell) fits.
			cut, used := 0, 0
			for j, r2 := range s[:i] {
				if used+cells(r2) > w-1 {
					break
				}
				used += cells(r2)
				cut = j + utf8.RuneLen(r2)
			}
			return s[:cut] + "…"
		}
	}
	return s
}

// clipMiddle cuts s to at most w cells by taking out its middle, which
// keeps both ends of names like "pipe/stage" readable.
func clipMiddle(s string, w int) string {
	if clip(s, w) == s || w < 3 {
		return clip(s, w)
	}
	rs := []rune(s)
	budget := w - 1 // "…" takes one
	hi, tail := len(rs), 0
	for hi > 0 && tail+cells(rs[hi-1]) <= budget/2 {
		hi--
		tail += cells(rs[hi])
	}
	lo, head := 0, 0
	for lo < hi && head+cells(rs[lo]) <= budget-tail {
		head += cells(rs[lo])
		lo++
	}
	return string(rs[:lo]) + "…" + string(rs[hi:])
}

// cell is the text cleaned, cut to w cells and padded to exactly w.
func cell(s string, w int) string {
	s = clip(clean(s), w)
	n := 0
	for _, r := range s {
		n += cells(r)
	}
	return s + strings.Repeat(" ", max(w-n, 0))
}

// count writes large counts compactly (12345, 123k, 12.3M) so the columns
// stay aligned.
func count(n int64) string {
	neg := ""
	if n < 0 {
		neg, n = "-", -n
	}
	switch {
	case n < 100_000:
		return fmt.Sprintf("%s%d", neg, n)
	case n < 10_000_000:
		return fmt.Sprintf("%s%dk", neg, n/1000)
	case n < 10_000_000_000:
		return fmt.Sprintf("%s%.1fM", neg, float64(n)/1e6)
	default:
		return fmt.Sprintf("%s%.1fG", neg, float64(n)/1e9)
	}
}

func ucount(n uint64) string { return count(int64(min(n, 1<<62))) }

func bytesShort(b uint64) string {
	switch {
	case b < 1<<20:
		return fmt.Sprintf("%dK", b>>10)
	case b < 10<<30:
		return fmt.Sprintf("%dM", b>>20)
	default:
		return fmt.Sprintf("%dG", b>>30)
	}
}

// short writes a duration in at most six characters: 850ms, 12.3s, 5m03s,
// 2h05m, 3d04h.
func short(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 100*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
