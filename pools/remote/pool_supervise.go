package remote

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// relistenPause is the wait between attempts to listen again.
	relistenPause = time.Second
	// bucketCheck is how often the pool checks that its results consumer
	// exists and that the nodes bucket it watches is still the one there:
	// a watch on a deleted bucket does not end, it just never says
	// anything again.
	bucketCheck = 2 * time.Second
)

// supervise keeps the pool's two long-lived listeners alive while the pool
// lives: the results consumer (deleted by an operator — nats.go then stops
// consuming — or by the server after a partition longer than its
// inactivity limit, which nats.go never hears of: checked every
// bucketCheck) and the nodes watch (it goes quiet for good when
// the bucket is deleted, or ends).
// Without them every later Submit would wait for ever. It is the only
// writer of p.consume, p.watcher and p.watching once New has returned, and
// teardown reads them only after it has exited (p.supervised).
func (p *Pool) supervise() {
	defer close(p.supervised)
	tick := time.NewTicker(bucketCheck)
	defer tick.Stop()
	for {
		select {
		case <-p.life.Done():
			return
		case <-tick.C:
			if p.resultsConsumerGone() {
				// Deleted while this coordinator was cut off: nats.go
				// never hears of it and would pull from nothing for ever.
				p.log.Warn("remote pool: the results consumer is gone; making it again", "pool", p.o.Name, "durable", ResultDurable(p.coord))
				p.consume.Stop()
				<-p.consume.Closed()
				p.retry(func() error { return p.consumeResults(p.life) })
			}
			if !p.bucketChanged() {
				continue
			}
			p.log.Warn("remote pool: the nodes bucket was deleted or made again; watching it again", "pool", p.o.Name)
			if err := p.watcher.Stop(); err != nil {
				p.log.Debug("remote pool: stopping the nodes watch", "err", err)
			}
			<-p.watching
			p.rewatch()
		case <-p.consume.Closed():
			p.log.Warn("remote pool: the results consumer stopped; making it again", "pool", p.o.Name, "durable", ResultDurable(p.coord))
			p.retry(func() error { return p.consumeResults(p.life) })
		case <-p.watching:
			p.log.Warn("remote pool: the nodes watch ended; watching again", "pool", p.o.Name)
			p.rewatch()
		}
	}
}

// rewatch watches the nodes bucket again once it exists. It does not
// make the bucket: the nodes do (with their own heartbeat's TTL) when they
// next advertise.
func (p *Pool) rewatch() {
	p.retry(func() error {
		kv, err := p.js.KeyValue(p.life, NodesBucket)
		if err == nil {
			_, err = p.startWatch(kv, true)
		}
		return err
	})
}

// resultsConsumerGone reports whether the server no longer has this
// coordinator's results consumer. A failed check (NATS down) says no.
func (p *Pool) resultsConsumerGone() bool {
	ctx, cancel := context.WithTimeout(p.life, cleanupTimeout)
	defer cancel()
	_, err := p.res.Consumer(ctx, ResultDurable(p.coord))
	return errors.Is(err, jetstream.ErrConsumerNotFound)
}

// bucketChanged reports whether the nodes bucket's stream is gone or is
// not the one the current watch started on. A failed check (NATS down) is
// no change: the watch resumes by itself after a reconnect.
func (p *Pool) bucketChanged() bool {
	info, err := p.watchedStreamInfo()
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return true
	case err != nil:
		return false
	}
	return !info.Created.Equal(p.watchedCreated)
}

// retry calls f until it succeeds or the pool closes, pausing between
// attempts.
func (p *Pool) retry(f func() error) {
	for p.life.Err() == nil {
		err := f()
		if err == nil {
			return
		}
		p.log.Debug("remote pool: listening again failed", "pool", p.o.Name, "err", err)
		t := time.NewTimer(relistenPause)
		select {
		case <-t.C:
		case <-p.life.Done():
			t.Stop()
		}
	}
}
