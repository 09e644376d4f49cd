package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
	"github.com/slither-go/slither/pools/remote"
)

func TestDoctorText(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, runDoctor(context.Background(), &out, doctorOptions{check: []string{"json"}, measure: true}))
	s := out.String()
	for _, want := range []string{"Interpreters found", "Recommended pools", "process-", "Module checks", "json", "Warnings"} {
		assert.Contains(t, s, want)
	}
}

func TestDoctorJSONAndRequire(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, runDoctor(context.Background(), &out, doctorOptions{json: true, require: "process"}))
	var r capacity.Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &r))
	assert.NotEmpty(t, r.Interpreters)
	assert.Positive(t, r.CPU.Usable)

	err := runDoctor(context.Background(), &bytes.Buffer{}, doctorOptions{require: "warp-drive"})
	assert.ErrorContains(t, err, `--require "warp-drive"`)

	r.Embedded = capacity.Embedded{Reason: "no cgo"}
	r.Interpreters = []capacity.Interpreter{{Path: "/usr/bin/python3", GILEnabled: true}}
	err = requireProfile(&r, "free-threaded")
	assert.Equal(t, 3, exitCode(err))
	assert.NoError(t, requireProfile(&r, "process"))
}

func TestExampleCommand(t *testing.T) {
	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"example"})
	require.NoError(t, cmd.Execute())
	for _, e := range allExamples {
		assert.Contains(t, out.String(), e.Name)
	}
	cmd = newRoot()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"example", "nope"})
	assert.ErrorContains(t, cmd.Execute(), `no example "nope"`)
}

// putAdvert writes a node's advert into the nodes bucket, as a node's
// heartbeat does.
func putAdvert(t *testing.T, url string, opts []nats.Option, a remote.Advert) {
	t.Helper()
	ctx := context.Background()
	nc, err := nats.Connect(url, opts...)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := remote.EnsureNodes(ctx, js, time.Minute)
	require.NoError(t, err)
	b, err := json.Marshal(a)
	require.NoError(t, err)
	_, err = kv.Put(ctx, a.Node, b)
	require.NoError(t, err)
}

func doctorNodes(t *testing.T, o doctorOptions, environ ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runDoctorNodes(context.Background(), &out, o, environ)
	return out.String(), err
}

