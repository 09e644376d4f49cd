package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/pools/remote"
)

// TestRemoteCredentialsAndPermissions runs a dispatch between a coordinator
// and a node that authenticate as their own NATS users, while an intruder
// with valid credentials but no rights on Slither's subjects tries to take
// batches and read results, and a client with a wrong password tries to
// connect at all.
func TestRemoteCredentialsAndPermissions(t *testing.T) {
	ctx := e2eCtx(t, 3*time.Minute)
	all := natsdev.Permissions{Publish: []string{"$JS.>", "$KV.>", "$O.>", "slither.>", "_INBOX.>"},
		Subscribe: []string{"_INBOX.>", "slither.>", "$JS.EVENT.>", "$KV.>", "$O.>"}, Responses: true}
	srv := natsdev.Options{Users: []natsdev.User{
		{Name: "coord", Password: "coord-secret", Permissions: all},
		{Name: "node", Password: "node-secret", Permissions: all},
		{Name: "intruder", Password: "intruder-secret", Permissions: natsdev.Permissions{
			Publish: []string{"public.>"}, Subscribe: []string{"public.>", "_INBOX.>"}}},
	}}
	c := newCluster(t, srv, nats.UserInfo("coord", "coord-secret"))

	// The node's password comes from its config file, as in production.
	cfg := nodeConfig(t, "{workers: 1}", "nats:\n  user: node\n  password: node-secret\n")
	c.startNode(ctx, cfg)
	eng := c.coordinator(ctx, engine.RemoteConfig{WaitNodes: 1}, func(cfg *engine.Config) {
		cfg.NATS.User, cfg.NATS.Password = "coord", "coord-secret"
	})

	// Wrong password: no connection at all.
	_, err := remote.Connect(ctx, remote.ConnOptions{URL: c.srv.URL(), User: "node", Password: "guess"})
	if !errors.Is(err, remote.ErrAuth) {
		t.Fatalf("wrong password: %v", err)
	}

	// The intruder: valid credentials, no rights on slither subjects.
	var mu sync.Mutex
	var violations []string
	intr, err := nats.Connect(c.srv.URL(), nats.UserInfo("intruder", "intruder-secret"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, err.Error())
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer intr.Close()
	stolen := make(chan *nats.Msg, 1024)
	for _, subj := range []string{"slither.res.>", "slither.pool.>", remote.AnySubject("work")} {
		if _, err := intr.ChanSubscribe(subj, stolen); err != nil {
			t.Fatal(err)
		}
	}
	ijs, err := jetstream.New(intr)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = ijs.Consumer(short, remote.StreamName("work"), remote.AnyDurable)
	cancel()
	if err == nil {
		t.Fatal("the intruder looked up the pool's consumer")
	}
	short, cancel = context.WithTimeout(ctx, 2*time.Second)
	_, err = ijs.Stream(short, remote.ResultsStream)
	cancel()
	if err == nil {
		t.Fatal("the intruder opened the results stream")
	}
	if err := intr.Flush(); err != nil {
		t.Fatal(err)
	}

	out, err := eng.Dispatch(ctx, ints(500), engine.DispatchOptions{Pool: "work", Options: dispatch.Options{
		Module: "remote_e2e", Function: "double", Strategy: dispatch.FixedBatch(10)}})
	if err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, out.Results, 500)
	if err := intr.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(stolen) != 0 {
		m := <-stolen
		t.Fatalf("the intruder received %d messages, first on %s", len(stolen)+1, m.Subject)
	}
	mu.Lock()
	defer mu.Unlock()
	joined := strings.Join(violations, "\n")
	for _, want := range []string{`Subscription to "slither.res.>"`, `Subscription to "slither.pool.>"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("no permission violation for %s; got:\n%s", want, joined)
		}
	}
}
