//go:build cgo

package cpython_test

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/internal/leaktest"
)

func TestMain(m *testing.M) {
	if os.Getenv(stdioChildEnv) != "" {
		stdioChild()
		return
	}
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

func rt(t testing.TB) *cpython.Runtime {
	t.Helper()
	cfg := cpython.Config{Paths: []string{"testdata"}}
	if os.Getenv(gilOnEnv) != "" {
		cfg.GIL = cpython.GILOn
	}
	r, err := cpython.Init(cfg)
	require.NoError(t, err)
	return r
}

// thread returns a Thread on the test's goroutine, closed at cleanup.
func thread(t testing.TB) *cpython.Thread {
	t.Helper()
	th, err := rt(t).NewThread()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, th.Close()) })
	return th
}

func TestRuntimeInfo(t *testing.T) {
	r := rt(t)
	assert.True(t, strings.HasPrefix(r.Version(), "3.1"), "version %q", r.Version())
	assert.True(t, r.FreeThreadedBuild(), "the toolchain builds CPython with --disable-gil")
	assert.False(t, r.GILEnabled(), "the GIL should be off in a free-threaded build")
	assert.FileExists(t, r.Executable())
	assert.DirExists(t, r.Home())

	// sys.executable must be the real interpreter, never the Go test binary.
	th := thread(t)
	require.NoError(t, r.Exec("import sys\n_exe = sys.executable\n"))
	v, err := th.Call("cpytest", "evaluate", "__import__('sys').executable")
	require.NoError(t, err)
	assert.Equal(t, r.Executable(), v)
	self, _ := os.Executable()
	assert.NotEqual(t, self, v)
}

func TestInitTwiceSameRuntime(t *testing.T) {
	a := rt(t)
	b, err := cpython.Init(cpython.Config{})
	require.NoError(t, err)
	assert.Same(t, a, b)
	_, err = cpython.Init(cpython.Config{Home: "/nonexistent/prefix"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already initialized with home")
}

func TestRoundTripScalars(t *testing.T) {
	th := thread(t)
	in := []any{
		nil, true, false,
		int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64),
		1.5, -0.0, math.MaxFloat64, math.SmallestNonzeroFloat64,
		"", "plain", "héllo wörld", "日本語テキスト", "emoji 🐍🦫", "combining e\u0301", "nul\x00inside",
		[]byte{}, []byte{0, 1, 2, 255},
	}
	out, err := th.CallBatch("cpytest", "echo", in)
	require.NoError(t, err)
	require.Len(t, out, len(in))
	for i := range in {
		assert.Equal(t, in[i], out[i], "item %d", i)
	}
	types, err := th.CallBatch("cpytest", "types", in)
	require.NoError(t, err)
	assert.Equal(t, []any{"NoneType", "bool", "bool", "int", "int", "int", "int", "float", "float", "float", "float",
		"str", "str", "str", "str", "str", "str", "str", "bytes", "bytes"}, types)
}

func TestGoIntegerKinds(t *testing.T) {
	th := thread(t)
	in := []any{int(7), int8(-8), int16(16), int32(-32), uint(9), uint8(255), uint16(65535), uint32(math.MaxUint32),
		uint64(math.MaxUint64), float32(0.5)}
	out, err := th.CallBatch("cpytest", "echo", in)
	require.NoError(t, err)
	want := []any{int64(7), int64(-8), int64(16), int64(-32), int64(9), int64(255), int64(65535), int64(math.MaxUint32),
		new(big.Int).SetUint64(math.MaxUint64), 0.5}
	assert.Equal(t, want, out)
}

func TestNaNAndInfKept(t *testing.T) {
	th := thread(t)
	in := []any{math.NaN(), math.Inf(1), math.Inf(-1)}
	out, err := th.CallBatch("cpytest", "echo", in)
	require.NoError(t, err)
	assert.True(t, math.IsNaN(out[0].(float64)))
	assert.Equal(t, math.Inf(1), out[1])
	assert.Equal(t, math.Inf(-1), out[2])
	desc, err := th.CallBatch("cpytest", "describe", in)
	require.NoError(t, err)
	assert.Equal(t, true, desc[0].(map[string]any)["nan"])
	assert.Equal(t, true, desc[1].(map[string]any)["inf"])
}

func TestBigInts(t *testing.T) {
	th := thread(t)
	huge, _ := new(big.Int).SetString("-123456789012345678901234567890", 10)
	out, err := th.CallBatch("cpytest", "echo", []any{huge, (*big.Int)(nil), big.NewInt(5)})
	require.NoError(t, err)
	assert.Equal(t, 0, huge.Cmp(out[0].(*big.Int)))
	assert.Nil(t, out[1])
	assert.Equal(t, int64(5), out[2], "a big.Int that fits comes back as int64")

	v, err := th.Call("cpytest", "make", "bigint")
	require.NoError(t, err)
	l := v.([]any)
	two64p1 := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 64), big.NewInt(1))
	assert.Equal(t, 0, two64p1.Cmp(l[0].(*big.Int)))
	assert.Equal(t, 0, new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), 70)).Cmp(l[1].(*big.Int)))
	assert.Equal(t, int64(math.MaxInt64), l[2])
	assert.Equal(t, int64(math.MinInt64), l[3])
}

