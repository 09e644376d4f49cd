package process_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
)

// Workers get a minimal environment unless asked for more.
func TestWorkerEnvironment(t *testing.T) {
	t.Setenv("PROCTEST_SECRET", "s3cret")
	t.Setenv("SLITHER_PROCTEST", "yes")
	names := batch("env", "PROCTEST_SECRET", "SLITHER_PROCTEST", "PATH", "PROCTEST_EXTRA")

	assert.Equal(t, []any{nil, "yes", os.Getenv("PATH"), nil}, submit(t, newPool(t, opts(1)), names))

	o := opts(1)
	o.Env = []string{"PROCTEST_EXTRA=1", "PROCTEST_SECRET=given"}
	assert.Equal(t, []any{"given", "yes", os.Getenv("PATH"), "1"}, submit(t, newPool(t, o), names))

	o = opts(1)
	o.InheritEnv = true
	assert.Equal(t, []any{"s3cret", "yes", os.Getenv("PATH"), nil}, submit(t, newPool(t, o), names))
}

// The working directory is not on the workers' sys.path: a module there
// cannot shadow another.
func TestWorkingDirectoryNotImported(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "proctest_shadow.py"), []byte("def f(b):\n    return b\n"), 0o600))
	o := opts(1)
	o.Dir = dir
	p := newPool(t, o)
	_, err := p.Submit(context.Background(), pools.Batch{Module: "proctest_shadow", Function: "f", Items: []any{1}})
	var pe *pools.PythonError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "ModuleNotFoundError", pe.Type)
}

// recordHandler hands every log record to fn.
type recordHandler struct{ fn func(slog.Record) }

func (h recordHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error { h.fn(r); return nil }
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h recordHandler) WithGroup(string) slog.Handler                 { return h }

// A line of output longer than any buffer is logged in pieces, and the
// output after it still reaches the log.
func TestLongOutputLine(t *testing.T) {
	var pieces atomic.Int64
	after := make(chan struct{})
	var once sync.Once
	o := opts(1)
	o.Logger = slog.New(recordHandler{func(r slog.Record) {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "continued" {
				pieces.Add(1)
			}
			return true
		})
		if r.Message == "after the long line" {
			once.Do(func() { close(after) })
		}
	}})
	p := newPool(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := p.Submit(ctx, batch("print_long", 3<<20))
	require.NoError(t, err)
	select {
	case <-after:
	case <-ctx.Done():
		t.Fatal("the output after a 3 MiB line never reached the log")
	}
	assert.GreaterOrEqual(t, pieces.Load(), int64(3<<20/(64<<10)), "logged in pieces")
}
