package remote

import (
	"context"
	"errors"

	"github.com/slither-go/slither/internal/convert"
	"github.com/slither-go/slither/pools"
)

// NodeError is a batch's failure as a node reported it, when it is not a
// Python exception, a wrong result count or a conversion (those decode to
// the pools' own error types). It matches, with errors.Is, the error the
// node's local pool returned: pools.ErrTimeout, ErrWorkerCrashed,
// ErrSessionLost, ErrPoolFailed, ErrInvalidBatch, ErrReentrant, ErrRedelivered,
// ErrPayloadTooLarge, ErrMalformed, context.DeadlineExceeded,
// context.Canceled or ErrConversion.
type NodeError struct {
	Node    string // the node's id ("" when unknown)
	Kind    string // one of the kinds below, or "other"
	Message string // the node-side error text
}

func (e *NodeError) Error() string {
	if e.Node == "" {
		return "remote node: " + e.Message
	}
	return "remote node " + e.Node + ": " + e.Message
}

// Is matches the sentinel e.Kind stands for (a redelivered batch is a
// crash too, as ErrRedelivered documents).
func (e *NodeError) Is(target error) bool {
	if e.Kind == "redelivered" && target == pools.ErrWorkerCrashed {
		return true
	}
	for _, k := range errorKinds {
		if k.kind == e.Kind {
			return target == k.err
		}
	}
	return false
}

// errorKinds are the sentinels that keep their identity across a node, in
// the order a node's error is tested against them.
var errorKinds = []struct {
	kind string
	err  error
}{
	{"redelivered", ErrRedelivered}, // before "crashed": it wraps both
	{"timeout", pools.ErrTimeout},
	{"session_lost", pools.ErrSessionLost},
	{"pool_failed", pools.ErrPoolFailed}, // before "crashed": an open breaker wraps its last crash
	{"crashed", pools.ErrWorkerCrashed},
	{"invalid_batch", pools.ErrInvalidBatch},
	{"reentrant", pools.ErrReentrant},
	{"payload_too_large", ErrPayloadTooLarge},
	{"malformed", ErrMalformed},
	{"deadline", context.DeadlineExceeded},
	{"canceled", context.Canceled},
	// a conversion failure that is not a *ConversionError
	{"conversion_error", pools.ErrConversion},
}

type errorBody struct {
	Kind      string `json:"kind"`
	Message   string `json:"message"`
	Type      string `json:"type,omitempty"`
	Traceback string `json:"traceback,omitempty"`
	// conversion
	Direction string `json:"direction,omitempty"`
	Path      string `json:"path,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// result count
	Module   string `json:"module,omitempty"`
	Function string `json:"function,omitempty"`
	Items    int    `json:"items,omitempty"`
	Results  int    `json:"results,omitempty"`
}

func encodeError(err error) *errorBody {
	b := &errorBody{Kind: "other", Message: err.Error()}
	var pe *pools.PythonError
	var rc *pools.ResultCountError
	var ce *convert.ConversionError
	switch {
	case errors.As(err, &pe):
		b.Kind, b.Type, b.Message, b.Traceback = "python", pe.Type, pe.Message, pe.Traceback
	case errors.As(err, &rc):
		b.Kind, b.Module, b.Function, b.Items, b.Results = "result_count", rc.Module, rc.Function, rc.Items, rc.Results
	case errors.As(err, &ce):
		b.Kind, b.Direction, b.Path, b.Reason = "conversion", ce.Direction, ce.Path, ce.Reason
	default:
		for _, k := range errorKinds {
			if errors.Is(err, k.err) {
				b.Kind = k.kind
				break
			}
		}
	}
	return b
}

func (b *errorBody) decode(node string) error {
	switch b.Kind {
	case "python":
		return &pools.PythonError{Type: b.Type, Message: b.Message, Traceback: b.Traceback}
	case "result_count":
		return &pools.ResultCountError{Module: b.Module, Function: b.Function, Items: b.Items, Results: b.Results}
	case "conversion":
		return &convert.ConversionError{Direction: b.Direction, Path: b.Path, Reason: b.Reason}
	}
	return &NodeError{Node: node, Kind: b.Kind, Message: b.Message}
}
