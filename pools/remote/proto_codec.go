package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
)

// headerMargin is what a message's headers may take of the server's max
// payload: a body bigger than MaxPayload-headerMargin goes through the
// object store.
const headerMargin = 4 << 10

// Call is one batch (or control call) on its way from a coordinator to a
// node.
type Call struct {
	ID    string // batch id, also the message's Nats-Msg-Id
	Coord string // the coordinator that waits for the reply
	Pool  string
	// Node, when set, addresses one node (a pinned session's batch or a
	// control call) instead of any node.
	Node  string
	Batch pools.Batch
	// Deadline is the caller's deadline (zero: none).
	Deadline time.Time
	// Trace is the submitting span, so spans on the node join its trace.
	Trace trace.SpanContext
	// Control is "" for a batch or ControlCloseSession (Batch.Session names
	// the session).
	Control string
	// Object is the payload object holding the body, when it was too big
	// for a message ("" otherwise). The coordinator deletes it once the
	// batch has ended.
	Object string
}

// Reply is a node's answer to a Call.
type Reply struct {
	ID      string // the Call's id
	Node    string // the node that ran it
	Worker  int    // the node-local worker index
	Pid     int    // the node-local worker's process id
	Service time.Duration
	// Deliveries is how many times the batch had been delivered when this
	// node ran it (more than 1: an earlier node died or lost its lease).
	Deliveries int
	Results    []any
	// Err is the batch's failure; Results is then nil. DecodeReply returns
	// a *pools.PythonError, *pools.ResultCountError, *ConversionError or a
	// *NodeError matching the pools error it stands for.
	Err error
	// Object names the payload object that held the body ("" when none);
	// the coordinator deletes it once decoded.
	Object string
}

// Codec encodes and decodes calls, replies and host calls. Bodies bigger
// than the connection's max payload go through the payload object store,
// transparently; bodies bigger than MaxPayload fail with
// ErrPayloadTooLarge. Its methods are safe for concurrent use; the zero
// value is not usable: set Conn and JS.
type Codec struct {
	Conn *nats.Conn
	JS   jetstream.JetStream
	// MaxPayload bounds an encoded body, object store included; 0 =
	// DefaultMaxPayload.
	MaxPayload int

	mu  sync.Mutex
	obs jetstream.ObjectStore
}

func (c *Codec) limit() int {
	if c.MaxPayload > 0 {
		return c.MaxPayload
	}
	return DefaultMaxPayload
}

type callBody struct {
	Module   string          `json:"m"`
	Function string          `json:"f"`
	Items    json.RawMessage `json:"v"`
}

// EncodeCall returns call as a message ready to publish (its Nats-Msg-Id
// header is call.ID). When the body went to the payload object store,
// msg.Header.Get(HeaderObject) names the object, which the coordinator
// deletes once the batch has ended.
func (c *Codec) EncodeCall(ctx context.Context, call Call) (*nats.Msg, error) {
	var e wire.Encoder
	if err := e.List(call.Batch.Items); err != nil {
		return nil, fmt.Errorf("remote: batch %s.%s: %w", call.Batch.Module, call.Batch.Function, err)
	}
	hdr, err := json.Marshal(callBody{Module: call.Batch.Module, Function: call.Batch.Function, Items: e.Buf})
	if err != nil {
		return nil, fmt.Errorf("remote: encoding batch: %w", err)
	}
	subj := AnySubject(call.Pool)
	if call.Node != "" {
		subj = NodeSubject(call.Pool, call.Node)
	}
	m := nats.NewMsg(subj)
	m.Header.Set(jetstream.MsgIDHeader, call.ID)
	m.Header.Set(HeaderBatch, call.ID)
	m.Header.Set(HeaderCoord, call.Coord)
	if s := call.Batch.Session; s != "" {
		m.Header.Set(HeaderSession, s)
		if call.Batch.Unpinned {
			m.Header.Set(HeaderUnpinned, "1")
		}
	}
	if call.Batch.Route != pools.Auto {
		m.Header.Set(HeaderRoute, strconv.Itoa(int(call.Batch.Route)))
	}
	if !call.Deadline.IsZero() {
		m.Header.Set(HeaderDeadline, strconv.FormatInt(call.Deadline.UnixNano(), 10))
	}
	if call.Trace.IsValid() {
		m.Header.Set(HeaderTrace, traceparent(call.Trace))
	}
	if call.Control != "" {
		m.Header.Set(HeaderControl, call.Control)
	}
	if err := c.setBody(ctx, m, call.ID+".in", hdr, e.Atts); err != nil {
		return nil, fmt.Errorf("remote: batch %s.%s: %w", call.Batch.Module, call.Batch.Function, err)
	}
	return m, nil
}

