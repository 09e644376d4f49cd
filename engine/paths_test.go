package engine_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/logbuf"
	"github.com/slither-go/slither/pools"
)

// TestForgottenPathsAreNamed: a user module whose directory is not in
// Config.Paths does not fall back to processes silently. The engine logs
// one warning naming the module, the sys.path searched and the fix, and
// the failing batch's error carries the same text.
func TestForgottenPathsAreNamed(t *testing.T) {
	ctx := context.Background()
	var logs logbuf.Buffer
	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Workers: 1},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)), // no Paths: testdata/enginetest.py is not found
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()
	if eng.ThreadPool() == nil {
		t.Skip("no embedded thread pool (CGO_ENABLED=0): Auto reads no marks")
	}
	const fix = "fix: add the directory that holds enginetest (enginetest.py or enginetest/) to engine.Config.Paths"
	for range 2 {
		_, err := eng.Dispatch(ctx, dispatch.Slice([]string{"A1"}), engine.DispatchOptions{
			Options: dispatch.Options{Module: "enginetest", Function: "safe_where", Route: pools.Auto}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "No module named 'enginetest'")
		assert.Contains(t, err.Error(), "(searched sys.path [")
		assert.Contains(t, err.Error(), fix)
	}
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "slither router: enginetest.safe_where runs in processes"), "logged once:\n%s", out)
	assert.Contains(t, out, "level=WARN")
	assert.Contains(t, out, fix)
}
