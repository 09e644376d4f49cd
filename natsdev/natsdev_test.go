package natsdev_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

func connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestStartCloseLeavesNoGoroutine(t *testing.T) {
	s, err := natsdev.Start(natsdev.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "nats://127.0.0.1:") || strings.HasSuffix(s.URL(), ":0") || strings.HasSuffix(s.URL(), ":-1") {
		t.Fatalf("URL = %q, want nats://127.0.0.1:<port>", s.URL())
	}
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s.Close()
	s.Close() // idempotent
	if err := goleak.Find(leaktest.Options()...); err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := nats.Connect(s.URL(), nats.Timeout(time.Second)); err == nil {
		t.Fatal("connect after Close succeeded")
	}
}

func TestStartRequiresDir(t *testing.T) {
	_, err := natsdev.Start(natsdev.Options{})
	if err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Fatalf("Start without Dir: %v, want an error naming Dir", err)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	for name, o := range map[string]natsdev.Options{
		"token with users": {Dir: dir, Token: "t", Users: []natsdev.User{{Name: "u", Password: "p"}}},
		"unnamed user":     {Dir: dir, Users: []natsdev.User{{Password: "p"}}},
		"bad nkey":         {Dir: dir, NKeys: []natsdev.NKeyUser{{PublicKey: "not-a-key"}}},
		"port":             {Dir: dir, Port: 70000},
	} {
		if _, err := natsdev.Start(o); err == nil {
			t.Errorf("%s: Start succeeded", name)
		}
	}
}

func TestPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = natsdev.Start(natsdev.Options{Dir: t.TempDir(), Port: port})
	if err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
	t.Logf("taken port: %v", err)
}

func TestJetStreamWorkQueueDedupe(t *testing.T) {
	s := natsdevtest.Start(t, natsdev.Options{})
	nc := connect(t, s.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "WQ", Subjects: []string{"wq.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	a1, err := js.Publish(ctx, "wq.any", []byte("batch"), jetstream.WithMsgID("run.0"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := js.Publish(ctx, "wq.any", []byte("batch"), jetstream.WithMsgID("run.0"))
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate {
		t.Fatalf("duplicate flags = %v, %v; want false, true", a1.Duplicate, a2.Duplicate)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if info, err = st.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("after ack: %d messages (err %v), want 0: a work queue deletes acked messages", info.State.Msgs, err)
	}
}

func TestRestartKeepsFileStream(t *testing.T) {
	s := natsdevtest.Start(t, natsdev.Options{})
	url := s.URL()
	reconnected := make(chan struct{}, 1)
	nc := connect(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "KEEP", Subjects: []string{"keep.>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, "keep.x", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}

	s.Close()
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.URL() != url {
		t.Fatalf("URL changed across Restart: %s -> %s", url, s.URL())
	}
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("client did not reconnect after Restart")
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("after Restart the stream holds %d messages, want 3", info.State.Msgs)
	}
	// Restart while running works too (stop + start in one call).
	if err := s.Restart(); err != nil {
		t.Fatalf("second Restart: %v", err)
	}
	msg, err := st.GetMsg(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Data) != 1 || msg.Data[0] != 2 {
		t.Fatalf("message 3 = %v, want [2]", msg.Data)
	}
}

func TestPermissions(t *testing.T) {
	s := natsdevtest.Start(t, natsdev.Options{Users: []natsdev.User{
		{Name: "admin", Password: "a"},
		{Name: "narrow", Password: "n", Permissions: natsdev.Permissions{Publish: []string{"pub.>"}, Subscribe: []string{"sub.>"}}},
	}})
	if _, err := nats.Connect(s.URL(), nats.UserInfo("admin", "wrong")); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("bad password: %v, want ErrAuthorization", err)
	}
	errs := make(chan error, 4)
	nc := connect(t, s.URL(), nats.UserInfo("narrow", "n"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default: // never block nats.go's callback goroutine
			}
		}))
	if _, err := nc.SubscribeSync("other.x"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("async error %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no permissions violation for a denied subscription")
	}
}

// recordHandler sends every slog record's message to a channel.
type recordHandler struct{ msgs chan string }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.msgs <- r.Level.String() + " " + r.Message:
	default:
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func TestLoggerGetsServerWarnings(t *testing.T) {
	h := recordHandler{msgs: make(chan string, 64)}
	s := natsdevtest.Start(t, natsdev.Options{MaxPayload: 16 << 20, Logger: slog.New(h)})
	nc := connect(t, s.URL())
	if got := nc.MaxPayload(); got != 16<<20 {
		t.Fatalf("MaxPayload = %d, want %d", got, 16<<20)
	}
	s.Close()
	close(h.msgs)
	var all []string
	for m := range h.msgs {
		all = append(all, m)
		if strings.HasPrefix(m, "INFO") || strings.HasPrefix(m, "DEBUG") {
			t.Errorf("record below warn level: %q", m)
		}
	}
	if !strings.Contains(strings.Join(all, "\n"), "WARN Maximum payloads over") {
		t.Fatalf("no max-payload warning among %q", all)
	}
}

func TestStartReportsStoreError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := natsdev.Start(natsdev.Options{Dir: file})
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Fatalf("Start with a file as store: %v, want a JetStream error", err)
	}
	t.Logf("store is a file: %v", err)
}
