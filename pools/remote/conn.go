// Package remote is the remote pool: batches published to a NATS
// JetStream work queue and run by `slither node` processes (package node)
// on other machines, behind the same pools.Pool contract as the local
// pools, so dispatch, pipe and sessions use it unchanged.
//
// Pool (New, Options) is the coordinator's side: it publishes batches,
// bounds the batches in flight by the capacity the nodes advertise, matches
// results by batch id and drops duplicates, pins sessions to one node,
// answers the nodes' host calls (store views) and keeps its JetStream
// listeners alive. The protocol both sides speak — subject, stream and
// bucket names, the Call/Reply/host-call Codec with object-store payloads,
// node adverts, the set-up helpers — is in proto*.go. ConnOptions and
// Connect open the connection with the user's credentials (user/password,
// token, nkey seed, creds file, TLS), routing asynchronous errors
// (permission violations) to a slog.Logger. docs/remote.md is the guide.
package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultConnectTimeout bounds one connection attempt when
// ConnOptions.ConnectTimeout is zero.
const DefaultConnectTimeout = 5 * time.Second

// Errors returned by Connect, for errors.Is.
var (
	// ErrConfig: the ConnOptions are invalid (conflicting credentials, a
	// missing or unsafe file, a bad URL). Nothing was dialled.
	ErrConfig = errors.New("invalid NATS connection settings")
	// ErrInsecureFile: a secret file (nkey seed, creds, TLS key) can be read
	// by group or others. It also matches ErrConfig.
	ErrInsecureFile = errors.New("secret file readable by group or others")
	// ErrAuth: the server rejected the credentials. The error also matches
	// the nats.go cause (nats.ErrAuthorization and friends).
	ErrAuth = errors.New("authorization failed")
	// ErrTLS: the TLS handshake failed or TLS was required by one side only.
	ErrTLS = errors.New("TLS failed")
)

// ConnOptions are the settings for connecting to NATS, as they appear in
// YAML config. At most one credential kind may be set: User+Password,
// Token, NKeySeedFile or CredsFile.
type ConnOptions struct {
	// URL is the server URL, or several separated by commas
	// (nats://host:4222, tls://host:4222). Required.
	URL string `yaml:"url"`
	// User and Password authenticate with username/password (both or none).
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// Token authenticates with a server token.
	Token string `yaml:"token"`
	// NKeySeedFile is a file holding a user nkey seed ("SU..."); it must not
	// be readable by group or others.
	NKeySeedFile string `yaml:"nkey_seed_file"`
	// CredsFile is a JWT creds file (operator/resolver mode servers); it
	// must not be readable by group or others.
	CredsFile string `yaml:"creds_file"`
	// TLS configures TLS; any field set turns TLS on.
	TLS TLSOptions `yaml:"tls"`
	// Name is the connection name shown by the server; default "slither".
	Name string `yaml:"name"`
	// ConnectTimeout bounds one connection attempt; default
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Logger receives asynchronous errors (permission violations, slow
	// consumer), disconnects and reconnects; nil discards them. nats.go
	// would otherwise print them to stderr.
	Logger *slog.Logger `yaml:"-"`
}

// TLSOptions are PEM files for TLS. Server certificates are always verified:
// there is deliberately no way to skip verification.
type TLSOptions struct {
	// CAFile holds the CA certificates that sign the server's certificate;
	// empty = the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate and key for mutual
	// TLS (both or none). KeyFile must not be readable by group or others.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

func (t TLSOptions) enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Connect validates o and connects to NATS. ctx bounds the attempt: its
// deadline shortens ConnectTimeout, and a cancelled ctx fails the call (a
// cancellation without deadline is noticed when the attempt ends, within
// ConnectTimeout per server URL, each URL tried in turn). After a
// disconnect the connection reconnects until the caller closes it, so that
// a NATS restart is survived — except that nats.go gives up when the same
// authorization error comes twice in a row (credentials revoked): the
// connection then closes, and Logger says why. A refused or unreachable
// server fails at once ("no servers available for connection").
func Connect(ctx context.Context, o ConnOptions) (*nats.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("remote: connecting to %s: %w", redact(o.URL), err)
	}
	opts, err := o.natsOptions()
	if err != nil {
		return nil, err
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 0 {
		return nil, fmt.Errorf("remote: connecting to %s: %w", redact(o.URL), context.DeadlineExceeded)
	}
	// ctx bounds the first connection's dials only: nats.go keeps the
	// Timeout option for every reconnect, so it stays ConnectTimeout.
	dialer := &ctxDialer{ctx: ctx, d: net.Dialer{Timeout: timeout}}
	opts = append(opts, nats.Timeout(timeout), nats.SetCustomDialer(dialer))
	nc, err := nats.Connect(o.URL, opts...)
	dialer.done()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("remote: connecting to %s: %w: %w", redact(o.URL), cerr, err)
		}
		return nil, o.connectError(err)
	}
	if err := ctx.Err(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("remote: connecting to %s: %w", redact(o.URL), err)
	}
	return nc, nil
}