func TestContainers(t *testing.T) {
	th := thread(t)
	in := []any{
		[]any{},
		map[string]any{},
		[]any{int64(1), "two", []any{3.0, nil}},
		map[string]any{"b": int64(2), "a": []any{map[string]any{"x": []byte("y")}}, "ключ": "значение"},
	}
	out, err := th.CallBatch("cpytest", "echo", in)
	require.NoError(t, err)
	assert.Equal(t, in, out)

	// Typed Go slices and maps go through reflection; keys arrive sorted.
	typed := []any{[]string{"a", "b"}, map[string]float64{"z": 1, "m": 2, "a": 3}, [3]int{1, 2, 3}, &[]int{4},
		[2]byte{9, 8}, []int(nil)}
	out, err = th.CallBatch("cpytest", "echo", typed)
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{"a", "b"}, map[string]any{"z": 1.0, "m": 2.0, "a": 3.0}, []any{int64(1), int64(2), int64(3)},
		[]any{int64(4)}, []byte{9, 8}, nil}, out)
	desc, err := th.CallBatch("cpytest", "describe", typed[1:2])
	require.NoError(t, err)
	assert.Equal(t, []any{"a", "m", "z"}, desc[0].(map[string]any)["keys"])

	// Tuples and bytearrays come back as lists and bytes.
	v, err := th.Call("cpytest", "make", "tuple")
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1), "two", []any{3.0, nil}}, v)
	v, err = th.Call("cpytest", "make", "bytearray")
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 0xff}, v)
}

func TestLargeBytes(t *testing.T) {
	th := thread(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16) // 10 MiB
	big[12345] = 0
	out, err := th.CallBatch("cpytest", "echo", []any{big})
	require.NoError(t, err)
	assert.True(t, bytes.Equal(big, out[0].([]byte)))
	desc, err := th.CallBatch("cpytest", "describe", []any{big})
	require.NoError(t, err)
	assert.Equal(t, int64(10<<20), desc[0].(map[string]any)["len"])
}

func nested(depth int) any {
	var v any = []any{}
	for range depth {
		v = []any{v}
	}
	return v
}

func TestDeepNesting(t *testing.T) {
	th := thread(t)
	out, err := th.CallBatch("cpytest", "echo", []any{nested(500)})
	require.NoError(t, err)
	assert.Equal(t, nested(500), out[0])
	d, err := th.Call("cpytest", "depth_of", nested(500))
	require.NoError(t, err)
	assert.Equal(t, int64(500), d)

	_, err = th.CallBatch("cpytest", "echo", []any{nested(cpython.MaxDepth + 10)})
	var ce *cpython.ConversionError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "go->python", ce.Direction)
	assert.Contains(t, err.Error(), "nesting deeper than 1000 levels")

	_, err = th.Call("cpytest", "nest", cpython.MaxDepth+10)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "python->go", ce.Direction)
	assert.Contains(t, err.Error(), "nesting deeper than 1000 levels")
	assert.True(t, errors.Is(err, cpython.ErrConversion))
}

func TestRejectedGoValues(t *testing.T) {
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"invalid utf8", []any{"ok", string([]byte{0xff, 0xfe})}, "at [0][1]: string is not valid UTF-8"},
		{"invalid utf8 key", map[string]any{string([]byte{0xc3}): 1}, `map key "\xc3" is not valid UTF-8`},
		{"int keys", map[int]string{1: "a"}, "map key type int is not a string"},
		{"struct", struct{ A int }{1}, "Go type struct { A int } has no Python mapping"},
		{"chan", []any{make(chan int)}, "at [0][0]: Go type chan int has no Python mapping"},
		{"nested in map", map[string]any{"k": []any{1, func() {}}}, "at [0][k][1]: Go type func() has no Python mapping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			th := thread(t) // a subtest runs on its own goroutine
			_, err := th.CallBatch("cpytest", "echo", []any{c.v})
			require.Error(t, err)
			assert.ErrorIs(t, err, cpython.ErrConversion)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	// A thread stays usable after a rejected value.
	th := thread(t)
	_, err := th.CallBatch("cpytest", "echo", []any{make(chan int)})
	require.ErrorIs(t, err, cpython.ErrConversion)
	out, err := th.CallBatch("cpytest", "echo", []any{int64(1)})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1)}, out)
}

