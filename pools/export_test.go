package pools

import "time"

// SetClock makes r's cost model read the time from now (tests of its
// time-based re-probing).
func SetClock(r *Router, now func() time.Time) { r.now = now }