// DecodeCall decodes a call from a message's headers and data. Errors
// match ErrMalformed or ErrPayloadTooLarge; Call.ID and Call.Coord are set
// whenever their headers were readable, so a node can still send an error
// reply.
func (c *Codec) DecodeCall(ctx context.Context, h nats.Header, data []byte) (Call, error) {
	call := Call{ID: h.Get(HeaderBatch), Coord: h.Get(HeaderCoord), Control: h.Get(HeaderControl), Object: h.Get(HeaderObject)}
	call.Batch.Session = h.Get(HeaderSession)
	call.Batch.Unpinned = h.Get(HeaderUnpinned) == "1"
	if call.ID == "" || len(call.ID) > 200 {
		return call, fmt.Errorf("%w: batch id header %q", ErrMalformed, call.ID)
	}
	if err := ValidName(call.Coord); err != nil {
		return call, fmt.Errorf("%w: coordinator header: %w", ErrMalformed, err)
	}
	if r := h.Get(HeaderRoute); r != "" {
		n, err := strconv.Atoi(r)
		if err != nil || n < int(pools.Auto) || n > int(pools.Process) {
			return call, fmt.Errorf("%w: route header %q", ErrMalformed, r)
		}
		call.Batch.Route = pools.Route(n)
	}
	if d := h.Get(HeaderDeadline); d != "" {
		ns, err := strconv.ParseInt(d, 10, 64)
		if err != nil {
			return call, fmt.Errorf("%w: deadline header %q", ErrMalformed, d)
		}
		call.Deadline = time.Unix(0, ns)
	}
	if tp := h.Get(HeaderTrace); tp != "" {
		call.Trace = parseTraceparent(tp) // an unreadable trace is dropped, not fatal
	}
	hdr, atts, err := c.body(ctx, call.Object, data)
	if err != nil {
		return call, err
	}
	var b callBody
	if err := json.Unmarshal(hdr, &b); err != nil {
		return call, fmt.Errorf("%w: batch header: %w", ErrMalformed, err)
	}
	call.Batch.Module, call.Batch.Function = b.Module, b.Function
	if call.Control == "" {
		if err := call.Batch.Validate(); err != nil {
			return call, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		items, err := decodeList(b.Items, atts)
		if err != nil {
			return call, fmt.Errorf("%w: batch items: %w", ErrMalformed, err)
		}
		call.Batch.Items = items
	}
	return call, nil
}

type replyBody struct {
	Values  json.RawMessage `json:"v,omitempty"`
	Err     *errorBody      `json:"e,omitempty"`
	Worker  int             `json:"w"`
	Pid     int             `json:"p"`
	Service int64           `json:"s"` // nanoseconds
	Deliv   int             `json:"d,omitempty"`
}

// EncodeReply returns r as a message for ResultSubject(coord), to publish
// with jetstream.WithMsgID(ReplyMsgID(r.ID)). Results that cannot be
// encoded (or are too large) become an error reply, so the caller always
// hears back.
func (c *Codec) EncodeReply(ctx context.Context, coord string, r Reply) (*nats.Msg, error) {
	m := nats.NewMsg(ResultSubject(coord))
	m.Header.Set(jetstream.MsgIDHeader, ReplyMsgID(r.ID))
	m.Header.Set(HeaderBatch, r.ID)
	m.Header.Set(HeaderNode, r.Node)
	body := replyBody{Worker: r.Worker, Pid: r.Pid, Service: int64(r.Service), Deliv: r.Deliveries}
	var atts [][]byte
	if r.Err != nil {
		body.Err = encodeError(r.Err)
	} else {
		var e wire.Encoder
		if err := e.List(r.Results); err != nil {
			body.Err = encodeError(err)
		} else {
			body.Values, atts = e.Buf, e.Atts
		}
	}
	hdr, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("remote: encoding reply: %w", err)
	}
	// Named per node and delivery: two nodes answering one redelivered
	// batch must not overwrite each other's object.
	if err := c.setBody(ctx, m, fmt.Sprintf("%s.out.%s.%d", r.ID, r.Node, r.Deliveries), hdr, atts); err != nil {
		if body.Err != nil {
			return nil, err
		}
		// Too large or the object store failed: say so to the caller.
		return c.EncodeReply(ctx, coord, Reply{ID: r.ID, Node: r.Node, Worker: r.Worker, Pid: r.Pid, Service: r.Service,
			Deliveries: r.Deliveries, Err: fmt.Errorf("results of batch %s: %w", r.ID, err)})
	}
	return m, nil
}

// ReplyMsgID is the Nats-Msg-Id of the reply to batch id: the results
// stream drops a second reply to the same batch within its dedupe window.
func ReplyMsgID(id string) string { return "r-" + id }

