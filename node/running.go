package node

import "github.com/slither-go/slither/internal/bounded"

// running is a batch being handled on this node; done is closed when its
// handling ends, settled saying (then) whether it was answered or dropped
// for good rather than handed back.
type running struct {
	done    chan struct{}
	settled bool
}

// startRunning registers the handling of batch k. If another delivery of
// k is being handled here, it waits for that one to end: when that one
// settled the batch, first is false and this delivery has nothing to do;
// otherwise this one takes over. The set holds running batches only.
func (n *Node) startRunning(k cancelKey) (r *running, first bool) {
	for {
		n.rmu.Lock()
		prev := n.running[k]
		if prev == nil {
			r = &running{done: make(chan struct{})}
			n.running[k] = r
			n.rmu.Unlock()
			return r, true
		}
		n.rmu.Unlock()
		// The running one ends (at the latest when the drain runs out of
		// time); this delivery's lease is kept meanwhile.
		<-prev.done
		if prev.settled {
			return nil, false
		}
	}
}

// stopRunning ends r, the handling of batch k.
func (n *Node) stopRunning(k cancelKey, r *running, settled bool) {
	n.rmu.Lock()
	r.settled = settled
	delete(n.running, k)
	n.rmu.Unlock()
	close(r.done)
}

// maxAnswered bounds the answered batches a node remembers.
const maxAnswered = 4096

// answeredSet remembers the last maxAnswered answered batches. n.rmu
// guards it.
type answeredSet struct {
	m bounded.Map[cancelKey, struct{}]
}

func (a *answeredSet) has(k cancelKey) bool {
	_, ok := a.m.Get(k)
	return ok
}

func (a *answeredSet) add(k cancelKey) {
	a.m.Max = maxAnswered
	a.m.Put(k, struct{}{})
}

// remember records that batch k of the node's own consumer was answered:
// its reply is stored, so a redelivery (the ack was lost) must only be
// acknowledged. Only the own consumer's: a shared batch redelivered after
// a lost ack may go to any node anyway, and the coordinator keeps one
// result.
func (n *Node) remember(k cancelKey) {
	n.rmu.Lock()
	n.answered.add(k)
	n.rmu.Unlock()
}

// wasAnswered reports whether batch k of the own consumer was answered.
func (n *Node) wasAnswered(k cancelKey) bool {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	return n.answered.has(k)
}
