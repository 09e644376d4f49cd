// Package node is the runtime of `slither node`: a long-running process
// that serves an engine's pools to remote coordinators over NATS
// JetStream (issue #17; the protocol is pools/remote's).
//
// A node starts a local engine (its thread pool and process pools, from
// the same configuration as any engine), and for every pool it serves
// pulls batches from the pool's work stream: from the consumer shared by
// every node (any node may run those) and from a consumer of its own (the
// pinned batches of sessions whose state lives here, and their control
// calls). It takes only as many batches as its local pool can run at once,
// keeps each one's lease alive while it runs, publishes the result to the
// coordinator's results stream, waits for the server to store it, and only
// then acknowledges the batch: a node that dies at any point loses nothing,
// since the batch is delivered again to another node and the coordinator
// drops a second result.
//
// Every heartbeat the node advertises itself (capacity, load, GIL state)
// in the nodes bucket; coordinators size their in-flight limits from that.
// Shutdown drains: no new batches are taken, running ones finish and are
// answered, then the advert is deleted.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
	"github.com/slither-go/slither/telemetry"
)

// Defaults of [Options].
const (
	DefaultHeartbeat    = time.Second
	DefaultFetchWait    = time.Second
	DefaultDrainTimeout = 30 * time.Second
)

// Options configure a node. The zero value serves the default process pool
// of a default engine, but a connection is required: Conn or NATS.URL (or
// Engine.NATS.URL).
type Options struct {
	// Engine is the local engine's configuration (the engine's YAML file
	// format). Its Remote section is ignored: a node runs batches, it does
	// not coordinate remote pools. Its Host is replaced by the node's
	// forwarder, which sends Python's host calls and views to the engine
	// that submitted the batch.
	Engine engine.Config
	// NATS is the connection to make when Conn is nil; an empty URL means
	// Engine.NATS.
	NATS remote.ConnOptions
	// Conn is a ready connection to use instead (tests, a dev server in
	// this process). The node does not close it; it drains a connection
	// it made itself.
	Conn *nats.Conn
	// Pools names the engine pools to serve (each a remote.ValidName);
	// empty means every process pool of Engine (the implied "default"
	// when it names none).
	Pools []string
	// ID is the node id; empty means remote.NewNodeID(hostname). It must
	// be new for every start: a restarted node has lost its sessions.
	ID string
	// Heartbeat is how often the node refreshes its advert; default
	// DefaultHeartbeat. The nodes bucket's TTL (made by whoever creates it
	// first) should be a few heartbeats.
	Heartbeat time.Duration
	// FetchWait bounds one pull request: how long a drain may wait for the
	// fetches under way to end; default DefaultFetchWait, at most 1s.
	FetchWait time.Duration
	// DrainTimeout bounds Run's drain after its context ends; default
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// MaxPayload bounds an encoded batch or result, object store included;
	// 0 = remote.DefaultMaxPayload.
	MaxPayload int
	// Version is advertised; empty means this binary's module version.
	Version string
	// Logger receives the node's diagnostics (and the engine's and the
	// connection's, when those name none); nil means slog.Default().
	Logger *slog.Logger
	// Telemetry is the engine's event bus when Engine.Telemetry is nil.
	Telemetry *telemetry.Bus
}

