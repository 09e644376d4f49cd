package remote_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/natsdev/natsdevtest"
	"github.com/slither-go/slither/pools/remote"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustConnect(t *testing.T, o remote.ConnOptions) *nats.Conn {
	t.Helper()
	nc, err := remote.Connect(ctx(t), o)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// writeFile writes data with the given mode (the umask does not apply).
func writeFile(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUserPassword(t *testing.T) {
	s := natsdevtest.Start(t, natsdev.Options{Users: []natsdev.User{{Name: "coord", Password: "c-secret"}}})
	nc := mustConnect(t, remote.ConnOptions{URL: s.URL(), User: "coord", Password: "c-secret"})
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
	_, err := remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL(), User: "coord", Password: "wrong-pw"})
	if !errors.Is(err, remote.ErrAuth) || !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("bad password: %v, want ErrAuth and nats.ErrAuthorization", err)
	}
	want := "remote: connecting to " + s.URL() + `: authorization failed (user "coord")`
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}
	if strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("error reveals the password: %v", err)
	}
	// No credentials at all against an authenticating server.
	if _, err := remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL()}); !errors.Is(err, remote.ErrAuth) {
		t.Fatalf("no credentials: %v, want ErrAuth", err)
	}
}

func TestToken(t *testing.T) {
	s := natsdevtest.Start(t, natsdev.Options{Token: "t0ken-good"})
	mustConnect(t, remote.ConnOptions{URL: s.URL(), Token: "t0ken-good"})
	// host:port without a scheme, as nats.go accepts it.
	mustConnect(t, remote.ConnOptions{URL: strings.TrimPrefix(s.URL(), "nats://"), Token: "t0ken-good"})
	// A token in the url is a credential too (and never printed).
	mustConnect(t, remote.ConnOptions{URL: strings.Replace(s.URL(), "nats://", "nats://t0ken-good@", 1)})
	_, err := remote.Connect(ctx(t), remote.ConnOptions{URL: strings.Replace(s.URL(), "nats://", "nats://t0ken-bad@", 1)})
	if !errors.Is(err, remote.ErrAuth) || strings.Contains(err.Error(), "t0ken-bad") {
		t.Fatalf("bad token in url: %v, want ErrAuth without the token", err)
	}
	if !strings.Contains(err.Error(), "(credentials in the url)") {
		t.Fatalf("error %q does not say the credentials came from the url", err)
	}
	_, err = remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL(), Token: "t0ken-bad"})
	if !errors.Is(err, remote.ErrAuth) || !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("bad token: %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "(token)") || strings.Contains(err.Error(), "t0ken-bad") {
		t.Fatalf("error %q should name the token kind but not the token", err)
	}
}

func TestNKeySeed(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	s := natsdevtest.Start(t, natsdev.Options{NKeys: []natsdev.NKeyUser{{PublicKey: pub}}})

	mustConnect(t, remote.ConnOptions{URL: s.URL(), NKeySeedFile: writeFile(t, "node.nk", seed, 0o600)})
	badFile := writeFile(t, "other.nk", otherSeed, 0o400)
	_, err = remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL(), NKeySeedFile: badFile})
	if !errors.Is(err, remote.ErrAuth) {
		t.Fatalf("unknown nkey: %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "nkey seed "+badFile) {
		t.Fatalf("error %q does not name the seed file", err)
	}
	garbage := writeFile(t, "garbage.nk", []byte("not a seed\n"), 0o600)
	if _, err := remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL(), NKeySeedFile: garbage}); !errors.Is(err, remote.ErrConfig) {
		t.Fatalf("garbage seed file: %v, want ErrConfig", err)
	}
}

