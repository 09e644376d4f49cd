package process

// SharedUse is one live worker's shared memory, for tests.
type SharedUse struct {
	Pid    int
	Mapped bool // the worker has shared memory
	Pool   int  // bytes of the pool's half in use (calls not ended)
	Worker int  // the worker's pieces the pool has not copied out
	// Byte strings that went through it, to the worker and from it.
	Sent, Loaded uint64
}

// SharedMemoryUse reports each live worker's shared memory.
func (p *Pool) SharedMemoryUse() []SharedUse {
	p.mu.Lock()
	var prs []*proc
	for _, s := range p.slots {
		if s.proc != nil {
			prs = append(prs, s.proc)
		}
	}
	p.mu.Unlock()
	var out []SharedUse
	for _, pr := range prs {
		u := SharedUse{Pid: pr.pid, Mapped: pr.arena != nil}
		if pr.arena != nil {
			u.Pool, u.Worker = pr.arena.inUse()
			u.Sent, u.Loaded = pr.arena.sent.Load(), pr.arena.loaded.Load()
		}
		out = append(out, u)
	}
	return out
}
