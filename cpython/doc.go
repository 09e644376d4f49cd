// Package cpython is Slither's thin binding to an embedded CPython 3.13+
// (built free-threaded, --disable-gil, for real parallelism). It is the only
// package of the module that uses cgo. Built with CGO_ENABLED=0 it is
// empty, and so is pools/thread: the rest of the module builds without it.
//
// One interpreter serves the whole process: [Init] starts it once, on an OS
// thread reserved for the process's life, and it is never finalized. Work
// runs on [Thread]s, each owning one persistent PyThreadState on one locked
// OS thread, attached per call and detached after — so a call costs about a
// tenth of a microsecond of binding overhead, not the hundreds of
// microseconds that creating a thread state per call would.
//
// A call converts its whole argument list in one C crossing and its result
// in one more, through a compact tagged encoding (codec.go, shim.c).
//
// # Value mapping
//
//	Go -> Python                         Python -> Go
//	nil, nil pointer/slice/map -> None   None            -> nil
//	bool                       -> bool   bool            -> bool
//	int, int8..int64, uint8..32 -> int   int (fits int64) -> int64
//	uint, uint64 > MaxInt64    -> int    int (larger)    -> *big.Int
//	*big.Int                   -> int
//	float32, float64           -> float  float           -> float64 (NaN, ±Inf kept)
//	string (valid UTF-8)       -> str    str             -> string
//	[]byte, [N]byte            -> bytes  bytes, bytearray -> []byte
//	[]any, other slices/arrays -> list   list, tuple     -> []any
//	map[string]any, map[string]T -> dict dict (str keys) -> map[string]any
//	pointer                    -> its target
//
// Rejected, each with a [*ConversionError] naming the path inside the value:
// a Go string or map key that is not valid UTF-8; a Go map whose key type is
// not a string; any other Go type (structs, channels, funcs); a Python str
// holding a lone surrogate; a dict key that is not a str; any other Python
// type (set, objects, ...); nesting deeper than [MaxDepth] either way. Go maps
// reach Python with their keys in sorted order, so results are reproducible.
//
// # Errors
//
// A Python exception comes back as an [*Exception] with its qualified type,
// message and formatted traceback; use errors.As. Conversion failures match
// [ErrConversion] with errors.Is.
package cpython
