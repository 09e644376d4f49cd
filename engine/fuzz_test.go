package engine_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/slither-go/slither/engine"
)

// FuzzConfig feeds arbitrary bytes to the YAML config loader: it must never
// panic, and a config it accepts is valid and survives a round trip through
// its own YAML unchanged (so what LoadConfig accepts, Start reads the same
// way every time).
func FuzzConfig(f *testing.F) {
	for _, seed := range []string{
		"",
		"thread:\n  workers: 3\n",
		"thread: {disabled: true}\n",
		"process:\n  default:\n    workers: 2\n    call_timeout: 30s\n  legacy:\n    python: /usr/bin/python3\n    max_calls: 1000\n",
		"process: {default: {max_restarts: 3, restart_window: 30s, start_timeout: 1m, stop_grace: 1s, env: [A=1], preload: [json]}}\n",
		"process: {default: {restart_backoff: 2s, max_frame: 65536, inherit_env: true, dir: /srv}}\n",
		"paths: [/srv/py]\nthread_safe:\n  - {module: feats, function: extract}\n",
		"process: {a: {workers: -1}}\n",
		"thread: {workers: 3}\n---\nthread: {workers: 4}\n",
		"a: &a [*a]\n",
		"process: {x: {call_timeout: 5}}\n",
		"routes: {feats.extract: thread, pkg.mod.f: process}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := engine.ParseConfig(data)
		if err != nil {
			return
		}
		out, err := yaml.Marshal(c)
		require.NoError(t, err)
		again, err := engine.ParseConfig(out)
		require.NoError(t, err, "an accepted config's own YAML is accepted:\n%s", out)
		out2, err := yaml.Marshal(again)
		require.NoError(t, err)
		require.Equal(t, string(out), string(out2), "the round trip changes nothing")
	})
}
