package process

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
