package node_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/internal/pyhold"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
	"github.com/slither-go/slither/node"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

// wait bounds every wait of these tests: long enough for a loaded machine,
// reached only when something is broken.
const wait = 30 * time.Second

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// coord plays a coordinator with the protocol's own codec: it publishes
// calls and reads its replies, with no remote pool in between.
type coord struct {
	t       *testing.T
	srv     *natsdev.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	codec   *remote.Codec
	id      string
	results jetstream.Consumer
	seq     int
	dir     string // on the nodes' Python path: modules a test writes
}

// newCoord starts a NATS server and makes pool's stream and shared
// consumer with s (as a coordinator does, so its settings win) and the
// coordinator's results consumer.
func newCoord(t *testing.T, pool string, s remote.PoolSettings) *coord {
	t.Helper()
	return newCoordOn(t, pool, s, natsdev.Options{})
}

// newCoordOn is newCoord with a server started with opts.
func newCoordOn(t *testing.T, pool string, s remote.PoolSettings, opts natsdev.Options) *coord {
	t.Helper()
	ctx := context.Background()
	srv := natsdevtest.Start(t, opts)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	c := &coord{t: t, srv: srv, nc: nc, js: js, codec: &remote.Codec{Conn: nc, JS: js}, id: remote.NewCoordID(), dir: t.TempDir()}
	_, _, err = remote.EnsurePool(ctx, js, pool, s, true)
	require.NoError(t, err)
	rs, err := remote.EnsureResults(ctx, js)
	require.NoError(t, err)
	c.results, err = rs.CreateOrUpdateConsumer(ctx, remote.ResultConsumerConfig(c.id))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "nodehold.py"), []byte(pyhold.Source), 0o600))
	return c
}

// call is a new call of b to pool (to node, when given).
func (c *coord) call(pool, node string, b pools.Batch) remote.Call {
	c.seq++
	return remote.Call{ID: c.id + "-" + strconv.Itoa(c.seq), Coord: c.id, Pool: pool, Node: node, Batch: b}
}

// publish publishes call and returns its stream sequence.
func (c *coord) publish(call remote.Call) uint64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	msg, err := c.codec.EncodeCall(ctx, call)
	require.NoError(c.t, err)
	ack, err := c.js.PublishMsg(ctx, msg)
	require.NoError(c.t, err)
	return ack.Sequence
}

// reply waits for the next reply and acknowledges it.
func (c *coord) reply() remote.Reply {
	c.t.Helper()
	m, err := c.results.Next(jetstream.FetchMaxWait(wait))
	require.NoError(c.t, err, "no reply")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	r, err := c.codec.DecodeReply(ctx, m.Headers(), m.Data())
	require.NoError(c.t, err)
	require.NoError(c.t, m.Ack())
	return r
}

// acks subscribes to the acknowledgements nodes send for pool's consumer
// durable: each is "+ACK", "+WPI" (progress), "-NAK..." or "+TERM...".
func (c *coord) acks(pool, durable string) <-chan string {
	c.t.Helper()
	ch := make(chan string, 1024)
	sub, err := c.nc.Subscribe("$JS.ACK."+remote.StreamName(pool)+"."+durable+".>", func(m *nats.Msg) {
		select {
		case ch <- string(m.Data):
		default:
		}
	})
	require.NoError(c.t, err)
	require.NoError(c.t, c.nc.Flush())
	c.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

// nextAck returns the next acknowledgement of kind prefix ("+ACK",
// "+WPI", "+TERM", "-NAK"), skipping others.
func nextAck(t *testing.T, ch <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case a := <-ch:
			if strings.HasPrefix(a, prefix) {
				return a
			}
		case <-timeout:
			t.Fatalf("no %s acknowledgement", prefix)
		}
	}
}

// consumerInfo reads a consumer's state.
func (c *coord) consumerInfo(pool, durable string) *jetstream.ConsumerInfo {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cons, err := c.js.Consumer(ctx, remote.StreamName(pool), durable)
	require.NoError(c.t, err)
	info, err := cons.Info(ctx)
	require.NoError(c.t, err)
	return info
}

// streamMsgs is how many messages pool's stream holds.
func (c *coord) streamMsgs(pool string) uint64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := c.js.Stream(ctx, remote.StreamName(pool))
	require.NoError(c.t, err)
	info, err := st.Info(ctx)
	require.NoError(c.t, err)
	return info.State.Msgs
}

// python is the interpreter the nodes' process pools run.
func python() string {
	if p := os.Getenv("SLITHER_TEST_PYTHON"); p != "" {
		return p
	}
	return engine.DefaultPython()
}

// logs records a node's log lines (a slog.Handler).
type logs struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

// count is how many records at level have a message containing msg.
func (l *logs) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := 0
	for _, r := range l.recs {
		if r.Level == level && strings.Contains(r.Message, msg) {
			k++
		}
	}
	return k
}

// startNode starts a node serving the default process pool (workers
// processes, no thread pool) on c's server; the test's cleanup drains it.
func startNode(t *testing.T, c *coord, workers int, mod func(*node.Options)) *node.Node {
	t.Helper()
	testdata, err := filepath.Abs("testdata")
	require.NoError(t, err)
	o := node.Options{
		Engine: engine.Config{
			Paths:   []string{testdata, c.dir},
			Thread:  engine.ThreadConfig{Disabled: true},
			Process: map[string]engine.ProcessConfig{engine.DefaultPool: {Python: python(), Workers: workers}},
		},
		NATS:   remote.ConnOptions{URL: c.srv.URL()},
		Logger: quiet(),
	}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	n, err := node.Start(ctx, o)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}
