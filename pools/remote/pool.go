package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// DefaultWaitTimeout bounds New's wait for Options.WaitNodes nodes when
// Options.WaitTimeout is zero.
const DefaultWaitTimeout = 30 * time.Second

// cleanupTimeout bounds the JetStream calls made after a caller gave up or
// while the pool closes (deleting a message, a payload object, the results
// consumer): they run on a context of their own, so that a cancelled
// caller still leaves nothing behind.
const cleanupTimeout = 5 * time.Second

// Options configure a remote [Pool]: the coordinator side of a pool whose
// batches run on `slither node` processes.
type Options struct {
	// Conn is the NATS connection; required. The pool does not close it.
	Conn *nats.Conn
	// Name is the pool name the nodes serve (see ValidName).
	Name string
	// Host answers slither.host_call and views made by the batches' Python
	// code on the nodes; nil makes them fail.
	Host pools.HostFunc
	// Telemetry receives the pool's events (pool.worker.start and
	// pool.worker.exit when a node comes and goes); nil disables them.
	Telemetry *telemetry.Bus
	// Logger receives the pool's diagnostics; nil discards them.
	Logger *slog.Logger
	// MaxInFlight bounds the batches published and unfinished at once (and
	// so the messages this pool keeps in the work stream); 0 means the sum
	// of the capacities the live nodes advertise (at least 1).
	MaxInFlight int
	// AckWait is a node's lease on one delivery, kept alive while the batch
	// runs; a dead node's batches go to another node after it. Default
	// DefaultAckWait. Coordinators of one pool should agree: the last one
	// started sets it.
	AckWait time.Duration
	// MaxDeliver is how many deliveries a batch may use (each by a node
	// that died under it or lost its lease, or handed it back unrun: it
	// was draining, or its restart breaker was open) before it fails with
	// ErrRedelivered; default DefaultMaxDeliver; -1 = no limit. The
	// consumer gets one delivery more: the node that receives it answers
	// ErrRedelivered instead of running the batch.
	MaxDeliver int
	// MaxPayload is the largest encoded batch or result; default
	// DefaultMaxPayload. Bodies above the server's max payload go through
	// the payload object store.
	MaxPayload int
	// WaitNodes makes New wait until this many live nodes serve the pool
	// ...
	WaitNodes int
	// WaitTimeout ... for at most this long, then fail with ErrNoNodes;
	// default DefaultWaitTimeout.
	WaitTimeout time.Duration
}

// Pool is the coordinator side of a remote pool: Submit publishes a batch
// to the pool's JetStream work queue and waits for the result a node
// publishes to this coordinator's results subject. Results are matched by
// batch id, so a batch redelivered after a node died never yields two
// results. It implements [pools.Pool] and [pools.Named]; its methods are
// safe for concurrent use.
type Pool struct {
	o     Options
	name  string // "remote/" + o.Name
	coord string
	log   *slog.Logger
	nc    *nats.Conn
	js    jetstream.JetStream
	codec *Codec
	work  jetstream.Stream // the pool's work stream
	res   jetstream.Stream // the results stream

	// life ends when Close gives up waiting (or is done): host calls and
	// Submits still waiting then end with ErrClosed.
	life context.Context
	kill context.CancelFunc

	consume  jetstream.ConsumeContext
	watcher  jetstream.KeyWatcher
	watching chan struct{} // closed when the current watch loop has ended
	// supervised is closed when supervise has returned (at once when it
	// never started).
	supervised chan struct{}
	// watchedCreated is when the nodes bucket being watched was made.
	watchedCreated time.Time
	superviseOnce  sync.Once
	subs           []*nats.Subscription
	bg             sync.WaitGroup // host calls and close-session sends; Add under mu while !bgStop
	hostSem        chan struct{}  // bounds concurrent host calls

	seq atomic.Uint64
	// redelivered counts results of batches delivered more than once.
	redelivered atomic.Uint64
	hooks       testHooks

	mu       sync.Mutex
	closed   bool          // Close was called: no new Submits
	bgStop   bool          // teardown began: no new background goroutines
	active   int           // Submits entered and not yet returned
	idle     chan struct{} // closed once closed && active == 0
	torn     chan struct{} // closed when the first Close has torn down
	waiters  map[string]*waiter
	bySeq    map[uint64]*waiter
	inflight int           // batches holding an in-flight slot
	queued   int           // Submits waiting for a slot
	changed  chan struct{} // closed (and replaced) when a slot frees or capacity changes
	lastCap  int           // last non-zero advertised capacity
	nodes    map[string]*node
	gone     []string // ids of gone nodes still listed in Stats, oldest first
	nextNode int
	sessions map[string]*session
	ended    pools.EndedSessions
}