func TestRejectedPythonValues(t *testing.T) {
	cases := map[string]string{
		"set":       "python->go conversion: Python type 'set' has no Go mapping",
		"object":    "Python type 'object' has no Go mapping",
		"intkey":    "python->go conversion at [ok]: dict key 1 of type int is not a str",
		"surrogate": "python->go conversion at [1]: str is not valid UTF-8 (it holds a lone surrogate)",
	}
	for kind, want := range cases {
		t.Run(kind, func(t *testing.T) {
			th := thread(t)
			_, err := th.Call("cpytest", "make", kind)
			require.Error(t, err)
			assert.ErrorIs(t, err, cpython.ErrConversion)
			assert.Contains(t, err.Error(), want)
		})
	}
	th := thread(t)
	_, err := th.CallBatch("cpytest", "not_a_list", []any{1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "a batch function must return a list or tuple, not 'dict'")
}

func TestExceptions(t *testing.T) {
	th := thread(t)
	_, err := th.CallBatch("cpytest", "boom", []any{"x"})
	var exc *cpython.Exception
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "ValueError", exc.Type)
	assert.Equal(t, "bad item 'x'", exc.Message)
	assert.Equal(t, "python: ValueError: bad item 'x'", err.Error())
	assert.Contains(t, exc.Traceback, "Traceback (most recent call last):")
	assert.Contains(t, exc.Traceback, "cpytest.py")
	assert.Contains(t, exc.Traceback, "in boom")

	_, err = th.CallBatch("cpytest", "custom", []any{1})
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "cpytest.CustomError", exc.Type)
	assert.Equal(t, "from inner", exc.Message)
	assert.Contains(t, exc.Traceback, "in _inner")
	assert.Contains(t, exc.Traceback, "in custom")

	_, err = th.CallBatch("no_such_module_xyz", "f", nil)
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "ModuleNotFoundError", exc.Type)
	assert.Contains(t, exc.Message, "no_such_module_xyz")

	_, err = th.CallBatch("cpytest", "no_such_function", nil)
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "AttributeError", exc.Type)

	_, err = th.CallBatch("cpytest", "not_callable", nil)
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "TypeError", exc.Type)
	assert.Contains(t, exc.Message, "cpytest.not_callable is not callable")

	// Exec errors are exceptions too.
	err = rt(t).Exec("raise KeyError('k')")
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "KeyError", exc.Type)
}

func TestWrongThread(t *testing.T) {
	th := thread(t)
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() { // a locked OS thread runs only its own goroutine, so this one is elsewhere
		defer wg.Done()
		_, err = th.CallBatch("cpytest", "echo", nil)
	}()
	wg.Wait()
	assert.ErrorIs(t, err, cpython.ErrWrongThread)
}

func TestClosedThread(t *testing.T) {
	th, err := rt(t).NewThread()
	require.NoError(t, err)
	require.NoError(t, th.Close())
	require.NoError(t, th.Close(), "Close is idempotent")
	_, err = th.CallBatch("cpytest", "echo", nil)
	assert.ErrorIs(t, err, cpython.ErrClosed)
}

func TestInterrupt(t *testing.T) {
	r := rt(t)
	// A spin loop that tells Go, by a host call, that it has begun: the
	// interrupt then lands in the running call, from another goroutine.
	require.NoError(t, r.Exec(`
import cpytest, _slither_host
def _started_then_spin(batch):
    _slither_host.call("started", [])
    while True:
        pass
cpytest.started_then_spin = _started_then_spin
`))
	th := thread(t)
	started := make(chan struct{})
	th.SetHost(func(name string, args []any) (any, error) {
		close(started)
		return nil, nil
	})
	returned, interrupted := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(interrupted)
		select {
		case <-started:
			th.Interrupt()
		case <-returned: // the call failed before it began: nothing to interrupt
		}
	}()
	_, err := th.CallBatch("cpytest", "started_then_spin", []any{1})
	close(returned)
	<-interrupted
	th.SetHost(nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, cpython.ErrCancelled)
	var exc *cpython.Exception
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "_slither_host.Cancelled", exc.Type)
	th.ClearInterrupt()
	out, err := th.CallBatch("cpytest", "echo", []any{"after"})
	require.NoError(t, err)
	assert.Equal(t, []any{"after"}, out)

	// An interrupt that lands between calls is cleared before the next one.
	th.Interrupt()
	th.ClearInterrupt()
	out, err = th.CallBatch("cpytest", "echo", []any{"clean"})
	require.NoError(t, err)
	assert.Equal(t, []any{"clean"}, out)
}

func TestAddPaths(t *testing.T) {
	r := rt(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "added_mod.py"), []byte("def f(b):\n    return [x * 2 for x in b]\n"), 0o644))
	require.NoError(t, r.AddPaths(dir, dir))
	th := thread(t)
	out, err := th.CallBatch("added_mod", "f", []any{1, 2})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(2), int64(4)}, out)
	n, err := th.Call("cpytest", "evaluate", "__import__('sys').path.count("+quote(dir)+")")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "\\'") + "'" }

func TestManyThreadsAtOnce(t *testing.T) {
	r := rt(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			th, err := r.NewThread()
			if err != nil {
				errs <- err
				return
			}
			defer th.Close()
			for i := range 200 {
				out, err := th.CallBatch("cpytest", "echo", []any{g, i, "s"})
				if err != nil {
					errs <- err
					return
				}
				if out[0] != int64(g) || out[1] != int64(i) {
					errs <- errors.New("wrong result")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	runtime.GC()
}
