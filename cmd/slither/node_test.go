package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// TestNodeCommandDevServesAndDrainsOnSIGTERM runs `slither node --dev` as a
// child process (this test binary running main()): it prints the dev
// server's URL and the node it serves, runs a batch published there, and
// on SIGTERM drains and exits 0.
func TestNodeCommandDevServesAndDrainsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node process; -short skips it")
	}
	python := os.Getenv("SLITHER_TEST_PYTHON")
	if python == "" {
		python = engine.DefaultPython()
	}
	cfg := filepath.Join(t.TempDir(), "node.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, "thread: {disabled: true}\nprocess:\n  default: {python: %q, workers: 1}\n", python), 0o600))
	cmd := exec.Command(os.Args[0], "node", "--dev", "127.0.0.1:0", "--dev-dir", t.TempDir(), "--config", cfg, "--id", "cli-node")
	cmd.Env = append(os.Environ(), remoteChildEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expect := func(re string) []string {
		t.Helper()
		timeout := time.After(nodeWait)
		for {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "the node exited before printing %q", re)
				t.Logf("node: %s", l)
				if m := regexp.MustCompile(re).FindStringSubmatch(l); m != nil {
					return m
				}
			case <-timeout:
				t.Fatalf("the node did not print %q", re)
			}
		}
	}
	url := expect(`^dev NATS server: (nats://127\.0\.0\.1:\d+) \(JetStream store .+\)$`)[1]
	expect(`^node cli-node serving pools default on ` + regexp.QuoteMeta(url) + `$`)

	// A coordinator's batch, through the protocol's codec.
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), nodeWait)
	defer cancel()
	codec := &remote.Codec{Conn: nc, JS: js}
	coord := remote.NewCoordID()
	rs, err := remote.EnsureResults(ctx, js)
	require.NoError(t, err)
	results, err := rs.CreateOrUpdateConsumer(ctx, remote.ResultConsumerConfig(coord))
	require.NoError(t, err)
	msg, err := codec.EncodeCall(ctx, remote.Call{ID: coord + "-1", Coord: coord, Pool: "default",
		Batch: pools.Batch{Module: "builtins", Function: "list", Items: []any{int64(1), "two"}}})
	require.NoError(t, err)
	_, err = js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	m, err := results.Next(jetstream.FetchMaxWait(nodeWait))
	require.NoError(t, err)
	r, err := codec.DecodeReply(ctx, m.Headers(), m.Data())
	require.NoError(t, err)
	require.NoError(t, r.Err)
	assert.Equal(t, []any{int64(1), "two"}, r.Results)
	assert.Equal(t, "cli-node", r.Node)
	require.NoError(t, m.Ack())
	nc.Close()

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	expect(`^node cli-node draining`)
	expect(`^node cli-node drained$`)
	for range lines { // the rest, until the pipe closes
	}
	require.NoError(t, cmd.Wait(), "a clean drain exits 0")
}

// nodeWait bounds the waits of the node command's test.
const nodeWait = 60 * time.Second

func TestNodeCommandRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "--dev", "0.0.0.0:4222"}, "loopback only"},
		{[]string{"node", "--dev", "127.0.0.1"}, "want HOST:PORT"},
		{[]string{"node", "--dev", "127.0.0.1:0", "--nats", "nats://x:4222"}, "give one"},
		{[]string{"node", "--dev-dir", t.TempDir()}, "--dev-dir needs --dev"},
		{[]string{"node", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, "missing.yaml"},
	} {
		_, err := runCLI(t, c.args...)
		assert.ErrorContains(t, err, c.want, "%v", c.args)
	}
	t.Setenv("SLITHER_NATS_URL", "")
	_, err := runCLI(t, "node", "--pools", "bad.name", "--nats", "nats://127.0.0.1:1")
	assert.ErrorContains(t, err, "not a valid remote name")
}
