// Package cpython is Slither's thin binding to an embedded CPython 3.13+
// (built free-threaded, --disable-gil, for real parallelism). It is the only
// package of the module that uses cgo. Built with CGO_ENABLED=0 it is
// empty, and so is pools/thread: the rest of the module builds without it.
//
// One interpreter serves the whole process: [Init] starts it once, on an OS
// thread reserved for the process's life, and it is never finalized.
//
// Each OS thread that runs calls has one persistent PyThreadState, made on
// its first call, kept in C thread-local storage, attached per call and
// detached after, and deleted by a pthread key destructor when the thread
// exits: creating and destroying thread states never happens on the hot
// path. Two kinds of callers use it:
//
//   - a [Caller] runs each call on the calling goroutine's own OS thread
//     (locked for the call only): state and call in one cgo crossing, about
//     a quarter of a microsecond of binding overhead, and no hand-off
//     between goroutines. The default for pools.
//   - a [Thread] keeps one OS thread for its whole life (the goroutine that
//     made it stays locked to it): for Python code that must always run on
//     the same thread (thread-affine libraries, threading.local state per
//     worker). Handing work to such a locked goroutine costs microseconds.
//
// A call converts its whole argument list in one C crossing and its result
// in one more, through a compact tagged encoding (codec.go, codec.c). Bytes
// values of 32 KiB or more cross by reference and are copied once each way:
// Python builds its bytes straight from the Go slice (pinned for the call),
// Go copies a bytes result straight out of the Python object, into memory
// from the SetAlloc function when one is set ([Caller.SetAlloc]).
//
// # The interpreter
//
// It starts from CPython's isolated configuration (PYTHON* variables and
// the user site are ignored; Go keeps its signal handlers), and differs from
// a plain `python3` in a few ways, each because it lives inside a Go
// process that never finalizes it:
//
//   - stdio is unbuffered, as with `python -u`: print() output reaches the
//     process's stdout and stderr at once, even when they are pipes, since
//     no exit would ever flush a buffer;
//   - int <-> decimal text conversion has no digit limit
//     (sys.get_int_max_str_digits() is 0), so ints of any size cross
//     between Go and Python; code that parses untrusted decimal text should
//     bound its length itself;
//   - multiprocessing's default start method is "spawn" (it starts the real
//     interpreter, [Runtime.Executable]), not "fork", which would fork the
//     Go process; an explicit set_start_method or get_context still
//     chooses freely;
//   - an audit hook counts imports ([Runtime.Imports]), so callers can
//     re-check the GIL right after an import that may have turned it on.
//
// # Value mapping
//
//	Go -> Python                         Python -> Go
//	nil, nil pointer/slice/map -> None   None            -> nil
//	bool                       -> bool   bool            -> bool
//	int, int8..int64, uint8..32 -> int   int (fits int64) -> int64
//	uint, uint64 > MaxInt64    -> int    int (larger)    -> *big.Int
//	*big.Int, big.Int          -> int
//	float32, float64           -> float  float           -> float64 (NaN, ±Inf kept)
//	string (valid UTF-8)       -> str    str             -> string
//	[]byte, [N]byte            -> bytes  bytes, bytearray -> []byte
//	[]any, other slices/arrays -> list   list, tuple     -> []any
//	map[string]any, map[string]T -> dict dict (str keys) -> map[string]any
//	pointer                    -> its target (each counts as a level of MaxDepth)
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
