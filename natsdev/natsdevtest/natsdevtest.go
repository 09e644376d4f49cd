// Package natsdevtest starts a natsdev server for a test: its JetStream
// store in the test's temporary directory (unless one is given), closed
// with the test. Tests only.
package natsdevtest

import (
	"testing"

	"github.com/slither-go/slither/natsdev"
)

// Start starts a server with opts, failing t if it cannot.
func Start(t testing.TB, opts natsdev.Options) *natsdev.Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := natsdev.Start(opts)
	if err != nil {
		t.Fatalf("natsdev.Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}