// testHooks let this package's tests observe moments they synchronize on.
// All nil outside tests.
type testHooks struct {
	published func(id string, seq uint64) // a batch's PubAck arrived
	dropped   func(id string)             // a result for an unknown batch was dropped
	node      func(id string, gone bool)  // a node advert was applied
}

// New creates what the pool needs in JetStream (the work stream and its
// shared consumer with this pool's AckWait and MaxDeliver, the results
// stream and this coordinator's consumer, the nodes bucket and the payload
// store), starts taking results, answering host calls and watching the
// nodes, and, with WaitNodes set, waits for that many nodes. ctx bounds the
// set-up, not the pool's life.
func New(ctx context.Context, o Options) (*Pool, error) { return newPool(ctx, o, testHooks{}) }

func newPool(ctx context.Context, o Options, hooks testHooks) (*Pool, error) {
	if o.Conn == nil {
		return nil, fmt.Errorf("%w: remote pool %q: no NATS connection", ErrConfig, o.Name)
	}
	if err := ValidName(o.Name); err != nil {
		return nil, fmt.Errorf("remote pool: %w", err)
	}
	if o.MaxInFlight < 0 || o.MaxDeliver < -1 || o.MaxPayload < 0 || o.WaitNodes < 0 || o.AckWait < 0 || o.WaitTimeout < 0 {
		return nil, fmt.Errorf("%w: remote pool %q: negative max_in_flight, max_deliver, max_payload, wait_nodes, ack_wait or wait_timeout", ErrConfig, o.Name)
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = DefaultMaxDeliver
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("remote pool %s: %w", o.Name, err)
	}
	p := &Pool{
		o: o, name: "remote/" + o.Name, coord: NewCoordID(), nc: o.Conn, js: js,
		codec:   &Codec{Conn: o.Conn, JS: js, MaxPayload: o.MaxPayload},
		hostSem: make(chan struct{}, hostConcurrency),
		idle:    make(chan struct{}), torn: make(chan struct{}), changed: make(chan struct{}),
		waiters: map[string]*waiter{}, bySeq: map[uint64]*waiter{},
		nodes: map[string]*node{}, sessions: map[string]*session{}, lastCap: 1,
		supervised: make(chan struct{}), hooks: hooks,
	}
	p.log = log.With("pool", p.name, "coord", p.coord)
	p.life, p.kill = context.WithCancel(context.Background())
	if err := p.start(ctx); err != nil {
		p.teardown(ctx)
		return nil, fmt.Errorf("remote pool %s: %w", o.Name, err)
	}
	return p, nil
}

// start creates the JetStream objects and starts the pool's listeners.
func (p *Pool) start(ctx context.Context) error {
	var err error
	if p.res, err = EnsureResults(ctx, p.js); err != nil {
		return err
	}
	settings := PoolSettings{AckWait: p.o.AckWait, MaxDeliver: p.o.MaxDeliver}
	if p.work, _, err = EnsurePool(ctx, p.js, p.o.Name, settings, true); err != nil {
		return err
	}
	kv, err := EnsureNodes(ctx, p.js, 0)
	if err != nil {
		return err
	}
	if _, err := EnsurePayloads(ctx, p.js); err != nil {
		return err
	}
	if err := p.serve(ctx); err != nil {
		return err
	}
	if err := p.watchNodes(ctx, kv); err != nil {
		return err
	}
	p.superviseOnce.Do(func() { go p.supervise() }) // teardown waits for it (<-p.supervised)
	return nil
}

