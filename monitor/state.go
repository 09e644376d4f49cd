package monitor

import "time"

// State is the engine at one moment, as GET /debug/slither/state serves it
// (JSON) and as the dashboard page and `slither top` show it. It holds no
// session ids and, apart from the recent errors, no item values: names an
// operator configured (pools, dispatches, pipes, stages, stores), function
// names and counts. The recent errors' messages and Python tracebacks are
// what the failing code raised, and may quote the items it failed on.
//
// Durations are float seconds (fields ending in _s); times are RFC 3339.
type State struct {
	Time     time.Time       `json:"time"`    // when the state was read
	Started  time.Time       `json:"started"` // when the monitor started
	Host     string          `json:"host"`
	Pid      int             `json:"pid"`
	Version  string          `json:"version,omitempty"`
	GIL      GILState        `json:"gil"`
	Totals   Totals          `json:"totals"`
	Pools    []PoolState     `json:"pools"`      // sorted by name
	Dispatch []DispatchState `json:"dispatches"` // sorted by name
	// Routes counts the routers' decisions by route and reason class;
	// RecentRoutes holds the last decisions (newest first) with their
	// full reasons.
	Routes       []RouteCount    `json:"routes"`
	RecentRoutes []RouteDecision `json:"recent_routes"`
	Pipes        []PipeState     `json:"pipes"`  // sorted by name
	Stores       []StoreState    `json:"stores"` // sorted by name
	// Errors are the last failures (newest first), with the Python
	// traceback when Python raised.
	Errors []ErrorState `json:"errors"`
}

// Totals count what every dispatch did since the monitor started: the
// sums of the dispatches' counts.
type Totals struct {
	BatchesOK     int64 `json:"batches_ok"`
	BatchesFailed int64 `json:"batches_failed"` // failed submissions (attempts), not items
	// BatchesCancelled are submissions cut short because their run stopped.
	BatchesCancelled int64 `json:"batches_cancelled"`
	Retries          int64 `json:"retries"`
	ItemsOK          int64 `json:"items_ok"`
	ItemsFailed      int64 `json:"items_failed"`
	ItemsSkipped     int64 `json:"items_skipped"`
	ItemsRouted      int64 `json:"items_routed"`
	// ItemsCancelled are items a run left without a result because it
	// ended first (its caller cancelled it, its consumer stopped reading,
	// or another item's failure halted it): not failures.
	ItemsCancelled int64 `json:"items_cancelled"`
	InFlight       int64 `json:"in_flight"`       // batches submitted and not yet ended
	ItemsInFlight  int64 `json:"items_in_flight"` // the items of those batches
	QueuedItems    int64 `json:"queued_items"`    // items in formed batches waiting for a slot
}

// GILState is the embedded interpreter's GIL.
type GILState struct {
	// Embedded says whether this process embeds an interpreter (a thread
	// pool runs); the other fields are meaningful only then.
	Embedded          bool `json:"embedded"`
	FreeThreadedBuild bool `json:"free_threaded_build"`
	Enabled           bool `json:"enabled"`
	// EnabledBy names the module whose import turned the GIL on, when it
	// is on because of one.
	EnabledBy string      `json:"enabled_by,omitempty"`
	Changes   []GILChange `json:"changes"` // oldest first
}

// GILChange is one observed change of the GIL's state.
type GILChange struct {
	Enabled bool      `json:"enabled"`
	Module  string    `json:"module,omitempty"` // the module whose import turned it on, when known
	During  string    `json:"during,omitempty"` // the batch's module when it changed
	At      time.Time `json:"at"`
}

// PoolState is one pool and its workers.
type PoolState struct {
	Name     string `json:"name"` // "thread", or "process/NAME"
	Kind     string `json:"kind"` // "thread" or "process"
	Capacity int    `json:"capacity"`
	// EffectiveCapacity is what the pool can really run in parallel now:
	// for the embedded pool 1 while the GIL is on, else its workers;
	// for any pool no more than the usable cores (capacity.Cores).
	EffectiveCapacity int           `json:"effective_capacity"`
	Busy              int           `json:"busy"`       // batches running now
	Waiting           int           `json:"waiting"`    // batches waiting for a worker (queue depth)
	Saturation        float64       `json:"saturation"` // Busy/Capacity
	Calls             uint64        `json:"calls"`
	Items             uint64        `json:"items"`
	Errors            uint64        `json:"errors"`
	Restarts          uint64        `json:"restarts"`
	Workers           []WorkerState `json:"workers"` // by id
}

