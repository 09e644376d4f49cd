package engine

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestServerLimits: the engine's own server may face clients beyond this
// machine (with a token), so it bounds how long headers may take, how long
// an idle connection stays and how large headers may be. It sets no write
// timeout, which would cut the event stream.
func TestServerLimits(t *testing.T) {
	srv := newServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	assert.Equal(t, 10*time.Second, srv.ReadHeaderTimeout)
	assert.Equal(t, 2*time.Minute, srv.IdleTimeout)
	assert.Equal(t, 64<<10, srv.MaxHeaderBytes)
	assert.Zero(t, srv.WriteTimeout, "a write timeout would end the event stream")
	assert.NotNil(t, srv.ErrorLog)
}
