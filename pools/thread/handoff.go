//go:build cgo

package thread

import "time"

// The hand-off between callers and workers: channels, with a short spin
// before parking while cores are spare (see Options.Spin).

// next returns the worker's next batch, from its pinned sessions or the
// shared queue, or false once the pool is closed and both are drained. It
// returns (nil, true) when woken for session releases.
func (p *Pool) next(w *worker, jobs, pinned *chan *job) (*job, bool) {
	if *jobs == nil && *pinned == nil {
		return nil, false
	}
	if j, woken := p.poll(w, *jobs, *pinned); j != nil || woken {
		return j, true
	}
	select {
	case j, ok := <-*jobs:
		if !ok {
			*jobs = nil
			return p.next(w, jobs, pinned)
		}
		return j, true
	case j, ok := <-*pinned:
		if !ok {
			*pinned = nil
			return p.next(w, jobs, pinned)
		}
		return j, true
	case <-w.wake:
		return nil, true
	}
}

// poll polls both queues (and w's wake-up) for up to p.spin while Ps are
// spare (see tryRecv). It returns nil, false when nothing came or a queue
// is closed: the blocking receive that follows sorts that out.
func (p *Pool) poll(w *worker, jobs, pinned chan *job) (*job, bool) {
	if !p.startSpin() {
		return nil, false
	}
	defer p.spinners.Add(-1)
	deadline := time.Now().Add(p.spin)
	for i := 0; ; i++ {
		select {
		case j := <-jobs:
			return j, false
		case j := <-pinned:
			return j, false
		case <-w.wake:
			return nil, true
		default:
		}
		if i%32 == 31 && time.Now().After(deadline) {
			return nil, false
		}
	}
}

// startSpin reserves a spinner slot; the caller releases it.
func (p *Pool) startSpin() bool {
	if p.spin <= 0 {
		return false
	}
	if p.spinners.Add(1)+p.active.Load() > p.procs {
		p.spinners.Add(-1)
		return false
	}
	return true
}

// tryRecv polls ch for up to p.spin while Ps are spare, so that a hand-off
// need not park one OS thread and wake another (microseconds each). got is
// false when nothing came.
func tryRecv[T any](p *Pool, ch <-chan T) (v T, ok, got bool) {
	if !p.startSpin() {
		return v, false, false
	}
	defer p.spinners.Add(-1)
	deadline := time.Now().Add(p.spin)
	for i := 0; ; i++ {
		select {
		case v, ok = <-ch:
			return v, ok, true
		default:
		}
		if i%32 == 31 && time.Now().After(deadline) {
			return v, false, false
		}
	}
}