func TestSecretFilesMustBePrivate(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		seedFile := writeFile(t, "seed.nk", seed, mode)
		_, err := remote.Connect(ctx(t), remote.ConnOptions{URL: "nats://127.0.0.1:1", NKeySeedFile: seedFile})
		if !errors.Is(err, remote.ErrInsecureFile) || !errors.Is(err, remote.ErrConfig) {
			t.Fatalf("seed file mode %04o: %v, want ErrInsecureFile", mode, err)
		}
		if !strings.Contains(err.Error(), seedFile) {
			t.Fatalf("error %q does not name the file", err)
		}
		creds := writeFile(t, "x.creds", []byte("creds"), mode)
		if _, err := remote.Connect(ctx(t), remote.ConnOptions{URL: "nats://127.0.0.1:1", CredsFile: creds}); !errors.Is(err, remote.ErrInsecureFile) {
			t.Fatalf("creds file mode %04o: %v, want ErrInsecureFile", mode, err)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.nk")
	if _, err := remote.Connect(ctx(t), remote.ConnOptions{URL: "nats://127.0.0.1:1", NKeySeedFile: missing}); !errors.Is(err, remote.ErrConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing seed file: %v, want ErrConfig wrapping ErrNotExist", err)
	}
}

func TestConflictingSettings(t *testing.T) {
	seedFile := writeFile(t, "seed.nk", []byte("SUA"), 0o600)
	for name, o := range map[string]remote.ConnOptions{
		"no url":              {},
		"user and token":      {User: "u", Password: "p", Token: "t"},
		"token and nkey":      {Token: "t", NKeySeedFile: seedFile},
		"nkey and creds":      {NKeySeedFile: seedFile, CredsFile: seedFile},
		"url creds and user":  {URL: "nats://a:b@127.0.0.1:1", User: "u", Password: "p"},
		"user, no password":   {User: "u"},
		"password, no user":   {Password: "p"},
		"cert without key":    {TLS: remote.TLSOptions{CertFile: seedFile}},
		"ca file is not a CA": {TLS: remote.TLSOptions{CAFile: seedFile}},
	} {
		if o.URL == "" && name != "no url" {
			o.URL = "nats://127.0.0.1:1"
		}
		_, err := remote.Connect(ctx(t), o)
		if !errors.Is(err, remote.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
			continue
		}
		if strings.Contains(err.Error(), "a:b@") {
			t.Errorf("%s: error reveals url credentials: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestYAMLKeys(t *testing.T) {
	var o remote.ConnOptions
	src := `
url: tls://nats.example:4222
user: coord
password: pw
name: coordinator
connect_timeout: 3s
nkey_seed_file: /s.nk
creds_file: /c.creds
tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem}
`
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&o); err != nil {
		t.Fatal(err)
	}
	want := remote.ConnOptions{URL: "tls://nats.example:4222", User: "coord", Password: "pw", Name: "coordinator",
		ConnectTimeout: 3 * time.Second, NKeySeedFile: "/s.nk", CredsFile: "/c.creds",
		TLS: remote.TLSOptions{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"}}
	if o != want {
		t.Fatalf("decoded %+v, want %+v", o, want)
	}
}

func TestContextDone(t *testing.T) {
	s := natsdevtest.Start(t, natsdev.Options{})
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := remote.Connect(c, remote.ConnOptions{URL: s.URL()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v, want context.Canceled", err)
	}
}

// testCA is a CA made in the test, with a server certificate for 127.0.0.1.
type testCA struct {
	caFile string
	pool   *x509.CertPool
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	server tls.Certificate
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slither test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return testCA{
		caFile: writeFile(t, "ca.pem", caPEM, 0o644),
		pool:   pool, cert: caCert, key: caKey,
		server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
	}
}

// clientFiles issues a client certificate and writes it and its key (with
// keyMode) as PEM files.
func (ca testCA) clientFiles(t *testing.T, keyMode os.FileMode) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "node-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, "client.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	keyFile = writeFile(t, "client.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), keyMode)
	return certFile, keyFile
}

func TestTLS(t *testing.T) {
	ca := newTestCA(t)
	s := natsdevtest.Start(t, natsdev.Options{TLS: &tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12}})
	if !strings.HasPrefix(s.URL(), "tls://") {
		t.Fatalf("URL %q, want tls://", s.URL())
	}
	nc := mustConnect(t, remote.ConnOptions{URL: s.URL(), TLS: remote.TLSOptions{CAFile: ca.caFile}})
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Fatalf("connection is not TLS: %v", err)
	}

	other := newTestCA(t)
	_, err := remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL(), TLS: remote.TLSOptions{CAFile: other.caFile}})
	if !errors.Is(err, remote.ErrTLS) {
		t.Fatalf("untrusted CA: %v, want ErrTLS", err)
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || !strings.Contains(err.Error(), other.caFile) {
		t.Fatalf("untrusted CA: %v, want an x509.UnknownAuthorityError naming %s", err, other.caFile)
	}
	// Without any TLS settings the system roots do not know the test CA either.
	if _, err := remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL()}); !errors.Is(err, remote.ErrTLS) {
		t.Fatalf("system roots: %v, want ErrTLS", err)
	}
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	s := natsdevtest.Start(t, natsdev.Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool,
	}})
	certFile, keyFile := ca.clientFiles(t, 0o600)
	mustConnect(t, remote.ConnOptions{URL: s.URL(), TLS: remote.TLSOptions{CAFile: ca.caFile, CertFile: certFile, KeyFile: keyFile}})

	_, err := remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL(), TLS: remote.TLSOptions{CAFile: ca.caFile}})
	if !errors.Is(err, remote.ErrTLS) || !strings.Contains(err.Error(), "no client certificate") {
		t.Fatalf("no client certificate: %v, want ErrTLS saying so", err)
	}
	t.Logf("no client certificate: %v", err)
	other := newTestCA(t)
	otherCert, otherKey := other.clientFiles(t, 0o600)
	if _, err := remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL(), TLS: remote.TLSOptions{CAFile: ca.caFile, CertFile: otherCert, KeyFile: otherKey}}); !errors.Is(err, remote.ErrTLS) || !strings.Contains(err.Error(), otherCert) {
		t.Fatalf("client certificate from an unknown CA: %v, want ErrTLS naming %s", err, otherCert)
	} else {
		t.Logf("client certificate from an unknown CA: %v", err)
	}
	openCert, openKey := ca.clientFiles(t, 0o644)
	if _, err := remote.Connect(ctx(t), remote.ConnOptions{URL: s.URL(), TLS: remote.TLSOptions{CAFile: ca.caFile, CertFile: openCert, KeyFile: openKey}}); !errors.Is(err, remote.ErrInsecureFile) {
		t.Fatalf("world-readable key file: %v, want ErrInsecureFile", err)
	}
}

