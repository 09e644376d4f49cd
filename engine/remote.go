package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// RemoteConfig configures one remote pool; each field maps to the
// remote.Options field of the same name (zero means that field's default).
type RemoteConfig struct {
	// MaxInFlight bounds the batches published and unfinished at once; 0
	// means the capacity the nodes serving the pool advertise.
	MaxInFlight int `yaml:"max_in_flight"`
	// AckWait is a node's lease on one batch, kept alive while it runs: a
	// node that dies holding it loses it after AckWait and the batch goes
	// to another node.
	AckWait time.Duration `yaml:"ack_wait"`
	// MaxDeliver is how many deliveries a batch may use (each by a node
	// that died under it, or handed it back unrun) before it fails with
	// remote.ErrRedelivered.
	MaxDeliver int `yaml:"max_deliver"`
	// MaxPayload is the largest encoded batch or result, in bytes.
	MaxPayload int `yaml:"max_payload"`
	// WaitNodes makes Start wait until this many nodes serve the pool, for
	// at most WaitTimeout (then Start fails).
	WaitNodes   int           `yaml:"wait_nodes"`
	WaitTimeout time.Duration `yaml:"wait_timeout"`
}

// options maps the configuration onto remote.Options (the fields it does
// not set are the engine's: Conn, Name, Host, Telemetry, Logger).
func (rc RemoteConfig) options() remote.Options {
	return remote.Options{
		MaxInFlight: rc.MaxInFlight, AckWait: rc.AckWait, MaxDeliver: rc.MaxDeliver, MaxPayload: rc.MaxPayload,
		WaitNodes: rc.WaitNodes, WaitTimeout: rc.WaitTimeout,
	}
}

// validateRemote checks the nats section and the remote pools.
func (c Config) validateRemote() []error {
	var errs []error
	if c.NATS.ConnectTimeout < 0 {
		errs = append(errs, errors.New("nats.connect_timeout is negative"))
	}
	if len(c.Remote) == 0 {
		return errs
	}
	if c.NATS.URL == "" {
		errs = append(errs, fmt.Errorf("remote pools %v need nats.url (env SLITHER_NATS_URL)", slices.Sorted(maps.Keys(c.Remote))))
	}
	errs = append(errs, validateNamed("remote pool", remoteEnvPrefix, c.Remote)...)
	for _, name := range slices.Sorted(maps.Keys(c.Remote)) {
		if name == "" {
			continue // validateNamed said so
		}
		if err := remote.ValidName(name); err != nil {
			errs = append(errs, fmt.Errorf("remote pool %q: %w", name, err))
		}
		if _, ok := c.Process[name]; ok {
			errs = append(errs, fmt.Errorf("remote pool %q has the name of a process pool (Engine.Pool could not tell them apart)", name))
		} else if len(c.Process) == 0 && name == DefaultPool {
			errs = append(errs, fmt.Errorf("remote pool %q has the name of the process pool the engine starts when process names none", name))
		}
	}
	return errs
}

// startRemote connects to NATS and starts the remote pools; nothing when
// the config names none. Close undoes it (closeRemote).
func (e *Engine) startRemote(ctx context.Context, host pools.HostFunc) error {
	if len(e.cfg.Remote) == 0 {
		return nil
	}
	co := e.cfg.NATS
	if co.Logger == nil {
		co.Logger = e.log()
	}
	nc, err := remote.Connect(ctx, co)
	if err != nil {
		return fmt.Errorf("engine: remote pools: %w", err)
	}
	e.nc = nc
	for _, name := range slices.Sorted(maps.Keys(e.cfg.Remote)) {
		o := e.cfg.Remote[name].options()
		o.Conn, o.Name, o.Host, o.Telemetry, o.Logger = nc, name, host, e.tel, e.log()
		p, err := remote.New(ctx, o)
		if err != nil {
			return fmt.Errorf("engine: remote pool %q: %w", name, err)
		}
		e.remotes[name] = p
	}
	return nil
}

// closeConn ends the NATS connection once the remote pools are closed:
// what they published is flushed first (while ctx lasts), so a last
// cancel or result ack is not lost.
func (e *Engine) closeConn(ctx context.Context) error {
	if e.nc == nil {
		return nil
	}
	var err error
	if _, ok := ctx.Deadline(); ok && e.nc.IsConnected() {
		// FlushWithContext needs a deadline; without one Close's own
		// flush of the write buffer is all there is.
		if ferr := e.nc.FlushWithContext(ctx); ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
			err = fmt.Errorf("engine: flushing the NATS connection: %w", ferr)
		}
	}
	e.nc.Close()
	return err
}

// RemotePool returns the remote pool named name, or nil when the config
// names none.
func (e *Engine) RemotePool(name string) *remote.Pool { return e.remotes[name] }
