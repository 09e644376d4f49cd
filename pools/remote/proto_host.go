package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/internal/textcut"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
)

// Host calls (slither.view and slither.host_call from Python on a node) go
// to the coordinator that submitted the batch as core NATS request/reply
// on HostSubject(coord): a frame like a batch's, bounded by the server's
// max payload (no object store: a view that returns megabytes belongs in
// the batch).

type hostBody struct {
	Name    string          `json:"n"`
	Args    json.RawMessage `json:"a"`
	Session string          `json:"s,omitempty"`
	Worker  int             `json:"w"`
	Pid     int             `json:"p"`
	Pool    string          `json:"k,omitempty"`
	// Deadline is the calling batch's deadline, Unix nanoseconds (0:
	// none): the coordinator bounds the host function by it.
	Deadline int64 `json:"d,omitempty"`
}

type hostReplyBody struct {
	Value json.RawMessage `json:"v,omitempty"`
	Err   string          `json:"e,omitempty"`
}

// EncodeHostCall encodes a host call for a request to HostSubject(coord);
// deadline (zero: none) is the calling batch's.
func (c *Codec) EncodeHostCall(call pools.HostCall, deadline time.Time) ([]byte, error) {
	var e wire.Encoder
	if err := e.List(call.Args); err != nil {
		return nil, fmt.Errorf("remote: host call %q: %w", call.Name, err)
	}
	b := hostBody{Name: call.Name, Args: e.Buf, Session: call.Session, Worker: call.Worker, Pid: call.Pid, Pool: string(call.Pool)}
	if !deadline.IsZero() {
		b.Deadline = deadline.UnixNano()
	}
	hdr, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("remote: host call %q: %w", call.Name, err)
	}
	return c.frame(hdr, e.Atts, "host call "+call.Name)
}

// DecodeHostCall decodes a host call request and its caller's deadline
// (zero: none); errors match ErrMalformed.
func (c *Codec) DecodeHostCall(data []byte) (pools.HostCall, time.Time, error) {
	hdr, atts, err := c.body(context.Background(), "", data)
	if err != nil {
		return pools.HostCall{}, time.Time{}, err
	}
	var b hostBody
	if err := json.Unmarshal(hdr, &b); err != nil {
		return pools.HostCall{}, time.Time{}, fmt.Errorf("%w: host call header: %w", ErrMalformed, err)
	}
	args, err := decodeList(b.Args, atts)
	if err != nil {
		return pools.HostCall{}, time.Time{}, fmt.Errorf("%w: host call %q arguments: %w", ErrMalformed, b.Name, err)
	}
	var dl time.Time
	if b.Deadline > 0 {
		dl = time.Unix(0, b.Deadline)
	}
	return pools.HostCall{Name: b.Name, Args: args, Session: b.Session, Worker: b.Worker, Pid: b.Pid, Pool: pools.Kind(b.Pool)}, dl, nil
}

// EncodeHostReply encodes a host function's answer. A value that cannot be
// encoded, or is too big for one message, becomes an error reply saying so.
func (c *Codec) EncodeHostReply(v any, err error) []byte {
	var body hostReplyBody
	var atts [][]byte
	if err != nil {
		body.Err = err.Error()
	} else {
		var e wire.Encoder
		if err := e.List([]any{v}); err != nil {
			body.Err = err.Error()
		} else {
			body.Value, atts = e.Buf, e.Atts
		}
	}
	hdr, _ := json.Marshal(body) // strings and raw JSON only: cannot fail
	data, ferr := c.frame(hdr, atts, "host call result")
	if ferr != nil {
		if body.Err != "" {
			body.Err = textcut.Bytes(body.Err, 4096)
			hdr, _ = json.Marshal(hostReplyBody{Err: body.Err})
			data, _ = c.frame(hdr, nil, "host call error")
			return data
		}
		return c.EncodeHostReply(nil, ferr)
	}
	return data
}

// DecodeHostReply decodes a host call's answer: its value, or the host
// function's error (its text, as Python will see it).
func (c *Codec) DecodeHostReply(data []byte) (any, error) {
	hdr, atts, err := c.body(context.Background(), "", data)
	if err != nil {
		return nil, err
	}
	var b hostReplyBody
	if err := json.Unmarshal(hdr, &b); err != nil {
		return nil, fmt.Errorf("%w: host reply header: %w", ErrMalformed, err)
	}
	if b.Err != "" {
		return nil, errors.New(b.Err)
	}
	l, err := decodeList(b.Value, atts)
	if err != nil || len(l) != 1 {
		return nil, fmt.Errorf("%w: host reply value: %v", ErrMalformed, err)
	}
	return l[0], nil
}