// errRecorder is a slog handler that sends the "err" attribute of every
// record to a channel.
type errRecorder struct{ errs chan error }

func (h errRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h errRecorder) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "err" {
			select {
			case h.errs <- err:
			default:
			}
		}
		return true
	})
	return nil
}
func (h errRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h errRecorder) WithGroup(string) slog.Handler      { return h }

// A user whose permissions do not allow subscribing to the work subjects
// gets a permissions violation (reported through the Logger) and receives
// nothing that is published there, while an allowed worker does.
func TestDeniedSubscriberReceivesNoBatches(t *testing.T) {
	s := natsdevtest.Start(t, natsdev.Options{Users: []natsdev.User{
		{Name: "coord", Password: "c"},
		{Name: "worker", Password: "w", Permissions: natsdev.Permissions{Subscribe: []string{"slither.work.>", "public.>"}}},
		{Name: "intruder", Password: "i", Permissions: natsdev.Permissions{Publish: []string{"public.>"}, Subscribe: []string{"public.>", "_INBOX.>"}}},
	}})
	coord := mustConnect(t, remote.ConnOptions{URL: s.URL(), User: "coord", Password: "c"})
	worker := mustConnect(t, remote.ConnOptions{URL: s.URL(), User: "worker", Password: "w"})
	rec := errRecorder{errs: make(chan error, 8)}
	intruder := mustConnect(t, remote.ConnOptions{URL: s.URL(), User: "intruder", Password: "i", Logger: slog.New(rec)})

	wsub, err := worker.SubscribeSync("slither.work.>")
	if err != nil {
		t.Fatal(err)
	}
	isub, err := intruder.SubscribeSync("slither.work.>")
	if err != nil {
		t.Fatalf("the denial is asynchronous, SubscribeSync itself should succeed: %v", err)
	}
	select {
	case err := <-rec.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "slither.work.>") {
			t.Fatalf("logged %v, want a permissions violation for slither.work.>", err)
		}
	case <-ctx(t).Done():
		t.Fatal("no permissions violation reached the Logger")
	}
	// A marker on an allowed subject, published after the batch on the same
	// connection, reaches the intruder after the batch would have: once the
	// marker is in, a batch delivery would already be queued.
	marker, err := intruder.SubscribeSync("public.marker")
	if err != nil {
		t.Fatal(err)
	}
	if err := intruder.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := coord.Publish("slither.work.cpu", []byte("batch-0")); err != nil {
		t.Fatal(err)
	}
	if err := coord.Publish("public.marker", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := marker.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("marker: %v", err)
	}
	if m, err := wsub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "batch-0" {
		t.Fatalf("the allowed worker did not get the batch: %v", err)
	}
	if n, _, err := isub.Pending(); err == nil && n != 0 {
		t.Fatalf("intruder has %d batch messages pending", n)
	}
	if m, err := isub.NextMsg(time.Millisecond); err == nil {
		t.Fatalf("intruder received %q", m.Data)
	}
	if !errors.Is(intruder.LastError(), nats.ErrPermissionViolation) {
		t.Fatalf("LastError = %v, want a permissions violation", intruder.LastError())
	}
}

