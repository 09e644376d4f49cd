// Package wire is the process pool's protocol with its Python workers
// (python/slither/worker.py holds the other half and documents the
// messages): length-prefixed frames, each a JSON header plus raw binary
// attachments, so byte strings never travel as base64; and the tagged JSON
// value encoding that keeps the same Go<->Python mapping as the embedded
// pool (NaN and infinities, big integers, bytes, dicts whose keys look like
// tags).
//
// It is pure Go: the process pool builds with CGO_ENABLED=0.
package wire

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// Protocol is the version both sides must speak; the worker's hello says
// which it speaks.
const Protocol = 1

// MaxFrame bounds one frame (header plus attachments).
const MaxFrame = 1 << 31

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
}

// PyError is a failed call as the worker reports it.
type PyError struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	Traceback string `json:"traceback"`
	// Kind is "exception", "cancelled" (slither.Cancelled was raised by a
	// cancel message) or "conversion" (the result has no Go mapping).
	Kind string `json:"kind"`
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

// WriteFrame writes one frame. Integers are u32 big-endian: the length of
// the rest, the header's length, the number of attachments and their
// lengths; then the header and the attachments. Not safe for concurrent
// use on one writer: callers serialize.
func WriteFrame(w io.Writer, scratch []byte, hdr []byte, atts [][]byte) ([]byte, error) {
	total := 8 + 4*len(atts) + len(hdr)
	for _, a := range atts {
		total += len(a)
	}
	if total > MaxFrame {
		return scratch, fmt.Errorf("wire: frame of %d bytes exceeds the %d-byte limit", total, MaxFrame)
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

// ReadFrame reads one frame; the header and attachments share one new
// buffer.
func ReadFrame(r *bufio.Reader) (hdr []byte, atts [][]byte, err error) {
	var pre [4]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(pre[:])
	if n < 8 || n > MaxFrame {
		return nil, nil, fmt.Errorf("wire: bad frame length %d", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, err
	}
	hl := binary.BigEndian.Uint32(body[0:])
	na := binary.BigEndian.Uint32(body[4:])
	off := uint64(8) + 4*uint64(na)
	if off+uint64(hl) > uint64(n) {
		return nil, nil, fmt.Errorf("wire: frame header overruns the frame")
	}
	lens := body[8:off]
	hdr = body[off : off+uint64(hl)]
	off += uint64(hl)
	if na > 0 {
		atts = make([][]byte, na)
		for i := range atts {
			l := uint64(binary.BigEndian.Uint32(lens[4*i:]))
			if off+l > uint64(n) {
				return nil, nil, fmt.Errorf("wire: attachment %d overruns the frame", i)
			}
			atts[i] = body[off : off+l : off+l]
			off += l
		}
	}
	return hdr, atts, nil
}
