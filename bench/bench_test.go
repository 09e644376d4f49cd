package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/bench"
	"github.com/slither-go/slither/internal/leaktest"
)

func TestMain(m *testing.M) {
	bench.CrashChild() // the thread pool's segfault runs in a child of this test binary
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

// TestQuickMatrix is the CI smoke test of `slither bench --quick`: every
// cell ran and the correctness columns say what they must. Speeds are not
// checked.
func TestQuickMatrix(t *testing.T) {
	rep, err := bench.Run(context.Background(), bench.Options{Quick: true})
	require.NoError(t, err)
	require.Len(t, rep.Cells, len(rep.Workloads)*len(bench.Executors))
	for _, w := range rep.Workloads {
		for _, ex := range bench.Executors {
			c, ok := rep.Cell(w, ex)
			require.True(t, ok, "%s/%s", w, ex)
			// Only a build without cgo may skip a cell, and then only the
			// embedded pool's: with cgo, a thread pool that fails to start
			// is a failure, not a reason to pass.
			if !cgoBuild && ex == "thread" {
				require.True(t, c.Skipped, "built without cgo, yet the embedded pool ran %s", w)
				continue
			}
			require.False(t, c.Skipped, "%s/%s was skipped: %s", w, ex, c.Note)
			switch w {
			case "segfault":
				assert.Equal(t, ex == "process-ft" || ex == "process-gil", c.Correct, "%s survives a segfault? %s", ex, c.Note)
			case "shared-rmw":
				switch ex {
				case "py-threads": // an unguarded dict: lost updates depend on timing
				case "py-processes":
					assert.False(t, c.Correct, "processes share no dict")
				default:
					assert.True(t, c.Correct, "%s: %s (lost %d)", ex, c.Note, c.Lost)
					assert.Zero(t, c.Lost)
				}
			default:
				assert.True(t, c.Correct, "%s/%s: %s", w, ex, c.Note)
				assert.Positive(t, c.ItemsPerSec, "%s/%s", w, ex)
				assert.Positive(t, c.PeakRSS, "%s/%s", w, ex)
			}
		}
	}
	if cgoBuild {
		c, _ := rep.Cell("segfault", "thread")
		assert.Contains(t, c.Note, "the whole Go process died")
	}
	if cgoBuild {
		assert.Len(t, rep.Ratios, 4)
	} else {
		assert.Len(t, rep.Ratios, 1, "three of the four ratios are of the embedded pool")
	}
	assert.NotEmpty(t, rep.Recommendations)

	var table bytes.Buffer
	require.NoError(t, rep.WriteTable(&table))
	for _, w := range rep.Workloads {
		assert.Contains(t, table.String(), w)
	}
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var back bench.Report
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, len(rep.Cells), len(back.Cells))

	png := filepath.Join(t.TempDir(), "bench.png")
	require.NoError(t, rep.Plot(png))
	st, err := os.Stat(png)
	require.NoError(t, err)
	assert.Positive(t, st.Size())
}

func TestOnlyUnknownWorkload(t *testing.T) {
	_, err := bench.Run(context.Background(), bench.Options{Quick: true, Only: []string{"nope"}})
	assert.ErrorContains(t, err, "names no workload")
}
