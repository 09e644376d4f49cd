package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rssSampler polls the resident memory of a process tree.
type rssSampler struct {
	done chan struct{}
	peak atomic.Uint64
	wg   sync.WaitGroup
}

func startRSS(root int) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() { // stop waits for it (close(s.done), then s.wg.Wait)
		defer s.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if r := treeRSS(root); r > s.peak.Load() {
				s.peak.Store(r)
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() uint64 {
	close(s.done)
	s.wg.Wait()
	return s.peak.Load()
}

// treeRSS sums the resident memory of root and all its descendants.
func treeRSS(root int) uint64 {
	children := childMap()
	total := uint64(0)
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid)); err == nil {
			var size, res uint64
			if _, err := fmt.Sscan(string(b), &size, &res); err == nil {
				total += res * uint64(os.Getpagesize())
			}
		}
		queue = append(queue, children[pid]...)
	}
	return total
}

// childMap maps each process to its children, from /proc/*/stat (kernels
// without CONFIG_PROC_CHILDREN have no cheaper way).
func childMap() map[int][]int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				children[ppid] = append(children[ppid], pid)
			}
		}
	}
	return children
}
