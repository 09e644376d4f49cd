package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
	"github.com/slither-go/slither/pools/remote"
)

// codec starts a server (max payload maxPayload, 0 = 1 MiB) and returns a
// codec on a connection to it.
func codec(t *testing.T, maxPayload int) *remote.Codec {
	t.Helper()
	s := natsdevtest.Start(t, natsdev.Options{MaxPayload: maxPayload})
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &remote.Codec{Conn: nc, JS: js}
}

func TestCallRoundTrip(t *testing.T) {
	c := codec(t, 0)
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	in := remote.Call{ID: "C1-7", Coord: "C1", Pool: "cpu", Node: "n-1",
		Batch: pools.Batch{Module: "m", Function: "f", Session: "s-1", Unpinned: true, Route: pools.Process,
			Items: []any{int64(1), "two", []byte{0, 3}, map[string]any{"k": 2.5}, nil, true, big.NewInt(0).Lsh(big.NewInt(1), 80)}},
		Deadline: time.Unix(0, 1_700_000_000_123_456_789),
		Trace:    trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
	}
	m, err := c.EncodeCall(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != remote.NodeSubject("cpu", "n-1") || m.Header.Get(jetstream.MsgIDHeader) != "C1-7" || m.Header.Get(remote.HeaderObject) != "" {
		t.Fatalf("subject %q headers %v", m.Subject, m.Header)
	}
	out, err := c.DecodeCall(context.Background(), m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Coord != in.Coord || !out.Deadline.Equal(in.Deadline) || out.Trace.TraceID() != tid ||
		out.Trace.SpanID() != sid || !out.Trace.IsSampled() || !out.Trace.IsRemote() {
		t.Fatalf("decoded %+v", out)
	}
	b := out.Batch
	if b.Module != "m" || b.Function != "f" || b.Session != "s-1" || !b.Unpinned || b.Route != pools.Process {
		t.Fatalf("batch %+v", b)
	}
	if !reflect.DeepEqual(b.Items[:6], in.Batch.Items[:6]) || b.Items[6].(*big.Int).Cmp(in.Batch.Items[6].(*big.Int)) != 0 {
		t.Fatalf("items %#v", b.Items)
	}
}

func TestReplyRoundTripAndErrors(t *testing.T) {
	c := codec(t, 0)
	ctx := context.Background()
	m, err := c.EncodeReply(ctx, "C1", remote.Reply{ID: "C1-1", Node: "n-1", Worker: 2, Pid: 77, Service: time.Millisecond,
		Deliveries: 2, Results: []any{"a", []byte("b")}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != remote.ResultSubject("C1") || m.Header.Get(jetstream.MsgIDHeader) != remote.ReplyMsgID("C1-1") {
		t.Fatalf("reply message %q %v", m.Subject, m.Header)
	}
	r, err := c.DecodeReply(ctx, m.Header, m.Data)
	if err != nil || r.ID != "C1-1" || r.Node != "n-1" || r.Worker != 2 || r.Pid != 77 || r.Service != time.Millisecond || r.Deliveries != 2 ||
		!reflect.DeepEqual(r.Results, []any{"a", []byte("b")}) {
		t.Fatalf("reply %+v, %v", r, err)
	}

	for _, tc := range []struct {
		err   error
		check func(error) bool
	}{
		{&pools.PythonError{Type: "ValueError", Message: "bad", Traceback: "tb"}, func(e error) bool {
			var pe *pools.PythonError
			return errors.As(e, &pe) && pe.Type == "ValueError" && pe.Message == "bad" && pe.Traceback == "tb"
		}},
		{&pools.ResultCountError{Module: "m", Function: "f", Items: 3, Results: 2}, func(e error) bool {
			var rc *pools.ResultCountError
			return errors.As(e, &rc) && rc.Items == 3 && rc.Results == 2 && errors.Is(e, pools.ErrResultCount)
		}},
		{errors.Join(errors.New("x"), pools.ErrConversion), func(e error) bool { return errors.Is(e, pools.ErrConversion) }}, // not a *ConversionError, still a conversion
		{pools.ErrTimeout, func(e error) bool { return errors.Is(e, pools.ErrTimeout) && strings.Contains(e.Error(), "n-1") }},
		{pools.ErrWorkerCrashed, func(e error) bool {
			return errors.Is(e, pools.ErrWorkerCrashed) && !errors.Is(e, remote.ErrRedelivered)
		}},
		{fmt.Errorf("%w (%w)", remote.ErrRedelivered, pools.ErrWorkerCrashed), func(e error) bool {
			return errors.Is(e, remote.ErrRedelivered) && errors.Is(e, pools.ErrWorkerCrashed)
		}},
		{fmt.Errorf("%w: last cause: %w", pools.ErrPoolFailed, pools.ErrWorkerCrashed), func(e error) bool { return errors.Is(e, pools.ErrPoolFailed) }},
		{pools.ErrSessionLost, func(e error) bool { return errors.Is(e, pools.ErrSessionLost) && !errors.Is(e, pools.ErrWorkerCrashed) }},
		{context.DeadlineExceeded, func(e error) bool { return errors.Is(e, context.DeadlineExceeded) }},
		{errors.New("odd"), func(e error) bool { return e.Error() == "remote node n-1: odd" && !errors.Is(e, pools.ErrTimeout) }},
	} {
		m, err := c.EncodeReply(ctx, "C1", remote.Reply{ID: "C1-2", Node: "n-1", Err: tc.err})
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.DecodeReply(ctx, m.Header, m.Data)
		if err != nil || r.Results != nil || r.Err == nil || !tc.check(r.Err) {
			t.Errorf("%v: decoded %v (%T), %v", tc.err, r.Err, r.Err, err)
		}
	}
	// A result Go cannot encode becomes an error reply, not a lost one.
	m, err = c.EncodeReply(ctx, "C1", remote.Reply{ID: "C1-3", Results: []any{make(chan int)}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.DecodeReply(ctx, m.Header, m.Data); err != nil || !errors.Is(r.Err, pools.ErrConversion) {
		t.Fatalf("unencodable result: %v, %v", r.Err, err)
	}
}

func TestLargePayloadsGoThroughTheObjectStore(t *testing.T) {
	c := codec(t, 64<<10)
	c.MaxPayload = 1 << 20
	ctx := context.Background()
	big := bytes.Repeat([]byte{7}, 300<<10)
	m, err := c.EncodeCall(ctx, remote.Call{ID: "C-1", Coord: "C", Pool: "p", Batch: pools.Batch{Module: "m", Function: "f", Items: []any{big}}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(remote.HeaderObject) != "C-1.in" || len(m.Data) != 0 {
		t.Fatalf("a 300 KiB batch over a 64 KiB server went inline: %v, %d bytes", m.Header, len(m.Data))
	}
	call, err := c.DecodeCall(ctx, m.Header, m.Data)
	if err != nil || !bytes.Equal(call.Batch.Items[0].([]byte), big) || call.Object != "C-1.in" {
		t.Fatalf("decoded %v, object %q", err, call.Object)
	}
	rm, err := c.EncodeReply(ctx, "C", remote.Reply{ID: "C-1", Node: "n", Deliveries: 2, Results: []any{big}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.DecodeReply(ctx, rm.Header, rm.Data)
	if err != nil || r.Object != "C-1.out.n.2" || !bytes.Equal(r.Results[0].([]byte), big) {
		t.Fatalf("reply %v object %q", err, r.Object)
	}
	for _, o := range []string{"C-1.in", "C-1.out.n.2", "C-1.in"} { // deleting twice is fine
		if err := c.DeleteObject(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DecodeCall(ctx, m.Header, m.Data); err == nil {
		t.Fatal("decoded a call whose object was deleted")
	}

	// Over the codec's limit: a clear error going out, an error reply coming back.
	huge := bytes.Repeat([]byte{1}, 2<<20)
	if _, err := c.EncodeCall(ctx, remote.Call{ID: "C-2", Coord: "C", Pool: "p", Batch: pools.Batch{Module: "m", Function: "f", Items: []any{huge}}}); !errors.Is(err, remote.ErrPayloadTooLarge) {
		t.Fatalf("2 MiB batch with a 1 MiB limit: %v", err)
	}
	rm, err = c.EncodeReply(ctx, "C", remote.Reply{ID: "C-2", Results: []any{huge}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.DecodeReply(ctx, rm.Header, rm.Data); err != nil || !errors.Is(r.Err, remote.ErrPayloadTooLarge) {
		t.Fatalf("2 MiB result: %v, %v", r.Err, err)
	}
	// A receiver with a smaller limit refuses a stored object without reading it.
	small := &remote.Codec{Conn: c.Conn, JS: c.JS, MaxPayload: 100 << 10}
	m, err = c.EncodeCall(ctx, remote.Call{ID: "C-3", Coord: "C", Pool: "p", Batch: pools.Batch{Module: "m", Function: "f", Items: []any{big}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.DecodeCall(ctx, m.Header, m.Data); !errors.Is(err, remote.ErrPayloadTooLarge) {
		t.Fatalf("receiver limit: %v", err)
	}
}

func TestDecodeCallRejectsBadHeaders(t *testing.T) {
	c := codec(t, 0)
	ctx := context.Background()
	good, err := c.EncodeCall(ctx, remote.Call{ID: "C-1", Coord: "C", Pool: "p", Batch: pools.Batch{Module: "m", Function: "f", Items: []any{1}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(h nats.Header) []byte{
		"no id":       func(h nats.Header) []byte { h.Del(remote.HeaderBatch); return good.Data },
		"bad coord":   func(h nats.Header) []byte { h.Set(remote.HeaderCoord, "a.b"); return good.Data },
		"bad route":   func(h nats.Header) []byte { h.Set(remote.HeaderRoute, "9"); return good.Data },
		"bad dl":      func(h nats.Header) []byte { h.Set(remote.HeaderDeadline, "soon"); return good.Data },
		"cut body":    func(h nats.Header) []byte { return good.Data[:len(good.Data)-1] },
		"no module":   func(h nats.Header) []byte { return frame(t, `{"f":"f","v":[]}`) },
		"not a list":  func(h nats.Header) []byte { return frame(t, `{"m":"m","f":"f","v":{"a":1}}`) },
		"object+body": func(h nats.Header) []byte { h.Set(remote.HeaderObject, "x"); return good.Data },
	} {
		h := nats.Header{}
		for k, v := range good.Header {
			h[k] = append([]string(nil), v...)
		}
		data := mut(h)
		if _, err := c.DecodeCall(ctx, h, data); !errors.Is(err, remote.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// frame builds a message body with header hdr and no attachments.
func frame(t testing.TB, hdr string) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := wire.WriteFrame(&b, nil, []byte(hdr), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestHostCallRoundTrip(t *testing.T) {
	c := codec(t, 0)
	data, err := c.EncodeHostCall(pools.HostCall{Name: "prices.get", Args: []any{"k", int64(3)}, Session: "s", Worker: 1, Pid: 9, Pool: pools.KindProcess}, time.Unix(0, 42))
	if err != nil {
		t.Fatal(err)
	}
	hc, dl, err := c.DecodeHostCall(data)
	if err != nil || dl.UnixNano() != 42 || hc.Name != "prices.get" || !reflect.DeepEqual(hc.Args, []any{"k", int64(3)}) || hc.Session != "s" || hc.Worker != 1 || hc.Pid != 9 || hc.Pool != pools.KindProcess {
		t.Fatalf("%+v %v", hc, err)
	}
	v, err := c.DecodeHostReply(c.EncodeHostReply(map[string]any{"p": 1.5}, nil))
	if err != nil || !reflect.DeepEqual(v, map[string]any{"p": 1.5}) {
		t.Fatalf("%v %v", v, err)
	}
	if _, err := c.DecodeHostReply(c.EncodeHostReply(nil, errors.New("no such view"))); err == nil || err.Error() != "no such view" {
		t.Fatalf("host error: %v", err)
	}
	// A view result too big for one message says why, and what to do.
	_, err = c.DecodeHostReply(c.EncodeHostReply(bytes.Repeat([]byte{1}, 2<<20), nil))
	if err == nil || !strings.Contains(err.Error(), "does not fit a NATS message") {
		t.Fatalf("oversized view result: %v", err)
	}
}

func TestParseAdvertBounds(t *testing.T) {
	good := `{"node":"h-1","host":"h","pid":3,"pools":{"cpu":{"capacity":4,"running":1}}}`
	a, err := remote.ParseAdvert([]byte(good))
	if err != nil || a.Pools["cpu"].Capacity != 4 {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range []string{
		`{"node":"a.b","pools":{}}`,
		`{"node":"h","pools":{"cpu":{"capacity":-1}}}`,
		`{"node":"h","pools":{"cpu":{"capacity":100000}}}`,
		`{"node":"h","pools":{"c>":{"capacity":1}}}`,
		`[1]`,
		`{"node":"h","host":"` + strings.Repeat("x", 70<<10) + `"}`,
	} {
		if _, err := remote.ParseAdvert([]byte(bad)); !errors.Is(err, remote.ErrMalformed) {
			t.Errorf("%.60s: %v", bad, err)
		}
	}
}

func TestEnsureAndReadNodes(t *testing.T) {
	c := codec(t, 0)
	ctx := context.Background()
	if nodes, err := remote.ReadNodes(ctx, c.JS); err != nil || len(nodes) != 0 {
		t.Fatalf("no bucket: %v %v", nodes, err)
	}
	kv, err := remote.EnsureNodes(ctx, c.JS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.EnsureNodes(ctx, c.JS, time.Second); err != nil { // second caller opens it
		t.Fatal(err)
	}
	for _, v := range []string{`{"node":"b-2","pools":{}}`, `{"node":"a-1","pools":{"p":{"capacity":2}}}`} {
		a, _ := remote.ParseAdvert([]byte(v))
		if _, err := kv.Put(ctx, a.Node, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Put(ctx, "junk", []byte("{")); err != nil {
		t.Fatal(err)
	}
	nodes, err := remote.ReadNodes(ctx, c.JS)
	if !errors.Is(err, remote.ErrMalformed) || len(nodes) != 2 || nodes[0].Node != "a-1" || nodes[1].Node != "b-2" {
		t.Fatalf("%+v %v", nodes, err)
	}
	if err := kv.Delete(ctx, "junk"); err != nil {
		t.Fatal(err)
	}
	if nodes, err := remote.ReadNodes(ctx, c.JS); err != nil || len(nodes) != 2 {
		t.Fatalf("a clean listing: %+v %v", nodes, err)
	}
	// Pools: a node (update=false) then a coordinator (update=true) on one stream.
	if _, _, err := remote.EnsurePool(ctx, c.JS, "p", remote.PoolSettings{}, false); err != nil {
		t.Fatal(err)
	}
	_, cons, err := remote.EnsurePool(ctx, c.JS, "p", remote.PoolSettings{AckWait: 3 * time.Second, MaxDeliver: 2}, true)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil || info.Config.AckWait != 3*time.Second || info.Config.MaxDeliver != 3 { // 2 runs + the answering delivery
		t.Fatalf("%+v %v", info, err)
	}
	_, cons, err = remote.EnsurePool(ctx, c.JS, "p", remote.PoolSettings{AckWait: time.Second}, false)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := cons.Info(ctx); info.Config.AckWait != 3*time.Second {
		t.Fatalf("a node changed the coordinator's settings: %v", info.Config.AckWait)
	}
	if _, _, err := remote.EnsurePool(ctx, c.JS, "bad.name", remote.PoolSettings{}, false); err == nil {
		t.Fatal("invalid pool name accepted")
	}
	if id := remote.NewNodeID("my host.example.com"); remote.ValidName(id) != nil || !strings.HasPrefix(id, "my_host_example_com-") {
		t.Fatalf("node id %q", id)
	}
}
