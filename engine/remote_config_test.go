package engine_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools/remote"
)

func TestRemoteConfigFromYAMLAndEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slither.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
nats:
  url: nats://nats.internal:4222
  user: app
  password: from-file
  tls: {ca_file: /etc/ssl/nats-ca.pem}
  connect_timeout: 2s
remote:
  gpu: {max_in_flight: 8, ack_wait: 1m, max_deliver: 3, max_payload: 1048576, wait_nodes: 2, wait_timeout: 10s}
  gpu_big: {}
process:
  default: {workers: 1}
`), 0o600))
	t.Setenv("SLITHER_NATS_PASSWORD", "from-env")
	t.Setenv("SLITHER_NATS_TLS_CERT_FILE", "/etc/ssl/app.pem")
	t.Setenv("SLITHER_REMOTE_GPU_BIG_MAX_DELIVER", "7") // the longest name wins
	t.Setenv("SLITHER_REMOTE_GPU_ACK_WAIT", "90s")
	c, err := engine.LoadConfig(path)
	require.NoError(t, err)
	assert.Equal(t, remote.ConnOptions{URL: "nats://nats.internal:4222", User: "app", Password: "from-env",
		TLS: remote.TLSOptions{CAFile: "/etc/ssl/nats-ca.pem", CertFile: "/etc/ssl/app.pem"}, ConnectTimeout: 2 * time.Second}, c.NATS)
	assert.Equal(t, map[string]engine.RemoteConfig{
		"gpu": {MaxInFlight: 8, AckWait: 90 * time.Second, MaxDeliver: 3, MaxPayload: 1 << 20, WaitNodes: 2,
			WaitTimeout: 10 * time.Second},
		"gpu_big": {MaxDeliver: 7},
	}, c.Remote)
}

// TestRemoteEnvRejectsUnknownNames: like SLITHER_POOL_*, a SLITHER_REMOTE_*
// or SLITHER_NATS_* variable that names no pool or setting is an error
// naming what is valid, never a new pool.
func TestRemoteEnvRejectsUnknownNames(t *testing.T) {
	var zero engine.Config
	err := zero.ApplyEnv([]string{"SLITHER_REMOTE_GPU_MAX_DELIVER=3"})
	assert.ErrorContains(t, err, "SLITHER_REMOTE_GPU_MAX_DELIVER: names no configured remote pool (SLITHER_REMOTE_<NAME>_<SETTING>, names: none; settings: ACK_WAIT, MAX_DELIVER, MAX_IN_FLIGHT, MAX_PAYLOAD, WAIT_NODES, WAIT_TIMEOUT)")
	assert.Empty(t, zero.Remote, "no remote pool was created")

	c := engine.Config{Remote: map[string]engine.RemoteConfig{"gpu": {}}}
	require.NoError(t, c.ApplyEnv([]string{"SLITHER_NATS_URL=nats://a:4222,nats://b:4222", "SLITHER_NATS_TOKEN=t",
		"SLITHER_NATS_NKEY_SEED_FILE=/s", "SLITHER_NATS_CREDS_FILE=/c", "SLITHER_NATS_NAME=svc",
		"SLITHER_NATS_CONNECT_TIMEOUT=3s", "SLITHER_NATS_TLS_KEY_FILE=/k", "SLITHER_REMOTE_GPU_WAIT_NODES=1"}))
	assert.Equal(t, remote.ConnOptions{URL: "nats://a:4222,nats://b:4222", Token: "t", NKeySeedFile: "/s", CredsFile: "/c",
		Name: "svc", ConnectTimeout: 3 * time.Second, TLS: remote.TLSOptions{KeyFile: "/k"}}, c.NATS)
	assert.Equal(t, engine.RemoteConfig{WaitNodes: 1}, c.Remote["gpu"])

	err = c.ApplyEnv([]string{"SLITHER_REMOTE_CPU_WAIT_NODES=1", "SLITHER_REMOTE_GPU_WORKERS=2",
		"SLITHER_REMOTE_GPU_ACK_WAIT=soon", "SLITHER_NATS_URI=nats://x", "SLITHER_NATS_TLS_CA=/ca",
		"SLITHER_NATS_CONNECT_TIMEOUT=5"})
	assert.ErrorContains(t, err, "SLITHER_REMOTE_CPU_WAIT_NODES: names no configured remote pool (SLITHER_REMOTE_<NAME>_<SETTING>, names: GPU; ")
	assert.ErrorContains(t, err, `SLITHER_REMOTE_GPU_WORKERS: unknown setting for remote pool "gpu" (settings: ACK_WAIT,`)
	assert.ErrorContains(t, err, `SLITHER_REMOTE_GPU_ACK_WAIT="soon": not a duration`)
	assert.ErrorContains(t, err, "SLITHER_NATS_URI: unknown setting (SLITHER_NATS_<SETTING>, settings: CONNECT_TIMEOUT, CREDS_FILE, NAME, NKEY_SEED_FILE, PASSWORD, TOKEN, URL, USER)")
	assert.ErrorContains(t, err, "SLITHER_NATS_TLS_CA: unknown setting (SLITHER_NATS_TLS_<SETTING>, settings: CA_FILE, CERT_FILE, KEY_FILE)")
	assert.ErrorContains(t, err, `SLITHER_NATS_CONNECT_TIMEOUT="5": not a duration`)
	assert.Len(t, c.Remote, 1)
}

func TestRemoteConfigValidation(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"remote: {gpu: {}}", `remote pools [gpu] need nats.url (env SLITHER_NATS_URL)`},
		{"nats: {url: nats://x}\nremote: {gpu: {ack_wait: -1s}}", `remote pool "gpu": ack_wait is negative`},
		{"nats: {url: nats://x}\nremote: {gpu: {max_in_flight: -2}}", `remote pool "gpu": max_in_flight is negative`},
		{"nats: {url: nats://x}\nremote: {gpu.big: {}}", `remote pool "gpu.big": `},
		{"nats: {url: nats://x}\nremote: {'': {}}", `a remote pool has an empty name`},
		{"nats: {url: nats://x}\nremote: {gpu: {}, GPU: {}}", `remote pools "GPU" and "gpu" differ only in case (SLITHER_REMOTE_GPU_* could not tell them apart)`},
		{"nats: {url: nats://x}\nprocess: {gpu: {}}\nremote: {gpu: {}}", `remote pool "gpu" has the name of a process pool`},
		{"nats: {url: nats://x}\nremote: {default: {}}", `remote pool "default" has the name of the process pool the engine starts when process names none`},
		{"nats: {url: nats://x, connect_timeout: -1s}", `nats.connect_timeout is negative`},
		{"nats: {url: nats://x, color: red}", `field color not found`},
		{"remote: {gpu: {workers: 2}}", `field workers not found`},
	} {
		_, err := engine.ParseConfig([]byte(tc.yaml))
		assert.ErrorContains(t, err, tc.want, tc.yaml)
	}
	c, err := engine.ParseConfig([]byte("nats: {url: nats://x}\nprocess: {cpu: {}}\nremote: {default: {}, gpu-1: {}}"))
	require.NoError(t, err, "a remote pool may be named default when a process pool has another name")
	assert.Len(t, c.Remote, 2)
	_, err = engine.ParseConfig([]byte("nats: {url: nats://x}"))
	assert.NoError(t, err, "nats without remote pools is valid (and unused)")
}