// WorkerState is one worker: a thread of the embedded interpreter or a
// Python subprocess.
type WorkerState struct {
	ID     int    `json:"id"`
	State  string `json:"state"` // idle, busy, starting, recycling, stopped
	Pid    int    `json:"pid,omitempty"`
	Thread int    `json:"thread,omitempty"` // OS thread id (thread pool)
	// Current is the module.function running now; RunningS how long it
	// has run.
	Current  string  `json:"current,omitempty"`
	RunningS float64 `json:"running_s,omitempty"`
	Calls    uint64  `json:"calls"`
	Items    uint64  `json:"items"`
	Errors   uint64  `json:"errors"`
	Restarts uint64  `json:"restarts"`
	RSS      uint64  `json:"rss_bytes,omitempty"` // process pool only
	BusyS    float64 `json:"busy_s"`
}

// DispatchState is one named dispatch (runs of the same name add up).
//
// Batch counts are per submission: a batch retried or bisected counts
// each attempt. Item counts are per item, whatever the attempts:
// ItemsOK counts items with a result as their batches end; ItemsFailed,
// ItemsSkipped, ItemsRouted and ItemsCancelled are counted when a run
// ends, from its report: of the items that ended the run without a result
// and were neither skipped nor routed, cancelled are those of a run that
// ended by cancellation (its caller's context ended, or its consumer
// stopped reading), failed those of any other run (they failed and the
// error surfaced, or they never ran because the run halted).
type DispatchState struct {
	Name string `json:"name"`
	// Pool is where the dispatch's batches run: the pool named by the
	// last batch that ended; before one has, the pool the run was given,
	// as its events name it (its name, or its kind, e.g. "router").
	Pool          string `json:"pool"`
	Function      string `json:"function"`        // module.function of the last batch
	Runs          int64  `json:"runs"`            // runs going on now
	InFlight      int64  `json:"in_flight"`       // batches submitted and not yet ended
	ItemsInFlight int64  `json:"items_in_flight"` // the items of those batches
	MaxInFlight   int64  `json:"max_in_flight"`   // the sum over its running runs
	QueuedItems   int64  `json:"queued_items"`
	BatchesOK     int64  `json:"batches_ok"`
	Failed        int64  `json:"batches_failed"` // failed submissions
	// Cancelled are submissions cut short because their run stopped.
	Cancelled      int64 `json:"batches_cancelled"`
	Retries        int64 `json:"retries"`
	ItemsOK        int64 `json:"items_ok"`
	ItemsFailed    int64 `json:"items_failed"`
	ItemsSkipped   int64 `json:"items_skipped"`
	ItemsRouted    int64 `json:"items_routed"`
	ItemsCancelled int64 `json:"items_cancelled"`
}

// RouteCount is how many batches went to one route for one class of reason.
type RouteCount struct {
	Route string `json:"route"` // "thread" or "process"
	Class string `json:"class"` // a low-cardinality reason class, e.g. "gil-enabled"
	Count int64  `json:"count"`
}

// RouteDecision is one routing decision with its full reason.
type RouteDecision struct {
	At       time.Time `json:"at"`
	Function string    `json:"function"` // module.function
	Route    string    `json:"route"`
	Class    string    `json:"class"`
	Reason   string    `json:"reason"`
	Warning  string    `json:"warning,omitempty"`
	Count    int64     `json:"count"` // decisions with the same function, route and reason (the entry is kept once)
}

// PipeState is one named pipeline.
type PipeState struct {
	Name    string       `json:"name"`
	Runs    int64        `json:"runs"`    // runs started
	Running int64        `json:"running"` // runs going on now
	Failed  int64        `json:"failed"`  // runs that ended with an error
	Stages  []StageState `json:"stages"`  // in pipeline order
}

// StageState is one stage of a pipeline, summed over its runs.
type StageState struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	In   int64  `json:"in"`
	Out  int64  `json:"out"`
}

// StoreState is one store.
type StoreState struct {
	Name    string       `json:"name"`
	Tables  []TableState `json:"tables"`
	Writes  int64        `json:"writes"`
	Reloads int64        `json:"reloads"`
	Views   int64        `json:"view_calls"`
}

// TableState is one table of a store.
type TableState struct {
	Name string `json:"name"`
	Rows int    `json:"rows"`
}

// ErrorState is one recent failure.
type ErrorState struct {
	At       time.Time `json:"at"`
	Source   string    `json:"source"`   // the dispatch (or pipe/stage) that saw it
	Function string    `json:"function"` // module.function
	Pool     string    `json:"pool,omitempty"`
	Type     string    `json:"type,omitempty"` // the Python exception type, when Python raised
	// Message is Python's own message when Python raised (without the
	// type), else the error's text.
	Message string `json:"message"`
	// Error is the whole Go error chain when Message is Python's message
	// (e.g. "pools/process: mod.fn: python: ValueError: bad"); empty when
	// Message is the error's text already.
	Error string `json:"error,omitempty"`
	// Traceback is Python's formatted traceback, when Python raised.
	Traceback string `json:"traceback,omitempty"`
	Count     int64  `json:"count"` // the same error seen this many times in a row
}