// Name is the pool's name in telemetry: "remote/" + Options.Name.
func (p *Pool) Name() string { return p.name }

// Kind is pools.KindRemote.
func (p *Pool) Kind() pools.Kind { return pools.KindRemote }

// Redelivered is the number of results this pool received for batches that
// had been delivered more than once: an earlier node died holding them (or
// lost its lease), and another node ran them.
func (p *Pool) Redelivered() uint64 { return p.redelivered.Load() }

// CoordID is this coordinator's id: nodes publish its results to
// ResultSubject(CoordID()) and send its host calls to HostSubject(CoordID()).
func (p *Pool) CoordID() string { return p.coord }

// Capacity is the number of batches the pool keeps in flight at once:
// Options.MaxInFlight, or the capacity the live, non-draining nodes
// advertise for the pool (the last non-zero sum while none is live, and at
// least 1).
func (p *Pool) Capacity() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.capLocked()
}

// Close stops accepting batches and waits for those already submitted to
// end (they still need nodes to run them). If ctx ends first, the batches
// still waiting fail with pools.ErrClosed (their messages are deleted and a
// cancel is sent to the nodes) and Close returns ctx's error. Either way it
// then stops taking results, host calls and node adverts and deletes this
// coordinator's results consumer. Close is idempotent; it does not close
// Options.Conn.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	p.checkIdleLocked()
	p.mu.Unlock()
	var err error
	select {
	case <-p.idle:
	case <-ctx.Done():
		err = fmt.Errorf("remote pool %s: close: %w", p.o.Name, ctx.Err())
	}
	p.kill() // host calls and Submits still waiting end now
	if !first {
		select {
		case <-p.torn:
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("remote pool %s: close: %w", p.o.Name, ctx.Err())
			}
		}
		return err
	}
	p.teardown(ctx)
	close(p.torn)
	return err
}

// checkIdleLocked closes p.idle once the pool is closed and no Submit is
// left. p.mu held.
func (p *Pool) checkIdleLocked() {
	if p.closed && p.active == 0 {
		select {
		case <-p.idle:
		default:
			close(p.idle)
		}
	}
}

// teardown stops every listener New started (those that were started) and
// waits for the pool's goroutines; it deletes the results consumer.
func (p *Pool) teardown(ctx context.Context) {
	p.mu.Lock()
	p.bgStop = true
	p.mu.Unlock()
	p.kill()
	// The supervisor exits once the pool is killed; then the listeners are
	// no longer replaced under us. (Never started: nothing to wait for.)
	p.superviseOnce.Do(func() { close(p.supervised) })
	<-p.supervised
	for _, s := range p.subs {
		if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			p.log.Debug("remote pool: unsubscribing", "subject", s.Subject, "err", err)
		}
	}
	if p.consume != nil {
		p.consume.Stop()
		<-p.consume.Closed()
	}
	if p.watcher != nil {
		if err := p.watcher.Stop(); err != nil {
			p.log.Debug("remote pool: stopping the nodes watch", "err", err)
		}
		<-p.watching // the loop drains the watcher's channel until it closes
	}
	p.bg.Wait()
	if p.res != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if err := p.res.DeleteConsumer(cctx, ResultDurable(p.coord)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			p.log.Warn("remote pool: deleting the results consumer", "durable", ResultDurable(p.coord), "err", err)
		}
	}
}

// cleanupContext is a context for clean-up after ctx may have ended: ctx's
// values, none of its cancellation, and cleanupTimeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// goBackground runs f on a goroutine Close waits for, unless teardown has
// begun (then it reports false and f does not run).
func (p *Pool) goBackground(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bgStop {
		return false
	}
	p.bg.Add(1)
	go func() { // teardown waits for it: p.bg.Wait, after setting bgStop
		defer p.bg.Done()
		f()
	}()
	return true
}
