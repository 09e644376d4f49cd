package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWatchHints: what `slither example NAME --serve` prints says how to
// pass the token, naming where it came from, and never prints the token.
func TestWatchHints(t *testing.T) {
	assert.Equal(t, `serving text_analysis's monitor until Ctrl-C:
  page:    http://127.0.0.1:9090/debug/slither
  top:     slither top --addr 127.0.0.1:9090
  metrics: http://127.0.0.1:9090/metrics

`, watchHints("text_analysis", "127.0.0.1:9090", noToken))
	assert.Equal(t, `serving text_analysis's monitor until Ctrl-C:
  page:    http://192.0.2.1:9090/debug/slither?token=TOKEN
  top:     slither top --addr 192.0.2.1:9090 --token TOKEN
  metrics: http://192.0.2.1:9090/metrics (header Authorization: Bearer TOKEN)
  (TOKEN: the token you gave --token)

`, watchHints("text_analysis", "192.0.2.1:9090", tokenFlag))
	assert.Equal(t, `serving batch_stats's monitor until Ctrl-C:
  page:    http://192.0.2.1:9090/debug/slither?token=TOKEN
  top:     slither top --addr 192.0.2.1:9090 --token "$SLITHER_HTTP_TOKEN"
  metrics: http://192.0.2.1:9090/metrics (header Authorization: Bearer TOKEN)
  (TOKEN: the token in $SLITHER_HTTP_TOKEN)

`, watchHints("batch_stats", "192.0.2.1:9090", tokenEnv))
}

// TestTokenSource: --token's value came from the flag when it was given
// (even empty), else from $SLITHER_HTTP_TOKEN, its default.
func TestTokenSource(t *testing.T) {
	t.Setenv("SLITHER_HTTP_TOKEN", "from-env")
	for _, c := range []struct {
		args []string
		want tokenFrom
	}{
		{nil, tokenEnv},
		{[]string{"--token", "given"}, tokenFlag},
		{[]string{"--token", ""}, noToken},
	} {
		cmd := newExample() // reads the environment for the flag's default
		require.NoError(t, cmd.ParseFlags(c.args))
		token, err := cmd.Flags().GetString("token")
		require.NoError(t, err)
		assert.Equal(t, c.want, tokenSource(cmd, token), "%q", c.args)
	}
}
