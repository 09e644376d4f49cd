package pools

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Auto's cost model: for a function that both pools may run (it is
// thread-safe and the GIL is off), the router measures what one item costs
// on each and sends the function's Auto batches to the cheaper one.
//
// What is measured: a batch's service time (CallInfo.Service: from the
// moment a worker took it to its results, the Python call and the
// conversions included, and for the process pool its pipe round trip,
// which is the point of comparing) divided by its items, for every batch
// that ran through the router and succeeded. Not the wall time of Submit:
// that also holds the wait for a free worker, which measures load, not
// speed; a pool that takes all of a function's batches would look slower
// the busier it is, and the rare probes of the other pool, which seldom
// wait, would always look faster, so the router would swing back and forth
// (a load balancer, not a speed choice).
//
// Service time is time per slot, under whatever concurrency the batch ran
// with: batches sharing the cores, or a worker's threads sharing its GIL,
// each take longer, and that shows in their service time. Auto compares
// the cost per slot and does not multiply it by each pool's capacity: the
// engine sizes both pools to the usable cores, and CPU-bound work gains
// nothing from slots beyond the cores. Crediting capacity would overrate
// an oversubscribed pool, whose probes run alone and fast while the
// slowdown of its extra slots shows only when they all are busy. Where
// pools differ in size on purpose (an I/O-bound function on many threads
// per worker), set the route with [Router.Prefer].
//
// A probe is one batch at a time per function (costMaxProbes): a burst of
// concurrent batches sends one to the pool being measured, not half of
// them. A pool where the function failed probeFailures batches in a row
// (its module missing there, a timeout) is not probed again for
// probeInterval: failures carry no cost, so without this every second
// batch would keep failing there.
//
// An estimate is the median of a pool's last costSamples per-item costs
// (robust to the first batch, which imports the module, and to a GC
// pause), used once there are costMinSamples of them; until then a seed
// from `slither bench` (Router.CostSeeds) stands in. Exploration: while a
// pool has no estimate the function goes where the safety rule sends it
// (threads); once the threads have one, every exploreEvery-th decision
// probes the process pool until it has one too (costMinSamples batches:
// a bounded cost, so the share is large, for a quick start). Afterwards
// the slower pool is re-probed every probeEvery-th decision, or after
// probeInterval with at least probeMinGap decisions between probes, so a
// changed workload is noticed; a probe whose batch beat the faster pool's
// estimate is followed by another every confirmEvery-th decision until
// the estimates settle. The chosen pool changes only when the other is
// more than switchMargin cheaper, so near-equal pools do not alternate;
// the first choice is made the same way from the threads, where Auto
// started, so a function that runs about as fast on both stays in this
// process.
// Batches of a pinned session never probe (the session would stay there).
//
// A batch that the thread pool's estimate says takes less than
// minProbeBatch (items x the thread cost per item) is never sent to the
// process pool: that pool pays a round trip (30-100 us measured here) on
// top of the same work, so on so short a batch it can win little or
// nothing even where it runs the Python faster. So cheap functions stay on
// threads, as before Auto measured costs, also in slow (race-detector)
// builds.
const (
	costSamples    = 8
	costMinSamples = 3
	exploreEvery   = 2
	probeEvery     = 64
	probeInterval  = 30 * time.Second
	probeMinGap    = 8
	confirmEvery   = 2
	switchMargin   = 1.05
	costMaxProbes  = 1
	probeFailures  = 3
	// minProbeBatch: a few process round trips (a pipe each way and a
	// wake-up on both sides).
	minProbeBatch = 200 * time.Microsecond
)

// Executor names of `slither bench` (capacity.Measured.Costs) that seed
// the router's pools: the thread pool is "thread", the process pool
// "process-ft" when its Python is free-threaded with the GIL off, else
// "process-gil".
const (
	seedThread     = "thread"
	seedProcessFT  = "process-ft"
	seedProcessGIL = "process-gil"
)

// FunctionCost is what a [Router] knows of one function's per-item cost on
// each of its pools (see [Router.Costs]).
type FunctionCost struct {
	// Function is "module.function".
	Function string
	// Thread and Process are its cost on each pool.
	Thread, Process PoolCost
	// Faster is where Auto sends the function when both pools may run it
	// and both have an estimate (Thread or Process); Auto while not known.
	Faster Route
	// Preferred is the function's route preference ([Router.Prefer]);
	// Auto when it has none.
	Preferred Route
}

