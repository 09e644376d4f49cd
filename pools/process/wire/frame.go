// Package wire is the process pool's protocol with its Python workers
// (python/slither/worker.py and _wire.py hold the other half and document
// the messages): length-prefixed frames, each a JSON header plus raw binary
// attachments, so byte strings never travel as base64; and the tagged JSON
// value encoding that keeps the same Go<->Python mapping as the embedded
// pool (NaN and infinities, big integers, bytes, dicts whose keys look like
// tags). Both sides bound a frame (DefaultMaxFrame unless configured),
// check that its parts add up before reading them, and treat a malformed
// frame as the end of the stream.
//
// It is pure Go: the process pool builds with CGO_ENABLED=0.
package wire

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// Protocol is the version both sides must speak; the worker's hello says
// which it speaks. 2: byte strings in shared memory ({"$a": ...}, which
// version 1 carried as a one-key dict).
const Protocol = 2

// DefaultMaxFrame is the frame limit when none is given: 256 MiB. A frame
// carries one batch (or one result, or one host call) whole, header and
// attachments together.
const DefaultMaxFrame = 256 << 20

// MaxFrameLimit is the highest limit a frame can have: its length travels as
// a u32.
const MaxFrameLimit = math.MaxUint32

// minFrame is the smallest frame: the header's length and the number of
// attachments.
const minFrame = 8

// ErrFrame is matched (errors.Is) by the errors of a malformed frame: one
// whose parts do not add up or that exceeds the reader's limit. The stream
// cannot be resynchronised after one.
var ErrFrame = errors.New("wire: malformed frame")

// ErrFrameTooLarge is matched by the error of a frame over the limit, on
// either side: WriteFrame refuses to send it (writing nothing, so the
// stream stays usable) and ReadFrame refuses to read it (an ErrFrame too).
var ErrFrameTooLarge = errors.New("wire: frame too large")

// Message types.
const (
	THello        = "hello"
	TCall         = "call"
	TResult       = "result"
	THost         = "host"
	TReply        = "reply"
	TCancel       = "cancel"
	TCloseSession = "close_session"
	TShutdown     = "shutdown"
)

// Inbound is any message a worker sends; which fields are set depends on T.
type Inbound struct {
	T  string          `json:"t"`
	ID uint64          `json:"id"` // call id (result, host)
	H  uint64          `json:"h"`  // host request id (host)
	N  string          `json:"n"`  // host function name (host)
	V  json.RawMessage `json:"v"`  // result value or host args, tagged JSON
	E  *PyError        `json:"e"`  // a failed call (result)

	// hello
	Proto        int    `json:"proto"`
	Pid          int    `json:"pid"`
	Version      string `json:"version"`
	Executable   string `json:"executable"`
	FreeThreaded bool   `json:"free_threaded"`
	GILEnabled   bool   `json:"gil_enabled"`
	Threads      int    `json:"threads"`
	MaxFrame     int    `json:"max_frame"` // the frame limit the worker reads and writes with
	Arena        bool   `json:"arena"`     // it mapped the shared memory the pool gave it
}

// PyError is a failed call as the worker reports it.
type PyError struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	Traceback string `json:"traceback"`
	// Kind is "exception", "cancelled" (slither.Cancelled was raised by a
	// cancel message) or "conversion" (the result has no Go mapping).
	Kind string `json:"kind"`
	// Path and Reason split Message for a conversion: where in the result
	// list ("[3][name]") and what is wrong, as a ConversionError has them.
	Path   string `json:"path,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ParseInbound decodes a worker message header.
func ParseInbound(hdr []byte) (*Inbound, error) {
	m := new(Inbound)
	if err := json.Unmarshal(hdr, m); err != nil {
		return nil, fmt.Errorf("wire: bad message header: %w", err)
	}
	return m, nil
}

// AppendCall appends the header of a call message whose items the encoder
// already holds in items (a JSON array).
func AppendCall(buf []byte, id uint64, module, function, session string, items []byte) []byte {
	return AppendCallTrace(buf, id, module, function, session, Trace{}, items)
}

// Trace is the trace context of a call: the W3C (OpenTelemetry) trace and
// span ids of the Go side's span, which Python code sees in
// slither.context(). The zero value is no trace.
type Trace struct {
	TraceID [16]byte
	SpanID  [8]byte
}

// Valid reports whether both ids are set (a W3C id is never all zero).
func (t Trace) Valid() bool { return t.TraceID != [16]byte{} && t.SpanID != [8]byte{} }

// AppendCallTrace is [AppendCall] with the call's trace context: when tr
// is valid the header carries "tr" and "sp", its ids as lowercase hex (32
// and 16 digits).
func AppendCallTrace(buf []byte, id uint64, module, function, session string, tr Trace, items []byte) []byte {
	buf = append(buf, `{"t":"call","id":`...)
	buf = strconv.AppendUint(buf, id, 10)
	buf = append(buf, `,"m":`...)
	buf = AppendString(buf, module)
	buf = append(buf, `,"f":`...)
	buf = AppendString(buf, function)
	if session != "" {
		buf = append(buf, `,"s":`...)
		buf = AppendString(buf, session)
	}
	if tr.Valid() {
		buf = append(buf, `,"tr":"`...)
		buf = hex.AppendEncode(buf, tr.TraceID[:])
		buf = append(buf, `","sp":"`...)
		buf = hex.AppendEncode(buf, tr.SpanID[:])
		buf = append(buf, '"')
	}
	buf = append(buf, `,"v":`...)
	buf = append(buf, items...)
	return append(buf, '}')
}