// Node serves an engine's pools over NATS. Create it with [Start]; stop it
// with [Node.Shutdown].
type Node struct {
	o       Options
	id      string
	host    string
	started time.Time
	log     *slog.Logger

	nc      *nats.Conn
	ownConn bool
	js      jetstream.JetStream
	codec   *remote.Codec
	kv      jetstream.KeyValue
	eng     *engine.Engine
	served  []*served // sorted by pool name

	// fetchCtx ends when the drain starts: no new pull requests.
	fetchCtx  context.Context
	stopFetch context.CancelFunc
	// workCtx is the base of every batch's context; it ends only when the
	// drain runs out of time: running batches are then interrupted and
	// handed back to the stream.
	workCtx  context.Context
	stopWork context.CancelFunc
	draining atomic.Bool

	loops   sync.WaitGroup // fetch loops
	batches sync.WaitGroup // one per message taken

	cmu     sync.Mutex
	cancels map[cancelKey]*canceler
	cancel  *nats.Subscription

	// running holds the batches being handled, so that a batch delivered
	// again while it runs here is not run twice (see handle).
	rmu     sync.Mutex
	running map[cancelKey]*running
	// answered are the last batches of the node's own consumer it answered
	// (see remember): a redelivery of one (its ack was lost) is not run
	// on the session's state a second time.
	answered answeredSet

	amu    sync.Mutex    // one advert put at a time; guards kv
	hbStop chan struct{} // closed to end the heartbeat
	hbDone chan struct{} // closed when it has ended

	failOnce sync.Once
	failed   chan struct{} // closed by fail
	failErr  error

	shutOnce sync.Once
	shutErr  error
}

// Start connects, starts the engine and begins serving: when it returns
// the node's consumers exist and its first advert is in the nodes bucket.
// ctx bounds the start only. On failure everything started is stopped.
func Start(ctx context.Context, o Options) (*Node, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	wctx, stopWork := context.WithCancel(context.Background())
	fctx, stopFetch := context.WithCancel(wctx)
	n := &Node{o: o, id: o.ID, started: time.Now(), log: o.Logger, workCtx: wctx, stopWork: stopWork,
		fetchCtx: fctx, stopFetch: stopFetch, cancels: map[cancelKey]*canceler{}, running: map[cancelKey]*running{}, failed: make(chan struct{}),
		hbStop: make(chan struct{}), hbDone: make(chan struct{})}
	n.host, _ = os.Hostname()
	ok := false
	defer func() {
		if !ok {
			n.abort()
		}
	}()
	if err := n.connect(ctx); err != nil {
		return nil, err
	}
	if err := n.startEngine(ctx); err != nil {
		return nil, err
	}
	for _, name := range o.Pools {
		s, err := n.serve(ctx, name)
		if err != nil {
			return nil, err
		}
		n.served = append(n.served, s)
	}
	sub, err := n.nc.Subscribe(remote.CancelWildcard, n.onCancel)
	if err != nil {
		return nil, fmt.Errorf("node: subscribing to cancellations: %w", err)
	}
	n.cancel = sub
	// The first advert goes out once everything is ready to take batches:
	// coordinators count this node's capacity from then on.
	if err := n.advertise(ctx, false); err != nil {
		return nil, err
	}
	n.checkTTL(ctx)
	go n.heartbeat() // Shutdown stops it (hbStop) and waits for it (<-hbDone)
	for _, s := range n.served {
		for _, c := range s.consumers() {
			n.loops.Add(1)
			go n.fetchLoop(s, c) // Shutdown waits for them (n.loops.Wait) once the fetch context ends
		}
	}
	ok = true
	n.log.Info("slither node: serving", "node", n.id, "pools", o.Pools)
	return n, nil
}

// defaults validates o and fills in its defaults.
func (o *Options) defaults() error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.FetchWait <= 0 {
		o.FetchWait = DefaultFetchWait
	}
	// A longer pull would hold a drain (and slots) longer; it gains nothing.
	o.FetchWait = min(o.FetchWait, time.Second)
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Version == "" {
		o.Version = moduleVersion()
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = remote.NewNodeID(host)
	}
	if err := remote.ValidName(o.ID); err != nil {
		return fmt.Errorf("node: id: %w", err)
	}
	if len(o.Pools) == 0 {
		o.Pools = slices.Sorted(maps.Keys(o.Engine.Process))
		if len(o.Pools) == 0 {
			o.Pools = []string{engine.DefaultPool}
		}
	}
	o.Pools = slices.Compact(slices.Sorted(slices.Values(o.Pools)))
	for _, p := range o.Pools {
		if err := remote.ValidName(p); err != nil {
			return fmt.Errorf("node: pool to serve: %w", err)
		}
	}
	if o.Conn == nil && o.NATS.URL == "" {
		o.NATS = o.Engine.NATS
	}
	if o.Conn == nil && o.NATS.URL == "" {
		return fmt.Errorf("node: %w: no NATS url (nats.url in the config, SLITHER_NATS_URL or --nats)", remote.ErrConfig)
	}
	return nil
}