// ctxDialer dials under the first connection's ctx (so cancelling it stops
// a dial at once), then, once Connect has returned, under none: reconnects
// must not inherit a request's deadline.
type ctxDialer struct {
	mu  sync.Mutex
	ctx context.Context // nil once the first connection is made
	d   net.Dialer
}

// Dial is nats.CustomDialer's.
func (c *ctxDialer) Dial(network, address string) (net.Conn, error) {
	c.mu.Lock()
	ctx := c.ctx
	c.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	return c.d.DialContext(ctx, network, address)
}

func (c *ctxDialer) done() {
	c.mu.Lock()
	c.ctx = nil
	c.mu.Unlock()
}

// natsOptions validates o and maps it onto nats options.
func (o ConnOptions) natsOptions() ([]nats.Option, error) {
	if strings.TrimSpace(o.URL) == "" {
		return nil, configErr("no NATS url")
	}
	urlCreds := false
	for i, raw := range strings.Split(o.URL, ",") {
		raw = strings.TrimSpace(raw)
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw // nats.go accepts host:port
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			// Named by position: a comma in a password would put part
			// of it in this piece.
			return nil, configErr("bad NATS url (the %s of %s)", ordinal(i+1), redact(o.URL))
		}
		urlCreds = urlCreds || u.User != nil
	}
	var kinds []string
	if urlCreds {
		kinds = append(kinds, "credentials in the url")
	}
	if o.User != "" || o.Password != "" {
		if o.User == "" || o.Password == "" {
			return nil, configErr("user and password must be set together")
		}
		kinds = append(kinds, "user/password")
	}
	if o.Token != "" {
		kinds = append(kinds, "token")
	}
	if o.NKeySeedFile != "" {
		kinds = append(kinds, "nkey_seed_file")
	}
	if o.CredsFile != "" {
		kinds = append(kinds, "creds_file")
	}
	if len(kinds) > 1 {
		return nil, configErr("%s are set together; use only one kind of credentials", strings.Join(kinds, " and "))
	}

	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := o.Name
	if name == "" {
		name = "slither"
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"url", redact(o.URL), "err", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			log.Error("remote: NATS async error", attrs...)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("remote: disconnected from NATS", "url", redact(o.URL), "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("remote: reconnected to NATS", "url", redact(nc.ConnectedUrlRedacted()))
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Debug("remote: reconnecting to NATS failed", "url", redact(o.URL), "err", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			// Closed by the caller, or by nats.go giving up (the same
			// authorization error twice while reconnecting).
			if err := nc.LastError(); err != nil {
				log.Error("remote: NATS connection closed", "url", redact(o.URL), "err", err)
			}
		}),
	}
	switch {
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	case o.NKeySeedFile != "":
		if err := checkSecretFile("nkey_seed_file", o.NKeySeedFile); err != nil {
			return nil, err
		}
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, configErr("nkey_seed_file %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	case o.CredsFile != "":
		if err := checkSecretFile("creds_file", o.CredsFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLS.enabled() {
		cfg, err := o.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

func (t TLSOptions) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, configErr("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, configErr("tls ca_file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, configErr("tls cert_file and key_file must be set together")
	}
	if t.CertFile != "" {
		if err := checkSecretFile("tls key_file", t.KeyFile); err != nil {
			return nil, err
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, configErr("tls cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// checkSecretFile requires a regular file that group and others cannot
// read or write (0600 or 0400): a leaked seed is a leaked identity.
func checkSecretFile(what, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return configErr("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return configErr("%s %s is not a regular file", what, path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("remote: %w: %w: %s %s has mode %04o; chmod 600 it",
			ErrConfig, ErrInsecureFile, what, path, fi.Mode().Perm())
	}
	return nil
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("remote: %w: %w", ErrConfig, fmt.Errorf(format, args...))
}

// connectError wraps a failed nats.Connect, naming the server (without
// secrets) and the identity that was tried.
func (o ConnOptions) connectError(err error) error {
	where := redact(o.URL)
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrNkeysNotSupported):
		return fmt.Errorf("remote: connecting to %s: %w (%s): %w", where, ErrAuth, o.identity(), err)
	case isTLSError(err):
		what := "system roots"
		if o.TLS.CAFile != "" {
			what = "ca_file " + o.TLS.CAFile
		}
		if o.TLS.CertFile != "" {
			what += ", cert_file " + o.TLS.CertFile
		} else {
			what += ", no client certificate"
		}
		return fmt.Errorf("remote: connecting to %s: %w (%s): %w", where, ErrTLS, what, err)
	}
	return fmt.Errorf("remote: connecting to %s: %w", where, err)
}

// identity names the credentials without revealing a secret.
func (o ConnOptions) identity() string {
	switch {
	case o.User != "":
		return fmt.Sprintf("user %q", o.User)
	case o.Token != "":
		return "token"
	case o.NKeySeedFile != "":
		return "nkey seed " + o.NKeySeedFile
	case o.CredsFile != "":
		return "creds " + o.CredsFile
	case strings.Contains(redact(o.URL), "***@"):
		return "credentials in the url"
	}
	return "no credentials"
}

func isTLSError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		alert     tls.AlertError
	)
	return errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &record) || errors.As(err, &alert) ||
		errors.Is(err, nats.ErrTLS) || errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) ||
		isRemoteTLSAlert(err)
}

