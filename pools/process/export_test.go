package process

import (
	"fmt"
	"time"

	"github.com/slither-go/slither/pools"
)

// SetWorkerModule points new workers at another module and returns a func
// that restores it.
func SetWorkerModule(m string) func() {
	old := workerModule
	workerModule = m
	return func() { workerModule = old }
}

// SessionRecords is how many sessions p keeps a record of (in flight, or
// pinned to a live worker).
func (p *Pool) SessionRecords() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// ObserveGuardian has f see every line p's guardian is sent ('+' or '-',
// and the process group), as it is sent; it reports false when p has no
// guardian.
func (p *Pool) ObserveGuardian(f func(op byte, pgid int)) bool {
	if p.guard == nil {
		return false
	}
	p.guard.mu.Lock()
	defer p.guard.mu.Unlock()
	p.guard.observe = f
	return true
}

// OpenBreaker opens p's restart breaker for backoff, as restarts past the
// limit do, with calls failing with an error saying why.
func (p *Pool) OpenBreaker(backoff time.Duration, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.brk.backoff = backoff
	p.openLocked(fmt.Errorf("%w: %s", pools.ErrPoolFailed, why))
}
