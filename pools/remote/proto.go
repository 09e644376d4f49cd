package remote

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// The names below are the protocol between coordinators (remote pools) and
// nodes. Every JetStream object lives under them, so one NATS account can
// hold many pools, coordinators and nodes at once.
const (
	// ResultsStream holds every coordinator's results (work queue, file
	// storage: a result survives a NATS restart until its coordinator takes it).
	ResultsStream = "SLITHER_RESULTS"
	// NodesBucket is the KV bucket where nodes advertise themselves; an
	// entry ages out NodeTTL after a node's last heartbeat.
	NodesBucket = "slither_nodes"
	// PayloadBucket is the object store for batches and results larger than
	// the server's max payload.
	PayloadBucket = "slither_payloads"
	// AnyDurable is the durable consumer, shared by every node serving a
	// pool, on the pool's any-node subject: a work-queue stream allows one
	// consumer per subject, so nodes pull from the same one.
	AnyDurable = "any"
	// ControlCloseSession is the Control of a Call that drops a session's
	// state on the node that holds it.
	ControlCloseSession = "close-session"
	// DefaultNodeTTL is how long a node's advertisement outlives its last
	// heartbeat when the nodes bucket is created with ttl 0.
	DefaultNodeTTL = 5 * time.Second
	// DefaultMaxPayload bounds an encoded batch or result (object store
	// included) when the caller sets no limit.
	DefaultMaxPayload = 64 << 20
	// DefaultAckWait is a node's lease on a delivered batch, kept alive by
	// progress acks while the batch runs; a node that dies loses its lease
	// after this long and the batch goes to another node.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxDeliver is how many times a batch is delivered before the
	// coordinator gives up on it (every node that took it died).
	DefaultMaxDeliver = 5
	// DefaultMaxAckPending bounds the batches leased to the nodes of a pool
	// at once, all nodes together.
	DefaultMaxAckPending = 4096
	// retention is how long an unclaimed batch or result stays in a stream
	// (or object store): a backstop for orphans of crashed coordinators.
	retention = 24 * time.Hour
)

// Headers of batch and result messages.
const (
	HeaderCoord    = "Slither-Coord"    // coordinator id
	HeaderBatch    = "Slither-Batch"    // batch id
	HeaderNode     = "Slither-Node"     // the node that ran a batch (results)
	HeaderSession  = "Slither-Session"  // session id
	HeaderUnpinned = "Slither-Unpinned" // "1": the session's batch may run on any node
	HeaderRoute    = "Slither-Route"    // pools.Route as a decimal
	HeaderDeadline = "Slither-Deadline" // the caller's deadline, Unix nanoseconds
	HeaderControl  = "Slither-Control"  // a control call (ControlCloseSession)
	HeaderObject   = "Slither-Object"   // the body is in the payload object store under this name
	HeaderTrace    = "traceparent"      // W3C trace context of the submitting span
)

var (
	// ErrPayloadTooLarge is matched by errors of batches or results whose
	// encoding exceeds the configured maximum payload.
	ErrPayloadTooLarge = errors.New("remote: payload too large")
	// ErrMalformed is matched by errors of messages that do not decode: a
	// wrong header, a broken frame, a value that does not convert.
	ErrMalformed = errors.New("remote: malformed message")
	// ErrNoNodes is matched by the error of a pool whose wait for serving
	// nodes timed out.
	ErrNoNodes = errors.New("remote: no nodes serve the pool")
	// ErrRedelivered is matched by errors of batches that were delivered
	// MaxDeliver times without a result: every node that took one died (or
	// lost its lease). It also matches pools.ErrWorkerCrashed, so
	// dispatch's Retry treats it as a crash.
	ErrRedelivered = errors.New("remote: batch delivered too many times without a result")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidName reports whether name can name a pool (or a node, or a
// coordinator): 1-64 letters, digits, '_' or '-', so that it is one token
// of a subject and a valid stream, durable and key name.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q is not a valid remote name (1-64 of A-Z a-z 0-9 _ -)", ErrConfig, name)
	}
	return nil
}

// StreamName is the work stream of pool.
func StreamName(pool string) string { return "SLITHER_POOL_" + pool }

// AnySubject is the subject of pool's batches that any node may run.
func AnySubject(pool string) string { return "slither.pool." + pool + ".any" }

// NodeSubject is the subject of pool's batches (and control calls) for one
// node: its sessions.
func NodeSubject(pool, node string) string { return "slither.pool." + pool + ".node." + node }

// NodeDurable is the durable consumer a node keeps on its own subject.
func NodeDurable(node string) string { return "node-" + node }

// ResultSubject is where nodes publish coordinator coord's results.
func ResultSubject(coord string) string { return "slither.res." + coord }

// ResultDurable is coordinator coord's consumer on its results.
func ResultDurable(coord string) string { return "coord-" + coord }

// HostSubject is where coordinator coord answers host calls (views) made
// by Python on nodes.
func HostSubject(coord string) string { return "slither.host." + coord }

// CancelSubject carries coordinator coord's cancellations: the body is the
// id of a batch whose caller gave up. Nodes subscribe to CancelWildcard.
func CancelSubject(coord string) string { return "slither.cancel." + coord }

// CancelWildcard matches every coordinator's CancelSubject.
const CancelWildcard = "slither.cancel.*"

// MaxDeliveriesSubject is the server's advisory for batches of pool that
// reached MaxDeliver on the shared consumer.
func MaxDeliveriesSubject(pool string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamName(pool) + "." + AnyDurable
}

// NewCoordID returns a fresh coordinator id.
func NewCoordID() string { return nuid.Next() }

