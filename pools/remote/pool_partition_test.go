package remote_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/remote"
)

// cutProxy is a TCP proxy to a NATS server that a test can cut (closing
// every connection and refusing new ones) and mend: a network partition.
type cutProxy struct {
	ln    net.Listener
	up    string
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, upstream string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, up: strings.TrimPrefix(upstream, "nats://")}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		u, err := net.Dial("tcp", p.up)
		if p.cut || err != nil {
			p.mu.Unlock()
			c.Close()
			if u != nil {
				u.Close()
			}
			continue
		}
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(u, c); u.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, u); c.Close() })
	}
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// TestPoolRemakesResultsConsumerDeletedWhileCutOff: the server drops the
// coordinator's results consumer while the coordinator is cut off (as its
// inactivity limit does after a long partition): no "deleted" status ever
// reaches nats.go, yet after the partition the pool makes the consumer
// again and a batch gets its result.
func TestPoolRemakesResultsConsumerDeletedWhileCutOff(t *testing.T) {
	e := newEnv(t, natsdev.Options{})
	startNode(t, e.s, testPool, 2, nil)
	px := newCutProxy(t, e.s.URL())
	down, up := make(chan struct{}, 8), make(chan struct{}, 8)
	nc, err := nats.Connect(px.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { down <- struct{}{} }),
		nats.ReconnectHandler(func(*nats.Conn) { up <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := remote.New(ctx, remote.Options{Conn: nc, Name: testPool, WaitNodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	if _, err := p.Submit(ctx, pools.Batch{Module: "m", Function: "double", Items: ints(1, 1)}); err != nil {
		t.Fatal(err)
	}
	px.setCut(true)
	recv(t, down, "the coordinator to be cut off")
	res, err := e.js.Stream(ctx, remote.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.DeleteConsumer(ctx, remote.ResultDurable(p.CoordID())); err != nil {
		t.Fatal(err)
	}
	px.setCut(false)
	recv(t, up, "the coordinator to reconnect")
	got, err := p.Submit(ctx, pools.Batch{Module: "m", Function: "double", Items: ints(3, 1)})
	if err != nil {
		t.Fatalf("Submit after the results consumer was deleted during a partition: %v", err)
	}
	if fmt.Sprint(got) != "[2 4 6]" {
		t.Fatalf("results %v", got)
	}
}