// AppendReply appends the answer to host request h: value (tagged JSON)
// when errText is empty, else the error text.
func AppendReply(buf []byte, h uint64, value []byte, errText string) []byte {
	buf = append(buf, `{"t":"reply","h":`...)
	buf = strconv.AppendUint(buf, h, 10)
	if errText != "" {
		buf = append(buf, `,"e":`...)
		buf = AppendString(buf, errText)
	} else {
		buf = append(buf, `,"v":`...)
		buf = append(buf, value...)
	}
	return append(buf, '}')
}

// AppendCancel appends a cancel message for call id.
func AppendCancel(buf []byte, id uint64) []byte {
	buf = append(buf, `{"t":"cancel","id":`...)
	buf = strconv.AppendUint(buf, id, 10)
	return append(buf, '}')
}

// AppendCloseSession appends a close_session message.
func AppendCloseSession(buf []byte, session string) []byte {
	buf = append(buf, `{"t":"close_session","s":`...)
	buf = AppendString(buf, session)
	return append(buf, '}')
}

// Shutdown is the shutdown message.
var Shutdown = []byte(`{"t":"shutdown"}`)

// WriteFrame writes one frame of at most [DefaultMaxFrame] bytes; see
// [WriteFrameLimit].
func WriteFrame(w io.Writer, scratch []byte, hdr []byte, atts [][]byte) ([]byte, error) {
	return WriteFrameLimit(w, scratch, hdr, atts, DefaultMaxFrame)
}

// FrameLen is the length a frame of hdr and atts announces: the size that
// counts against a frame limit.
func FrameLen(hdr []byte, atts [][]byte) uint64 {
	total := uint64(minFrame) + 4*uint64(len(atts)) + uint64(len(hdr))
	for _, a := range atts {
		total += uint64(len(a))
	}
	return total
}

// WriteFrameLimit writes one frame. Integers are u32 big-endian: the length
// of the rest, the header's length, the number of attachments and their
// lengths; then the header and the attachments. A frame over limit (<= 0
// means [DefaultMaxFrame]) is refused with an error matching
// [ErrFrameTooLarge] before anything is written, so the stream stays usable.
// scratch is reused for the frame's head and returned for the next call.
// Not safe for concurrent use on one writer: callers serialize.
func WriteFrameLimit(w io.Writer, scratch []byte, hdr []byte, atts [][]byte, limit int) ([]byte, error) {
	limit = frameLimit(limit)
	total := FrameLen(hdr, atts)
	if total > uint64(limit) {
		return scratch, fmt.Errorf("%w: %d bytes (a header of %d bytes and %d attachments) exceed the %d-byte limit",
			ErrFrameTooLarge, total, len(hdr), len(atts), limit)
	}
	b := scratch[:0]
	b = binary.BigEndian.AppendUint32(b, uint32(total))
	b = binary.BigEndian.AppendUint32(b, uint32(len(hdr)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(atts)))
	for _, a := range atts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(a)))
	}
	b = append(b, hdr...)
	// Small attachments ride in the same write; big ones are written from
	// where they are, without a copy.
	var big [][]byte
	for i, a := range atts {
		if len(a) > 64<<10 {
			big = atts[i:]
			break
		}
		b = append(b, a...)
	}
	if _, err := w.Write(b); err != nil {
		return b, err
	}
	for _, a := range big {
		if _, err := w.Write(a); err != nil {
			return b, err
		}
	}
	return b, nil
}

// frameLimit returns limit, or the default for <= 0, capped at what a
// frame's length can say.
func frameLimit(limit int) int {
	if limit <= 0 {
		return DefaultMaxFrame
	}
	return int(min(uint64(limit), MaxFrameLimit))
}

// ReadFrame reads one frame of at most [DefaultMaxFrame] bytes; see
// [ReadFrameLimit].
func ReadFrame(r *bufio.Reader) (hdr []byte, atts [][]byte, err error) {
	return ReadFrameLimit(r, DefaultMaxFrame)
}