// NewNodeID returns a fresh node id for a node on host: the host name made
// safe (at most 32 characters) and a random suffix, so a restarted node
// never takes over the subject (and the lost sessions) of its earlier life.
func NewNodeID(host string) string {
	var b strings.Builder
	for _, r := range host {
		if b.Len() == 32 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		b.WriteString("node")
	}
	return b.String() + "-" + nuid.Next()
}

// PoolSettings configure a pool's stream and its shared consumer. Zero
// fields take the Default* values. MaxDeliver is how many deliveries a
// batch may use (-1: no limit); the consumers get one delivery more, the
// one a node answers with ErrRedelivered instead of running the batch.
type PoolSettings struct {
	AckWait       time.Duration
	MaxDeliver    int
	MaxAckPending int
}

func (s PoolSettings) withDefaults() PoolSettings {
	if s.AckWait <= 0 {
		s.AckWait = DefaultAckWait
	}
	if s.MaxDeliver == 0 {
		s.MaxDeliver = DefaultMaxDeliver
	}
	if s.MaxDeliver > 0 {
		s.MaxDeliver++ // the answering delivery
	}
	if s.MaxAckPending <= 0 {
		s.MaxAckPending = DefaultMaxAckPending
	}
	return s
}

// ConsumerConfig is the shared consumer of pool's any-node subject.
func (s PoolSettings) ConsumerConfig(pool string) jetstream.ConsumerConfig {
	s = s.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       AnyDurable,
		FilterSubject: AnySubject(pool),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    s.MaxDeliver,
		MaxAckPending: s.MaxAckPending,
		MaxWaiting:    512,
	}
}

// NodeConsumerConfig is node's own consumer on pool's node subject. It is
// removed by the server a minute after the node stops pulling, so a dead
// node leaves nothing behind.
func (s PoolSettings) NodeConsumerConfig(pool, node string) jetstream.ConsumerConfig {
	s = s.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:           NodeDurable(node),
		FilterSubject:     NodeSubject(pool, node),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           s.AckWait,
		MaxDeliver:        s.MaxDeliver,
		MaxAckPending:     s.MaxAckPending,
		InactiveThreshold: time.Minute,
	}
}

func poolStreamConfig(pool string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       StreamName(pool),
		Subjects:   []string{"slither.pool." + pool + ".>"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Discard:    jetstream.DiscardNew,
		MaxAge:     retention,
		Duplicates: 2 * time.Minute,
	}
}

// EnsurePool creates pool's work stream and shared consumer if they are
// missing. With update set (coordinators) an existing consumer takes s;
// without (nodes) an existing one is left as it is, so nodes never fight a
// coordinator over settings.
func EnsurePool(ctx context.Context, js jetstream.JetStream, pool string, s PoolSettings, update bool) (jetstream.Stream, jetstream.Consumer, error) {
	if err := ValidName(pool); err != nil {
		return nil, nil, err
	}
	st, err := ensureStream(ctx, js, poolStreamConfig(pool))
	if err != nil {
		return nil, nil, err
	}
	cc := s.ConsumerConfig(pool)
	var c jetstream.Consumer
	if update {
		c, err = st.CreateOrUpdateConsumer(ctx, cc)
	} else if c, err = st.Consumer(ctx, cc.Durable); errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = st.CreateConsumer(ctx, cc)
		if err != nil { // another party created it first
			c, err = st.Consumer(ctx, cc.Durable)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("remote: consumer %s of stream %s: %w", cc.Durable, StreamName(pool), err)
	}
	return st, c, nil
}

// EnsureResults creates the results stream if it is missing.
func EnsureResults(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return ensureStream(ctx, js, jetstream.StreamConfig{
		Name:       ResultsStream,
		Subjects:   []string{"slither.res.>"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     retention,
		Duplicates: 2 * time.Minute,
	})
}

// ResultConsumerConfig is coordinator coord's consumer of its results. A
// coordinator that dies without deleting it leaves it for ten minutes, so
// a brief disconnect loses nothing.
func ResultConsumerConfig(coord string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:           ResultDurable(coord),
		FilterSubject:     ResultSubject(coord),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           30 * time.Second,
		MaxDeliver:        -1,
		MaxAckPending:     DefaultMaxAckPending,
		InactiveThreshold: 10 * time.Minute,
	}
}

// EnsureNodes opens the nodes bucket, creating it with ttl (0 =
// DefaultNodeTTL) if it is missing. Expired entries leave a purge marker,
// so a watcher sees a dead node go. The bucket is on file storage: a NATS
// restart must not erase it under the nodes' heartbeats.
func EnsureNodes(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, NodesBucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("remote: nodes bucket: %w", err)
	}
	if ttl <= 0 {
		ttl = DefaultNodeTTL
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: NodesBucket, TTL: ttl, History: 1, Storage: jetstream.FileStorage, LimitMarkerTTL: time.Second,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, NodesBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("remote: creating nodes bucket: %w", err)
	}
	return kv, nil
}

// EnsurePayloads opens the payload object store, creating it if missing.
func EnsurePayloads(ctx context.Context, js jetstream.JetStream) (jetstream.ObjectStore, error) {
	obs, err := js.ObjectStore(ctx, PayloadBucket)
	if err == nil {
		return obs, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("remote: payload bucket: %w", err)
	}
	obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: PayloadBucket, TTL: retention, Storage: jetstream.FileStorage})
	if errors.Is(err, jetstream.ErrBucketExists) {
		obs, err = js.ObjectStore(ctx, PayloadBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("remote: creating payload bucket: %w", err)
	}
	return obs, nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, cfg.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("remote: stream %s: %w", cfg.Name, err)
	}
	return st, nil
}