// frame frames a core-NATS body, which must fit one message.
func (c *Codec) frame(hdr []byte, atts [][]byte, what string) ([]byte, error) {
	limit := min(c.limit(), int(c.Conn.MaxPayload())-headerMargin)
	var buf bytes.Buffer
	if _, err := wire.WriteFrameLimit(&buf, nil, hdr, atts, limit); err != nil {
		return nil, fmt.Errorf("%w: %s does not fit a NATS message (limit %d bytes): %w", ErrPayloadTooLarge, what, limit, err)
	}
	return buf.Bytes(), nil
}

// Advert is what a node says of itself in the nodes bucket, refreshed
// every heartbeat. It comes from another machine: ReadNodes and ParseAdvert
// bound and check it.
type Advert struct {
	Node      string                `json:"node"`
	Host      string                `json:"host"`
	Pid       int                   `json:"pid"`
	Version   string                `json:"version"`
	Started   time.Time             `json:"started"`
	Updated   time.Time             `json:"updated"`
	Heartbeat time.Duration         `json:"heartbeat"`
	Draining  bool                  `json:"draining"`
	Pools     map[string]PoolAdvert `json:"pools"`
}

// PoolAdvert is one pool a node serves.
type PoolAdvert struct {
	Kind       string `json:"kind"` // the node-local kind: "router", "thread", "process"
	Capacity   int    `json:"capacity"`
	Running    int    `json:"running"`
	Waiting    int    `json:"waiting"`
	GILEnabled bool   `json:"gil_enabled"`
	Calls      uint64 `json:"calls"`
	Items      uint64 `json:"items"`
	Errors     uint64 `json:"errors"`
}

// Bounds on an advert: it is read by every coordinator.
const (
	maxAdvertBytes = 64 << 10
	maxAdvertPools = 256
	// MaxNodeCapacity caps what one node may advertise for one pool.
	MaxNodeCapacity = 4096
)

// ParseAdvert decodes and checks one advert; errors match ErrMalformed.
func ParseAdvert(data []byte) (Advert, error) {
	var a Advert
	if len(data) > maxAdvertBytes {
		return a, fmt.Errorf("%w: advert of %d bytes (limit %d)", ErrMalformed, len(data), maxAdvertBytes)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("%w: advert: %w", ErrMalformed, err)
	}
	if err := ValidName(a.Node); err != nil {
		return a, fmt.Errorf("%w: advert node id: %w", ErrMalformed, err)
	}
	if len(a.Pools) > maxAdvertPools {
		return a, fmt.Errorf("%w: advert of node %s lists %d pools (limit %d)", ErrMalformed, a.Node, len(a.Pools), maxAdvertPools)
	}
	for name, p := range a.Pools {
		if ValidName(name) != nil || p.Capacity < 0 || p.Capacity > MaxNodeCapacity || p.Running < 0 || p.Waiting < 0 {
			return a, fmt.Errorf("%w: advert of node %s: pool %q capacity %d running %d waiting %d", ErrMalformed, a.Node, name, p.Capacity, p.Running, p.Waiting)
		}
	}
	return a, nil
}

// ReadNodes returns every node advertised in the nodes bucket, sorted by
// id; a malformed advert is skipped (and reported in the error, joined,
// after the good ones). A missing bucket is no nodes.
func ReadNodes(ctx context.Context, js jetstream.JetStream) ([]Advert, error) {
	kv, err := js.KeyValue(ctx, NodesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remote: nodes bucket: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("remote: listing nodes: %w", err)
	}
	var out []Advert
	var errs []error
	seen := map[string]bool{}
	for k := range keys.Keys() {
		if seen[k] { // a listing may repeat a key written meanwhile
			continue
		}
		seen[k] = true
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // aged out between the listing and the read
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remote: reading node %q: %w", k, err))
			continue
		}
		a, err := ParseAdvert(e.Value())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, a)
	}
	// The lister stops its watcher itself once it has listed every key;
	// Stop only matters when the loop ends early, so its error is noise.
	_ = keys.Stop()
	sortAdverts(out)
	return out, errors.Join(errs...)
}

func sortAdverts(as []Advert) {
	slices.SortFunc(as, func(a, b Advert) int { return strings.Compare(a.Node, b.Node) })
}