// moduleVersion is the version of the slither module in this binary.
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == "github.com/slither-go/slither" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/slither-go/slither" {
			return d.Version
		}
	}
	return bi.Main.Version
}

// connect opens (or adopts) the connection and makes sure the shared
// JetStream objects exist.
func (n *Node) connect(ctx context.Context) error {
	n.nc = n.o.Conn
	if n.nc == nil {
		co := n.o.NATS
		if co.Logger == nil {
			co.Logger = n.log
		}
		if co.Name == "" {
			co.Name = "slither-node-" + n.id
		}
		nc, err := remote.Connect(ctx, co)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.nc, n.ownConn = nc, true
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("node: jetstream: %w", err)
	}
	n.js = js
	n.codec = &remote.Codec{Conn: n.nc, JS: js, MaxPayload: n.o.MaxPayload}
	if _, err := remote.EnsureResults(ctx, js); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	kv, err := remote.EnsureNodes(ctx, js, n.nodesTTL())
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.kv = kv
	return nil
}

// startEngine starts the local engine, its host calls forwarded to the
// batches' coordinators.
func (n *Node) startEngine(ctx context.Context) error {
	cfg := n.o.Engine
	if len(cfg.Remote) > 0 {
		n.log.Info("slither node: the config's remote pools are not started on a node", "node", n.id, "remote", slices.Sorted(maps.Keys(cfg.Remote)))
	}
	cfg.Remote, cfg.NATS = nil, remote.ConnOptions{}
	cfg.Host = n.forwardHost
	if cfg.Logger == nil {
		cfg.Logger = n.log
	}
	if cfg.Telemetry == nil {
		cfg.Telemetry = n.o.Telemetry
	}
	eng, err := engine.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.eng = eng
	return nil
}

// ID is the node's id: its key in the nodes bucket and the last token of
// its node subjects.
func (n *Node) ID() string { return n.id }

// Pools are the names of the pools the node serves, sorted.
func (n *Node) Pools() []string { return slices.Clone(n.o.Pools) }

// Engine is the node's local engine.
func (n *Node) Engine() *engine.Engine { return n.eng }

// Failed is closed when the node can no longer serve (its connection was
// closed for good); Err then says why. Shutdown is still to be called.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// Err is why the node failed, or nil.
func (n *Node) Err() error {
	select {
	case <-n.failed:
		return n.failErr
	default:
		return nil
	}
}

func (n *Node) fail(err error) {
	n.failOnce.Do(func() {
		n.failErr = err
		n.log.Error("slither node: cannot serve", "node", n.id, "err", err)
		close(n.failed)
	})
}

// Run starts a node and serves until ctx ends (or the node fails), then
// drains it for at most o.DrainTimeout. It returns nil after a clean drain.
func Run(ctx context.Context, o Options) error {
	n, err := Start(ctx, o)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-n.Failed():
	}
	dctx, cancel := context.WithTimeout(context.Background(), n.o.DrainTimeout)
	defer cancel()
	return errors.Join(n.Err(), n.Shutdown(dctx))
}

// poolOf returns the engine pool named name.
func (n *Node) poolOf(name string) (pools.Pool, error) {
	p, err := n.eng.Pool(name)
	if err != nil {
		return nil, fmt.Errorf("node: serving pool %q: %w", name, err)
	}
	return p, nil
}