// TestShortDeadlineDoesNotBindReconnects: a ctx with little time left
// bounds the first connection, not the connection's later reconnects.
func TestShortDeadlineDoesNotBindReconnects(t *testing.T) {
	s := natsdevtest.Start(t, natsdev.Options{})
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nc, err := remote.Connect(c, remote.ConnOptions{URL: s.URL(), ConnectTimeout: 7 * time.Second})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer nc.Close()
	if nc.Opts.Timeout != 7*time.Second {
		t.Fatalf("the connection keeps Timeout %v for its reconnects, want ConnectTimeout 7s", nc.Opts.Timeout)
	}
}

// TestCancelDuringHandshake: a server that accepts and never speaks holds
// the handshake; cancelling ctx then fails Connect as cancelled.
func TestCancelDuringHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if conn, err := ln.Accept(); err == nil {
			accepted <- conn
		}
		close(accepted)
	}()
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if conn, ok := <-accepted; ok {
			cancel() // Connect is in its handshake now
			defer conn.Close()
		}
	}()
	_, err = remote.Connect(c, remote.ConnOptions{URL: "nats://" + ln.Addr().String(), ConnectTimeout: 500 * time.Millisecond})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect: %v, want context.Canceled", err)
	}
}

// TestUnreachableFailsAtOnce: nothing listens: an error, not a hang.
func TestUnreachableFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := remote.Connect(ctx(t), remote.ConnOptions{URL: "nats://" + addr}); err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
}

// TestPasswordNeverInMessages: a bad URL list whose password holds a
// comma names the bad URL by position, and no piece of the password.
func TestPasswordNeverInMessages(t *testing.T) {
	for _, u := range []string{"nats://u:sec,ret@127.0.0.1:1", "nats://127.0.0.1:1,nats://u:se,cr:et@", "u:sec,ret@"} {
		_, err := remote.Connect(ctx(t), remote.ConnOptions{URL: u})
		if err == nil {
			t.Fatalf("%q: no error", u)
		}
		for _, piece := range []string{"sec", "ret", "cr:et"} {
			if strings.Contains(err.Error(), piece) {
				t.Errorf("%q: the error %q holds %q", u, err, piece)
			}
		}
	}
}
