// Package natsdev runs an embedded NATS server with JetStream inside the
// current process, so that remote pools can be tried on one machine with
// no NATS installed: `slither node --dev` runs one, and a program can start
// one, serve a pool on it with node.Start and point an engine's remote pool
// at URL (docs/remote.md shows it). The remote pool's tests use it too
// (natsdevtest). Production wants a real NATS deployment instead.
//
// Importing this package links the NATS server into the binary (about
// 20 MB); the engine, node and pools/remote packages never import it.
//
// The server never installs signal handlers (NoSigs): SIGTERM belongs to the
// host process, whose drain logic must see it.
package natsdev

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// readyTimeout bounds how long Start and Restart wait for the listener.
const readyTimeout = 10 * time.Second

// Options configures an embedded server. Only Dir is required.
type Options struct {
	// Dir is the JetStream store (created if missing; files go to
	// Dir/jetstream). Required: an empty store dir would make the server use
	// a directory under os.TempDir() shared by every process on the machine.
	Dir string
	// Host is the listen address; default 127.0.0.1.
	Host string
	// Port is the client port; 0 picks a free port (see URL).
	Port int
	// MaxPayload is the largest message in bytes; 0 = the server's default
	// (1 MiB). The server refuses values above its 64 MiB pending limit.
	MaxPayload int
	// Users are username/password identities. With Users or NKeys set, every
	// client must authenticate as one of them.
	Users []User
	// Token, when set, is the single token every client must present. It
	// cannot be combined with Users or NKeys (the server would ignore it).
	Token string
	// NKeys are public-key identities (the client signs a nonce with the seed).
	NKeys []NKeyUser
	// TLS, when set, makes the server require TLS from clients (URL then
	// starts with tls://). Set ClientAuth to tls.RequireAndVerifyClientCert
	// for mutual TLS. The config is cloned at Start.
	TLS *tls.Config
	// Logger receives the server's warnings and errors; nil = no logs.
	Logger *slog.Logger
}

// User is a username/password identity of the embedded server.
type User struct {
	Name        string
	Password    string
	Permissions Permissions
}

// NKeyUser is an nkey identity: PublicKey is the user's public key ("U...").
type NKeyUser struct {
	PublicKey   string
	Permissions Permissions
}

// Permissions are allow-lists of subjects (wildcards allowed). An empty list
// leaves that direction unrestricted; a non-empty one denies every subject
// it does not match.
type Permissions struct {
	Publish   []string
	Subscribe []string
	// Responses lets the identity reply to the requests it receives (each
	// requester's reply subject once, within a minute) even where Publish
	// does not list them: what a coordinator answering host calls needs.
	Responses bool
}

// Server is a running (or stopped) embedded NATS server. Its methods are
// safe for concurrent use.
type Server struct {
	opts Options // defaults applied; Port fixed after the first start
	url  string

	mu  sync.Mutex
	srv *server.Server // nil while stopped
}

// Start validates opts and starts a server with JetStream on, returning once
// it accepts connections. The caller must Close it.
func Start(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.TLS != nil {
		opts.TLS = opts.TLS.Clone()
	}
	s := &Server{opts: opts}
	srv, err := s.start(opts.Port)
	if err != nil {
		return nil, err
	}
	if tcp, ok := srv.Addr().(*net.TCPAddr); ok {
		s.opts.Port = tcp.Port
	} else {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("natsdev: server at %s has no TCP listener", opts.Host)
	}
	scheme := "nats"
	if opts.TLS != nil {
		scheme = "tls"
	}
	s.url = scheme + "://" + net.JoinHostPort(opts.Host, strconv.Itoa(s.opts.Port))
	s.srv = srv
	return s, nil
}

// URL is the client URL (nats://host:port, or tls://host:port with TLS). It
// stays the same across Restart.
func (s *Server) URL() string { return s.url }

// Close shuts the server down and waits until every one of its goroutines
// has ended. Clients see a disconnect. Calling it again does nothing;
// Restart starts the server again after a Close.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Restart stops the server if it runs, then starts it again on the same
// port with the same store and options: file-storage streams, their
// messages and durable consumers survive; memory storage does not. Clients
// that reconnect (nats.MaxReconnects) resume. It fails if the port was taken
// in between.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	srv, err := s.start(s.opts.Port)
	if err != nil {
		return fmt.Errorf("natsdev: restarting on %s: %w", s.url, err)
	}
	s.srv = srv
	return nil
}