// PoolCost is one pool's cost of one function.
type PoolCost struct {
	// NsPerItem is the estimate Auto compares, in nanoseconds per item:
	// the median of the last measured batches once there are enough, else
	// the seed; 0 when there is neither.
	NsPerItem float64
	// Measured says NsPerItem is this process's measurement (false: it is
	// the seed, or there is none).
	Measured bool
	// Batches counts the batches measured (successful, with items).
	Batches int
	// Seed is `slither bench`'s cost per item (0: none).
	Seed float64
	// Last is when the latest measured batch ended (zero: none).
	Last time.Time
}

// samples is a pool's last per-item costs of one function.
type samples struct {
	ns      [costSamples]float64
	n, next int
	batches int
	last    float64 // the latest sample
	at      time.Time
}

func (s *samples) add(ns float64, at time.Time) {
	s.ns[s.next] = ns
	s.next = (s.next + 1) % costSamples
	s.n = min(s.n+1, costSamples)
	s.batches++
	s.last, s.at = ns, at
}

func (s *samples) median() float64 { return medianOf(s.ns[:s.n]) }

func medianOf(x []float64) float64 {
	v := slices.Clone(x)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// fnCost is the router's state for one function.
type fnCost struct {
	live   [2]samples   // by side: 0 thread, 1 process
	warm   [2]time.Time // by side: when the first batch ended (those started before it are not measured)
	fails  [2]int       // by side: batches failed in a row
	failAt [2]time.Time // by side: when the last failure was recorded
	probes int          // probes running
	probeT time.Time    // when the latest probe was sent (a decision never submitted frees its probe after probeInterval)
	faster Route        // Thread or Process once both had estimates; Auto before
	since  int          // Auto cost decisions since the last probe
	probed time.Time    // the last probe's decision
}

// side indexes fnCost.live by route.
func side(r Route) int {
	if r == Thread {
		return 0
	}
	return 1
}

// estimate is one pool's cost as a decision sees it.
type estimate struct {
	ns   float64
	live bool // measured here (else the seed)
	n    int  // batches behind it (at most costSamples: a reason that
	// changed with every batch would crowd the monitor's recent routes)
}

func (e estimate) known() bool { return e.ns > 0 }

// Prefer sets the route Auto takes for module.function whatever the costs:
// Process always; Thread only while the thread pool may run the function
// (free-threaded, GIL off, declared thread-safe), since a preference tunes
// speed and never overrides safety (a batch's own Route Thread does); Auto
// removes the preference. A batch that names its Route is not affected.
func (r *Router) Prefer(module, function string, route Route) {
	r.costMu.Lock()
	defer r.costMu.Unlock()
	k := module + "." + function
	if route == Auto {
		delete(r.prefer, k)
		return
	}
	if r.prefer == nil {
		r.prefer = map[string]Route{}
	}
	r.prefer[k] = route
}

func (r *Router) preferred(name string) Route {
	r.costMu.Lock()
	defer r.costMu.Unlock()
	return r.prefer[name]
}

// Costs is a snapshot of the cost model, one entry per function that has
// a measurement, a seed or a preference, sorted by name: for `slither
// doctor` and the monitor.
func (r *Router) Costs() []FunctionCost {
	r.costMu.Lock()
	defer r.costMu.Unlock()
	names := map[string]bool{}
	for k := range r.costs {
		names[k] = true
	}
	for k := range r.prefer {
		names[k] = true
	}
	for k := range r.CostSeeds {
		names[k] = true
	}
	out := make([]FunctionCost, 0, len(names))
	for _, k := range slices.Sorted(maps.Keys(names)) {
		fc := FunctionCost{Function: k, Preferred: r.prefer[k], Faster: Auto}
		c := r.costs[k]
		if c == nil {
			c = &fnCost{}
		} else {
			fc.Faster = c.faster
		}
		for _, rt := range []Route{Thread, Process} {
			e := r.estimateLocked(k, c, rt)
			s := c.live[side(rt)]
			pc := PoolCost{NsPerItem: e.ns, Measured: e.live, Batches: s.batches, Seed: r.seed(k, rt), Last: s.at}
			if rt == Thread {
				fc.Thread = pc
			} else {
				fc.Process = pc
			}
		}
		out = append(out, fc)
	}
	return out
}

// seed is `slither bench`'s cost of name on the pool of route rt, 0 if none.
func (r *Router) seed(name string, rt Route) float64 {
	m := r.CostSeeds[name]
	if m == nil {
		return 0
	}
	if rt == Thread {
		return m[seedThread]
	}
	if ft, ok := r.Process.(FreeThreadedPool); ok && ft.FreeThreaded() {
		return m[seedProcessFT]
	}
	return m[seedProcessGIL]
}

func (r *Router) estimateLocked(name string, c *fnCost, rt Route) estimate {
	s := &c.live[side(rt)]
	if s.n >= costMinSamples {
		return estimate{ns: s.median(), live: true, n: s.n}
	}
	return estimate{ns: r.seed(name, rt), n: s.n}
}

// record notes the end of a batch of name that ran on route's pool: a
// probe's end frees its place; a failure counts (see probeFailures); a
// success adds its cost per item to the measurements unless it started
// before the first one recorded there had ended: it may have waited for
// the module's import (its lock), which measures the import, not the
// function (the first batch itself is one outlier the median absorbs).
func (r *Router) record(name string, route Route, items int, service time.Duration, started time.Time, ok, failed, probe bool) {
	if route != Thread && route != Process {
		return
	}
	r.costMu.Lock()
	defer r.costMu.Unlock()
	c := r.costs[name]
	if c == nil {
		if !ok {
			return // nothing known of name: a failure does not make an entry
		}
		c = r.fnCostLocked(name)
	}
	if probe && c.probes > 0 {
		c.probes--
	}
	now := r.clock()
	if failed {
		c.fails[side(route)]++
		c.failAt[side(route)] = now
	}
	if !ok || items == 0 || service <= 0 {
		return
	}
	c.fails[side(route)] = 0
	if w := &c.warm[side(route)]; w.IsZero() {
		*w = now
	} else if started.Before(*w) {
		return
	}
	c.live[side(route)].add(float64(service.Nanoseconds())/float64(items), now)
}

// tooShortToProbe reports whether a batch of items takes the thread pool
// less than minProbeBatch by its measured estimate (see the cost model's
// doc), and why, for the reason.
func tooShortToProbe(et estimate, items int) (bool, string) {
	if !et.live {
		return false, ""
	}
	b := et.ns * float64(max(items, 1))
	if b >= float64(minProbeBatch) {
		return false, ""
	}
	return true, "this batch takes the thread pool about " + ns(b) + ", under " + ns(float64(minProbeBatch)) +
		": too short for the process pool's round trip to pay off"
}

// mayProbeLocked reports whether a probe of route's pool may be sent now,
// and takes its place if so (see costMaxProbes and probeFailures).
// r.costMu held.
func (r *Router) mayProbeLocked(c *fnCost, route Route, now time.Time) bool {
	if c.probes >= costMaxProbes && now.Sub(c.probeT) < probeInterval {
		return false
	}
	if c.fails[side(route)] >= probeFailures && now.Sub(c.failAt[side(route)]) < probeInterval {
		return false
	}
	if c.probes >= costMaxProbes {
		c.probes = 0 // a probe decided but never submitted, or one still running for that long
	}
	c.probes++
	c.probeT = now
	return true
}

func (r *Router) fnCostLocked(name string) *fnCost {
	c := r.costs[name]
	if c == nil {
		c = &fnCost{faster: Auto}
		if r.costs == nil {
			r.costs = map[string]*fnCost{}
		}
		r.costs[name] = c
	}
	return c
}

func (r *Router) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// byCost decides an Auto batch of name that both pools may run; safe says
// why the thread pool may ("m.f is declared thread-safe (how) and the GIL
// is off"), how is how the mark is known. A pinned batch never probes.
func (r *Router) byCost(name, safe, how string, pinned bool, items int) Decision {
	r.costMu.Lock()
	defer r.costMu.Unlock()
	c := r.fnCostLocked(name)
	c.since++
	now := r.clock()
	et, ep := r.estimateLocked(name, c, Thread), r.estimateLocked(name, c, Process)
	d := Decision{ThreadCost: et.ns, ProcessCost: ep.ns}
	probing := func(rt Route) bool { return !pinned && r.mayProbeLocked(c, rt, now) }
	probe := func(rt Route, why string) Decision {
		c.since, c.probed = 0, now
		d.Route, d.Class, d.probe = rt, RouteProbe, true
		d.Reason = name + " is thread-safe (" + how + "); probe: " + why
		return d
	}
	if short, why := tooShortToProbe(et, items); short {
		d.Route, d.Class, d.Reason = Thread, RouteThreadSafe, safe+"; "+why
		return d
	}
	if !et.known() || !ep.known() {
		// Today's rule (threads) until the threads are known, then every
		// exploreEvery-th batch measures the process pool.
		if et.known() && c.since >= exploreEvery && probing(Process) {
			return probe(Process, "measuring the process pool ("+plural(ep.n, "batch")+" of "+
				strconv.Itoa(costMinSamples)+" so far; the thread pool: "+describe(et)+")")
		}
		d.Route, d.Class, d.Reason = Thread, RouteThreadSafe, safe
		return d
	}
	if et.live != ep.live {
		// One pool measured here, the other only seeded: compare like with
		// like (both seeds, each measured on its own by slither bench) until
		// both are measured here, and measure the other now and then. A
		// live figure taken while the other pool kept the cores busy, or
		// while a pool warmed up, is no match for a seed.
		if st, sp := r.seed(name, Thread), r.seed(name, Process); st > 0 && sp > 0 {
			unmeasured, n := Process, ep.n
			if !et.live {
				unmeasured, n = Thread, et.n
			}
			// Measured at once where the seeds send the function (the
			// choice must be confirmed here), or when the pick's own
			// measurement here already exceeds the other's seed (the seeds'
			// verdict is in doubt); otherwise the seeds' loser waits for
			// the periodic re-probes, which cost less.
			seedsPick, measured := Thread, et
			if sp*switchMargin < st {
				seedsPick, measured = Process, ep
			}
			other := st
			if seedsPick == Thread {
				other = sp
			}
			doubt := measured.live && measured.ns >= other
			if (unmeasured == seedsPick || doubt) && c.since >= exploreEvery && probing(unmeasured) {
				return probe(unmeasured, "measuring the "+poolName(unmeasured)+" pool ("+plural(n, "batch")+" of "+
					strconv.Itoa(costMinSamples)+" so far; until then both pools' slither bench costs decide)")
			}
			et, ep = estimate{ns: st}, estimate{ns: sp}
			d.ThreadCost, d.ProcessCost = st, sp
		}
	}
	if c.faster != Thread && c.faster != Process {
		c.faster = Thread // where it started, unless the other is clearly cheaper (below)
	}
	fast, slow := et, ep
	if c.faster == Process {
		fast, slow = ep, et
	}
	if slow.ns*switchMargin < fast.ns {
		c.faster = other(c.faster)
		fast, slow = slow, fast
	}
	loser := other(c.faster)
	if f := c.fails[side(c.faster)]; f >= probeFailures && c.fails[side(loser)] < probeFailures &&
		now.Sub(c.failAt[side(c.faster)]) < probeInterval { // after that, one batch tries it again
		// The faster pool now fails the function (a module gone there, a
		// timeout): its cost says nothing until it succeeds again.
		d.Route, d.Class = loser, RouteFaster
		d.Reason = name + " is thread-safe (" + how + "); the " + poolName(c.faster) + " pool failed its last " +
			strconv.Itoa(f) + " batches, so it runs on the " + poolName(loser) + " pool"
		return d
	}
	if !pinned {
		s := c.live[side(loser)]
		switch {
		// The loser's answer to the latest probe beat the faster pool:
		// measure it again soon (a probe that never ran is no answer).
		case s.batches > 0 && !c.probed.IsZero() && !s.at.Before(c.probed) && c.since >= confirmEvery &&
			s.last*switchMargin < fast.ns && probing(loser):
			return probe(loser, "the "+poolName(loser)+" pool's last batch beat the "+poolName(c.faster)+
				" pool's estimate ("+ns(s.last)+" vs "+ns(fast.ns)+" per item): measuring it again")
		case (c.since >= probeEvery || c.since >= probeMinGap && now.Sub(c.probed) >= probeInterval) && probing(loser):
			than := ratio(slow.ns, fast.ns) + " slower than"
			if fast.ns*switchMargin >= slow.ns {
				than = "about as fast as"
			}
			return probe(loser, "re-measuring the "+poolName(loser)+" pool, "+than+" the "+
				poolName(c.faster)+" pool when last estimated ("+ns(slow.ns)+" vs "+ns(fast.ns)+" per item)")
		}
	}
	d.Route, d.Class = c.faster, RouteFaster
	if fast.ns*switchMargin >= slow.ns {
		d.Reason = name + " is thread-safe (" + how + ") and the " + poolName(c.faster) + " pool is about as fast as the " +
			poolName(loser) + " pool " + compare(fast, slow) + ": it stays where it runs"
		return d
	}
	if c.faster == Process {
		d.Reason = name + " is thread-safe (" + how + "), but the process pool " + verb(fast, slow) + " " +
			ratio(slow.ns, fast.ns) + " faster " + compare(fast, slow)
	} else {
		d.Reason = name + " is thread-safe (" + how + ") and the thread pool " + verb(fast, slow) + " " +
			ratio(slow.ns, fast.ns) + " faster than the process pool " + compare(fast, slow)
	}
	return d
}

func other(r Route) Route {
	if r == Thread {
		return Process
	}
	return Thread
}
