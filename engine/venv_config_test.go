package engine_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/engine"
)

// TestVenvFromFileAndEnvironment: venv is a top-level YAML key, and
// SLITHER_VENV overrides it; SLITHER_PYTHON stays its own reader's.
func TestVenvFromFileAndEnvironment(t *testing.T) {
	c, err := engine.ParseConfig([]byte("venv: /srv/app/.venv\n"))
	require.NoError(t, err)
	assert.Equal(t, "/srv/app/.venv", c.Venv)
	require.NoError(t, c.ApplyEnv([]string{"SLITHER_VENV=/other", "SLITHER_PYTHON=/x"}))
	assert.Equal(t, "/other", c.Venv)
}