// eagerFrame is how much of a frame is allocated before its bytes arrive:
// a frame up to this size is read into a buffer of its exact size, so a
// large attachment costs one allocation and no copy in the reader. Past
// it the buffer grows (doubling) with what is actually read, so that a
// wrong length costs at most this much memory plus the bytes behind it.
const eagerFrame = 16 << 20

// ReadFrameLimit reads one frame of at most limit bytes (<= 0 means
// [DefaultMaxFrame]); the header and the attachments share one new buffer,
// of the frame's exact size when it is at most 16 MiB. It returns io.EOF
// when r ends cleanly before a frame, an error matching io.ErrUnexpectedEOF
// when it ends inside one, an error matching [ErrFrame] (and
// [ErrFrameTooLarge] for one over the limit) when the frame's parts do not
// add up, and r's own errors wrapped. The lengths are checked as they
// arrive, before the bytes they announce are read.
func ReadFrameLimit(r io.Reader, limit int) (hdr []byte, atts [][]byte, err error) {
	limit = frameLimit(limit)
	var pre [4 + minFrame]byte
	if _, err := io.ReadFull(r, pre[:4]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, nil, fmt.Errorf("wire: input ended inside a frame's length: %w", err)
		}
		return nil, nil, err
	}
	n := uint64(binary.BigEndian.Uint32(pre[:]))
	if n < minFrame {
		return nil, nil, fmt.Errorf("%w: length %d is shorter than the %d bytes every frame starts with", ErrFrame, n, minFrame)
	}
	if n > uint64(limit) {
		return nil, nil, fmt.Errorf("%w: %w: length %d exceeds the %d-byte limit", ErrFrame, ErrFrameTooLarge, n, limit)
	}
	if err := readFull(r, pre[4:], n, 0); err != nil {
		return nil, nil, err
	}
	hl := uint64(binary.BigEndian.Uint32(pre[4:]))
	na := uint64(binary.BigEndian.Uint32(pre[8:]))
	lensEnd := 4 * na // offsets from here on are into body, which follows pre
	if minFrame+lensEnd+hl > n {
		return nil, nil, fmt.Errorf("%w: a header of %d bytes and %d attachment lengths overrun the %d-byte frame", ErrFrame, hl, na, n)
	}
	bodyLen := n - minFrame
	// The attachment lengths are as untrusted as the frame's: a long list
	// of them is read as it arrives, into a buffer grown from 64 KiB.
	eager := min(bodyLen, eagerFrame)
	if lensEnd > 64<<10 && bodyLen > eagerFrame {
		eager = 64 << 10
	}
	body := make([]byte, 0, eager)
	if body, err = readGrow(r, body, lensEnd, n); err != nil {
		return nil, nil, err
	}
	sum := lensEnd + hl
	for i := range na {
		sum += uint64(binary.BigEndian.Uint32(body[4*i:]))
	}
	if sum != bodyLen {
		return nil, nil, fmt.Errorf("%w: its parts (a header of %d bytes and %d attachments) add up to %d bytes, not the %d it announces",
			ErrFrame, hl, na, minFrame+sum, n)
	}
	if body, err = readGrow(r, body, bodyLen, n); err != nil {
		return nil, nil, err
	}
	hdr = body[lensEnd : lensEnd+hl : lensEnd+hl]
	if na > 0 {
		atts = make([][]byte, na)
		off := lensEnd + hl
		for i := range atts {
			l := uint64(binary.BigEndian.Uint32(body[4*i:]))
			atts[i] = body[off : off+l : off+l]
			off += l
		}
	}
	return hdr, atts, nil
}

// readGrow reads into body until it holds upto bytes, growing it with the
// bytes that arrive (doubling, so copies stay linear in the frame's size).
func readGrow(r io.Reader, body []byte, upto, frame uint64) ([]byte, error) {
	for uint64(len(body)) < upto {
		if len(body) == cap(body) {
			body = slices.Grow(body, int(min(upto, uint64(2*cap(body)))-uint64(len(body))))
		}
		end := int(min(upto, uint64(cap(body))))
		if err := readFull(r, body[len(body):end], frame, minFrame+uint64(len(body))); err != nil {
			return nil, err
		}
		body = body[:end]
	}
	return body, nil
}

// readFull fills b, which starts at offset at (after the length) of a frame
// of n bytes; an end of input becomes io.ErrUnexpectedEOF, named.
func readFull(r io.Reader, b []byte, n, at uint64) error {
	got, err := io.ReadFull(r, b)
	if err == nil {
		return nil
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("wire: input ended inside a %d-byte frame after %d bytes: %w", n, at+uint64(got), io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("wire: reading a %d-byte frame: %w", n, err)
}