// DecodeReply decodes a reply message. Errors match ErrMalformed or
// ErrPayloadTooLarge; Reply.ID is set whenever its header was readable.
func (c *Codec) DecodeReply(ctx context.Context, h nats.Header, data []byte) (Reply, error) {
	r := Reply{ID: h.Get(HeaderBatch), Node: h.Get(HeaderNode), Object: h.Get(HeaderObject)}
	if r.ID == "" {
		return r, fmt.Errorf("%w: reply without a batch id", ErrMalformed)
	}
	hdr, atts, err := c.body(ctx, r.Object, data)
	if err != nil {
		return r, err
	}
	var b replyBody
	if err := json.Unmarshal(hdr, &b); err != nil {
		return r, fmt.Errorf("%w: reply header: %w", ErrMalformed, err)
	}
	r.Worker, r.Pid, r.Service, r.Deliveries = b.Worker, b.Pid, time.Duration(b.Service), b.Deliv
	if b.Err != nil {
		r.Err = b.Err.decode(r.Node)
		return r, nil
	}
	r.Results, err = decodeList(b.Values, atts)
	if err != nil {
		return r, fmt.Errorf("%w: results: %w", ErrMalformed, err)
	}
	return r, nil
}

// setBody frames hdr and atts into m's data, or into the payload object
// name when that is too big for one message.
func (c *Codec) setBody(ctx context.Context, m *nats.Msg, name string, hdr []byte, atts [][]byte) error {
	var buf bytes.Buffer
	if _, err := wire.WriteFrameLimit(&buf, nil, hdr, atts, c.limit()); err != nil {
		return fmt.Errorf("%w: %w (limit %d bytes)", ErrPayloadTooLarge, err, c.limit())
	}
	server := int(c.Conn.MaxPayload())
	room := max(server-headerMargin, server/2) // a tiny server limit must not wrap
	if buf.Len() <= room {
		m.Data = buf.Bytes()
		return nil
	}
	obs, err := c.objects(ctx)
	if err != nil {
		return err
	}
	// Chunks must fit a message too (the default chunk is 128 KiB).
	meta := jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(min(128<<10, room))}}
	if _, err := obs.Put(ctx, meta, bytes.NewReader(buf.Bytes())); err != nil {
		return fmt.Errorf("remote: storing a %d-byte payload: %w", buf.Len(), err)
	}
	m.Header.Set(HeaderObject, name)
	m.Data = nil
	return nil
}

// body returns the frame of a message: its data, or the payload object it
// names (never more than MaxPayload bytes read).
func (c *Codec) body(ctx context.Context, object string, data []byte) ([]byte, [][]byte, error) {
	if object != "" {
		if len(data) != 0 {
			return nil, nil, fmt.Errorf("%w: both a body and a payload object", ErrMalformed)
		}
		obs, err := c.objects(ctx)
		if err != nil {
			return nil, nil, err
		}
		info, err := obs.GetInfo(ctx, object)
		if err != nil {
			return nil, nil, fmt.Errorf("remote: payload object %q: %w", object, err)
		}
		if info.Size > uint64(c.limit()) {
			return nil, nil, fmt.Errorf("%w: payload object %q holds %d bytes (limit %d)", ErrPayloadTooLarge, object, info.Size, c.limit())
		}
		if data, err = obs.GetBytes(ctx, object); err != nil {
			return nil, nil, fmt.Errorf("remote: payload object %q: %w", object, err)
		}
	}
	hdr, atts, err := wire.ReadFrameLimit(bytes.NewReader(data), c.limit())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return hdr, atts, nil
}

// DeleteObject removes a payload object once its batch has ended; a
// missing one is not an error. Objects left behind age out after a day.
func (c *Codec) DeleteObject(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	obs, err := c.objects(ctx)
	if err != nil {
		return err
	}
	if err := obs.Delete(ctx, name); err != nil && !isNotFound(err) {
		return fmt.Errorf("remote: deleting payload object %q: %w", name, err)
	}
	return nil
}

func (c *Codec) objects(ctx context.Context) (jetstream.ObjectStore, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.obs != nil {
		return c.obs, nil
	}
	obs, err := EnsurePayloads(ctx, c.JS)
	if err != nil {
		return nil, err
	}
	c.obs = obs
	return obs, nil
}

func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, jetstream.ErrNoObjectsFound))
}

// decodeList decodes a tagged JSON list (the wire package's encoding).
func decodeList(raw json.RawMessage, atts [][]byte) ([]any, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("no list")
	}
	v, err := wire.Decode(raw, atts)
	if err != nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("a %T, not a list", v)
	}
	return l, nil
}

func traceparent(sc trace.SpanContext) string {
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

func parseTraceparent(s string) trace.SpanContext {
	// 00-<32 hex>-<16 hex>-<2 hex>
	if len(s) != 55 || s[:3] != "00-" || s[35] != '-' || s[52] != '-' {
		return trace.SpanContext{}
	}
	tid, err1 := trace.TraceIDFromHex(s[3:35])
	sid, err2 := trace.SpanIDFromHex(s[36:52])
	flags, err3 := strconv.ParseUint(s[53:], 16, 8)
	if err1 != nil || err2 != nil || err3 != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags), Remote: true})
}
