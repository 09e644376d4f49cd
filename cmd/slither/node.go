package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/cachedir"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/node"
	"github.com/slither-go/slither/pools/remote"
)

type nodeOptions struct {
	config       string
	nats         string
	pools        []string
	id           string
	dev          string
	devDir       string
	drainTimeout time.Duration
}

func newNode() *cobra.Command {
	o := nodeOptions{}
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Serve this machine's pools to remote engines over NATS JetStream",
		Long: `node runs a local engine (thread pool and process pools, configured like any engine:
--config FILE in the engine's YAML format, then SLITHER_* variables) and serves its pools to
engines whose config names them under remote:. It pulls batches from the pools' JetStream work
queues, runs them, publishes each result and only then acknowledges the batch, keeps long
batches leased while they run, and advertises itself (capacity, load, GIL) in the nodes bucket.

The NATS connection is the config's nats: section (SLITHER_NATS_URL, credentials, TLS), or
--nats URL. --dev LISTEN starts an embedded NATS server with JetStream in this process (its
store under the user cache directory, or --dev-dir) and serves on it, so one machine can try
remote pools with no NATS installed: point an engine's nats.url at the URL it prints.

SIGTERM or Ctrl-C drains: no new batches are taken, running ones finish and are answered,
then the node leaves; a second signal, or --drain-timeout, ends it at once (its unfinished
batches go to other nodes after their lease).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			return runNode(cmd.Context(), cmd.OutOrStdout(), log, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "engine config file (YAML; its nats: section is the connection)")
	f.StringVar(&o.nats, "nats", "", "NATS server URL (overrides nats.url and SLITHER_NATS_URL)")
	f.StringSliceVar(&o.pools, "pools", nil, "pools to serve, comma-separated (default: every process pool of the config)")
	f.StringVar(&o.id, "id", "", "node id (default: host name and a random suffix; new at every start)")
	f.StringVar(&o.dev, "dev", "", "start an embedded NATS server listening on this address (e.g. 127.0.0.1:4222) and serve on it")
	f.StringVar(&o.devDir, "dev-dir", "", "the embedded server's JetStream store with --dev (default: nats-dev in the user cache directory)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", node.DefaultDrainTimeout, "how long a drain waits for running batches")
	return cmd
}

// runNode runs `slither node` until ctx ends (the first signal), then
// drains.
func runNode(ctx context.Context, out io.Writer, log *slog.Logger, o nodeOptions) error {
	cfg, err := loadNodeConfig(o.config)
	if err != nil {
		return err
	}
	if o.nats != "" {
		cfg.NATS.URL = o.nats
	}
	if o.devDir != "" && o.dev == "" {
		return errors.New("node: --dev-dir needs --dev")
	}
	if o.dev != "" {
		if o.nats != "" {
			return errors.New("node: --dev and --nats both name a server: give one")
		}
		srv, dir, err := startDev(o.dev, o.devDir, log)
		if err != nil {
			return err
		}
		defer srv.Close()
		// The dev server has no credentials: keep only the timeout.
		cfg.NATS = remote.ConnOptions{URL: srv.URL(), ConnectTimeout: cfg.NATS.ConnectTimeout}
		fmt.Fprintf(out, "dev NATS server: %s (JetStream store %s)\n", srv.URL(), dir)
		fmt.Fprintf(out, "  engines join with nats: {url: %s} or SLITHER_NATS_URL=%s\n", srv.URL(), srv.URL())
	}
	n, err := node.Start(ctx, node.Options{Engine: cfg, Pools: o.pools, ID: o.id, DrainTimeout: o.drainTimeout, Logger: log})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "node %s serving pools %s on %s\n", n.ID(), strings.Join(n.Pools(), ", "), cfg.NATS.URL)
	select {
	case <-ctx.Done():
	case <-n.Failed():
	}
	fmt.Fprintf(out, "node %s draining (a second signal ends it at once)\n", n.ID())
	dctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	if err := errors.Join(n.Err(), n.Shutdown(dctx)); err != nil {
		return err
	}
	fmt.Fprintf(out, "node %s drained\n", n.ID())
	return nil
}

// loadNodeConfig is the engine config: the file's (with the environment
// applied), or the environment's alone.
func loadNodeConfig(path string) (engine.Config, error) {
	if path != "" {
		return engine.LoadConfig(path)
	}
	var cfg engine.Config
	return cfg, cfg.ApplyEnv(os.Environ())
}

// startDev starts the embedded NATS server of --dev and returns it with
// its store directory. It listens on loopback only: it has no
// credentials, and whoever can publish a batch chooses the Python function
// the node calls.
func startDev(listen, dir string, log *slog.Logger) (*natsdev.Server, string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, "", fmt.Errorf("node: --dev %q: %w (want HOST:PORT, e.g. 127.0.0.1:4222)", listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, "", fmt.Errorf("node: --dev %q: port %q is not a number", listen, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if !monitor.Loopback(host) {
		return nil, "", fmt.Errorf("node: --dev %q: the dev server has no credentials and listens on loopback only (127.0.0.1, ::1, localhost); for other machines run a NATS server with credentials", listen)
	}
	if dir == "" {
		root, err := cachedir.Root()
		if err != nil {
			return nil, "", fmt.Errorf("node: --dev: %w (or give --dev-dir)", err)
		}
		dir = filepath.Join(root, "nats-dev")
	}
	srv, err := natsdev.Start(natsdev.Options{Dir: dir, Host: host, Port: p, Logger: log})
	if err != nil {
		return nil, "", fmt.Errorf("node: --dev: %w", err)
	}
	return srv, dir, nil
}