// isRemoteTLSAlert reports an alert sent by the server (a rejected client
// certificate): crypto/tls returns it as a *net.OpError around an
// unexported type.
func isRemoteTLSAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && op.Err != nil && strings.HasPrefix(op.Err.Error(), "tls: ")
}

// redact drops user info (passwords, tokens) from a URL list for
// messages. It works on the whole list, not URL by URL: a password may
// hold a comma.
func redact(urls string) string {
	segs := strings.Split(urls, "@")
	for i := range len(segs) - 1 { // every segment but the last ends in user info
		seg := segs[i]
		switch {
		case strings.LastIndex(seg, "://") >= 0:
			seg = seg[:strings.LastIndex(seg, "://")+3]
		case i > 0 && strings.LastIndex(seg, ",") >= 0: // "host:port,user:pass" — no scheme
			seg = seg[:strings.LastIndex(seg, ",")+1]
		default:
			seg = ""
		}
		segs[i] = seg + "***"
	}
	return strings.Join(segs, "@")
}

// ordinal names a position for messages: 1st, 2nd, 3rd, 4th...
func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return fmt.Sprintf("%dth", n)
	case n%10 == 1:
		return fmt.Sprintf("%dst", n)
	case n%10 == 2:
		return fmt.Sprintf("%dnd", n)
	case n%10 == 3:
		return fmt.Sprintf("%drd", n)
	}
	return fmt.Sprintf("%dth", n)
}