func TestDoctorNATSListsNodes(t *testing.T) {
	srv := natsdevtest.Start(t, natsdev.Options{})
	out, err := doctorNodes(t, doctorOptions{nats: srv.URL()})
	require.NoError(t, err)
	assert.Equal(t, "no nodes on "+srv.URL()+"\n", out, "no bucket yet: no nodes")

	now := time.Now()
	putAdvert(t, srv.URL(), nil, remote.Advert{Node: "gpu1-AbC", Host: "gpu1", Pid: 4242, Version: "v1", Started: now,
		Updated: now, Heartbeat: time.Second, Pools: map[string]remote.PoolAdvert{
			"gpu": {Kind: "process", Capacity: 4, Running: 3, GILEnabled: true},
			"cpu": {Kind: "router", Capacity: 8, Running: 1},
		}})
	putAdvert(t, srv.URL(), nil, remote.Advert{Node: "cpu2-XyZ", Host: "cpu2", Pid: 7, Updated: now, Draining: true})
	out, err = doctorNodes(t, doctorOptions{nats: srv.URL()})
	require.NoError(t, err)
	assert.Contains(t, out, "2 node(s) on "+srv.URL())
	assert.Regexp(t, regexp.MustCompile(`(?m)^NODE +HOST +PID +STATE +HEARTBEAT +POOLS`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^cpu2-XyZ +cpu2 +7 +draining +[0-9.]+m?s ago +none$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^gpu1-AbC +gpu1 +4242 +serving +[0-9.]+m?s ago +cpu 1/8 \(router, GIL off\), gpu 3/4 \(process, GIL on\)$`), out)

	out, err = doctorNodes(t, doctorOptions{nats: srv.URL(), json: true})
	require.NoError(t, err)
	var r nodesReport
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.Len(t, r.Nodes, 2)
	assert.Equal(t, "cpu2-XyZ", r.Nodes[0].Node, "sorted by id")
	assert.Equal(t, remote.PoolAdvert{Kind: "process", Capacity: 4, Running: 3, GILEnabled: true}, r.Nodes[1].Pools["gpu"])
	assert.Empty(t, r.Warnings)
}

// TestDoctorNATSWarnsOfABadAdvert: an unreadable advert is a warning; the
// good nodes are still listed.
func TestDoctorNATSWarnsOfABadAdvert(t *testing.T) {
	srv := natsdevtest.Start(t, natsdev.Options{})
	putAdvert(t, srv.URL(), nil, remote.Advert{Node: "ok-1", Host: "ok", Pid: 1, Updated: time.Now()})
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(context.Background(), remote.NodesBucket)
	require.NoError(t, err)
	_, err = kv.Put(context.Background(), "junk", []byte("{not json"))
	require.NoError(t, err)
	out, err := doctorNodes(t, doctorOptions{nats: srv.URL()})
	require.NoError(t, err)
	assert.Contains(t, out, "1 node(s) on ")
	assert.Regexp(t, `(?m)^warning: .*malformed`, out)
}

func TestDoctorNATSCredentialsAndErrors(t *testing.T) {
	srv := natsdevtest.Start(t, natsdev.Options{Token: "s3cret"})
	putAdvert(t, srv.URL(), []nats.Option{nats.Token("s3cret")}, remote.Advert{Node: "n-1", Host: "h", Pid: 1, Updated: time.Now()})

	_, err := doctorNodes(t, doctorOptions{nats: srv.URL()})
	assert.ErrorIs(t, err, remote.ErrAuth, "no credentials")
	out, err := doctorNodes(t, doctorOptions{nats: srv.URL()}, "SLITHER_NATS_TOKEN=s3cret", "SLITHER_POOL_NOPE_WORKERS=x")
	require.NoError(t, err, "the token from the environment; other variables are not doctor's")
	assert.Contains(t, out, "1 node(s)")

	cfg := filepath.Join(t.TempDir(), "slither.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("nats: {url: "+srv.URL()+", token: s3cret}\n"), 0o600))
	out, err = doctorNodes(t, doctorOptions{config: cfg})
	require.NoError(t, err, "--config alone: its url and token")
	assert.Contains(t, out, "n-1")
	require.NoError(t, os.WriteFile(cfg, []byte("nats: {url: nats://127.0.0.1:1, token: s3cret}\n"), 0o600))
	out, err = doctorNodes(t, doctorOptions{config: cfg, nats: srv.URL()})
	require.NoError(t, err, "--nats wins over the config's url")
	assert.Contains(t, out, "n-1")
	require.NoError(t, os.WriteFile(cfg, []byte("thread: {workers: 1}\n"), 0o600))
	_, err = doctorNodes(t, doctorOptions{config: cfg})
	assert.ErrorContains(t, err, "has no nats.url; pass --nats URL")

	// Nothing listens on a port just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "nats://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = doctorNodes(t, doctorOptions{nats: dead})
	assert.ErrorContains(t, err, "doctor: NATS unreachable: remote: connecting to "+dead)
}

// TestDoctorNATSFlag runs the command line: --nats picks the nodes report.
func TestDoctorNATSFlag(t *testing.T) {
	srv := natsdevtest.Start(t, natsdev.Options{})
	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"doctor", "--nats", srv.URL(), "--json"})
	require.NoError(t, cmd.Execute())
	var r nodesReport
	require.NoError(t, json.Unmarshal(out.Bytes(), &r))
	assert.Equal(t, srv.URL(), r.URL)
	assert.NotNil(t, r.Nodes, "[] rather than null")
	assert.Empty(t, r.Nodes)
}