func (s *Server) stopLocked() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// start builds and starts one server instance on port (0 = random).
func (s *Server) start(port int) (*server.Server, error) {
	so := s.serverOptions(port)
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsdev: configuring server: %w", err)
	}
	log := &slogBridge{log: s.opts.Logger}
	// Always set a logger: it also records the server's fatal errors, which
	// it reports only through the logger.
	srv.SetLoggerV2(log, false, false, false)
	srv.Start() // returns once started (the accept loop runs in its own goroutine), or after a fatal error
	if err := log.fatal(); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("natsdev: starting server on %s:%d: %w", so.Host, port, err)
	}
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("natsdev: server on %s:%d not ready after %s", so.Host, port, readyTimeout)
	}
	return srv, nil
}

func (s *Server) serverOptions(port int) *server.Options {
	o := s.opts
	so := &server.Options{
		ServerName: "slither-dev",
		Host:       o.Host,
		Port:       port,
		NoLog:      o.Logger == nil,
		NoSigs:     true, // the host process owns SIGTERM/SIGINT
		JetStream:  true,
		StoreDir:   o.Dir,
		MaxPayload: int32(o.MaxPayload),
	}
	if port == 0 {
		so.Port = server.RANDOM_PORT
	}
	for _, u := range o.Users {
		so.Users = append(so.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: u.Permissions.server()})
	}
	for _, k := range o.NKeys {
		so.Nkeys = append(so.Nkeys, &server.NkeyUser{Nkey: k.PublicKey, Permissions: k.Permissions.server()})
	}
	so.Authorization = o.Token
	if o.TLS != nil {
		so.TLS = true
		so.TLSConfig = o.TLS
		so.TLSVerify = o.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	return so
}

func (o *Options) validate() error {
	if o.Dir == "" {
		return errors.New("natsdev: Options.Dir (the JetStream store) is empty")
	}
	if o.Port < 0 || o.Port > math.MaxUint16 {
		return fmt.Errorf("natsdev: port %d out of range", o.Port)
	}
	if o.MaxPayload < 0 || o.MaxPayload > math.MaxInt32 {
		return fmt.Errorf("natsdev: max payload %d out of range", o.MaxPayload)
	}
	if o.Token != "" && (len(o.Users) > 0 || len(o.NKeys) > 0) {
		return errors.New("natsdev: Token cannot be combined with Users or NKeys")
	}
	seen := map[string]bool{}
	for i, u := range o.Users {
		if u.Name == "" {
			return fmt.Errorf("natsdev: user %d has no name", i)
		}
		if seen[u.Name] {
			return fmt.Errorf("natsdev: user %q listed twice", u.Name)
		}
		seen[u.Name] = true
	}
	for i, k := range o.NKeys {
		if !nkeys.IsValidPublicUserKey(k.PublicKey) {
			return fmt.Errorf("natsdev: nkey user %d: %q is not a user public key", i, k.PublicKey)
		}
	}
	return nil
}

func (p Permissions) server() *server.Permissions {
	if len(p.Publish) == 0 && len(p.Subscribe) == 0 && !p.Responses {
		return nil
	}
	sp := &server.Permissions{}
	if p.Responses {
		sp.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	if len(p.Publish) > 0 {
		sp.Publish = &server.SubjectPermission{Allow: append([]string(nil), p.Publish...)}
	}
	if len(p.Subscribe) > 0 {
		sp.Subscribe = &server.SubjectPermission{Allow: append([]string(nil), p.Subscribe...)}
	}
	return sp
}

// slogBridge implements server.Logger: warnings and errors go to log (when
// set); notices, debug and trace are dropped. Fatal messages are also kept,
// because the server reports start-up failures only through Fatalf.
type slogBridge struct {
	log *slog.Logger

	mu       sync.Mutex
	fatalMsg string
}

func (b *slogBridge) fatal() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fatalMsg == "" {
		return nil
	}
	return errors.New(b.fatalMsg)
}

func (b *slogBridge) emit(level slog.Level, format string, v []any) {
	if b.log == nil || !b.log.Enabled(context.Background(), level) {
		return
	}
	b.log.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "nats-server")
}

func (b *slogBridge) Noticef(string, ...any) {}
func (b *slogBridge) Debugf(string, ...any)  {}
func (b *slogBridge) Tracef(string, ...any)  {}

func (b *slogBridge) Warnf(format string, v ...any)  { b.emit(slog.LevelWarn, format, v) }
func (b *slogBridge) Errorf(format string, v ...any) { b.emit(slog.LevelError, format, v) }

// Fatalf records the first fatal message; unlike the server's own logger it
// does not exit the process.
func (b *slogBridge) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	b.mu.Lock()
	if b.fatalMsg == "" {
		b.fatalMsg = msg
	}
	b.mu.Unlock()
	b.emit(slog.LevelError, "%s", []any{msg})
}
