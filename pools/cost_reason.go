package pools

// The words of the cost model's decisions (see cost.go): costs, ratios
// and batch counts as the reasons show them.

import (
	"strconv"
	"strings"
)

func poolName(r Route) string { return r.String() }

func verb(a, b estimate) string {
	if a.live && b.live {
		return "ran it"
	}
	return "is"
}

// compare is "(1.9 ms vs 4.0 ms per item, 8 vs 12 batches)", naming a seed
// as "slither bench".
func compare(fast, slow estimate) string {
	src := func(e estimate) string {
		if e.live {
			return plural(e.n, "batch")
		}
		return "slither bench"
	}
	counts := src(fast) + " vs " + src(slow)
	switch {
	case fast.live && slow.live:
		counts = strconv.Itoa(fast.n) + " vs " + plural(slow.n, "batch")
	case !fast.live && !slow.live:
		counts = "per slither bench"
	}
	return "(" + ns(fast.ns) + " vs " + ns(slow.ns) + " per item, " + counts + ")"
}

func describe(e estimate) string {
	if e.live {
		return ns(e.ns) + " per item over " + plural(e.n, "batch")
	}
	return ns(e.ns) + " per item per slither bench"
}

// ratio is slow/fast to one decimal, e.g. "2.1x".
func ratio(slow, fast float64) string {
	return strings.TrimSuffix(strconv.FormatFloat(slow/fast, 'f', 1, 64), ".0") + "x"
}

// ns formats a cost in nanoseconds to two significant digits: "450 ns",
// "1.9 us", "12 ms", "3.4 s".
func ns(v float64) string {
	units := []struct {
		div  float64
		name string
	}{{1e9, "s"}, {1e6, "ms"}, {1e3, "us"}}
	for _, u := range units {
		if v >= u.div {
			return sig2(v/u.div) + " " + u.name
		}
	}
	return sig2(v) + " ns"
}

func sig2(v float64) string {
	if v >= 9.95 { // two digits either way
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func plural(n int, what string) string {
	s := strconv.Itoa(n) + " " + what
	if n != 1 {
		if strings.HasSuffix(what, "ch") {
			return s + "es"
		}
		return s + "s"
	}
	return s
}
