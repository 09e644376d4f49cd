package store_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/alphadose/haxmap"
	"github.com/puzpuzpuz/xsync/v4"
)

// The table map: haxmap (the card's choice) against xsync.Map (what the
// store uses), sync.Map and a map behind a sync.RWMutex, for the store's
// load: many concurrent readers, writes now and then.

type kv interface {
	load(k string) (any, bool)
	store(k string, v any)
}

type haxKV struct{ m *haxmap.Map[string, any] }

func (h haxKV) load(k string) (any, bool) { return h.m.Get(k) }
func (h haxKV) store(k string, v any)     { h.m.Set(k, v) }

type xsyncKV struct{ m *xsync.Map[string, any] }

func (x xsyncKV) load(k string) (any, bool) { return x.m.Load(k) }
func (x xsyncKV) store(k string, v any)     { x.m.Store(k, v) }

type syncKV struct{ m *sync.Map }

func (s syncKV) load(k string) (any, bool) { return s.m.Load(k) }
func (s syncKV) store(k string, v any)     { s.m.Store(k, v) }

type rwKV struct {
	mu *sync.RWMutex
	m  map[string]any
}

func (r rwKV) load(k string) (any, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.m[k]
	return v, ok
}

func (r rwKV) store(k string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[k] = v
}

func maps() map[string]func() kv {
	return map[string]func() kv{
		"haxmap":  func() kv { return haxKV{haxmap.New[string, any]()} },
		"xsync":   func() kv { return xsyncKV{xsync.NewMap[string, any]()} },
		"syncmap": func() kv { return syncKV{&sync.Map{}} },
		"rwmutex": func() kv { return rwKV{&sync.RWMutex{}, map[string]any{}} },
	}
}

// BenchmarkTableReads: 99% reads, 1% writes, from every P.
func BenchmarkTableReads(b *testing.B) {
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	for _, name := range []string{"haxmap", "xsync", "syncmap", "rwmutex"} {
		b.Run(name, func(b *testing.B) {
			m := maps()[name]()
			for i, k := range keys {
				m.store(k, i)
			}
			var seed atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(7919))
				for pb.Next() {
					i++
					k := keys[i%len(keys)]
					if i%100 == 0 {
						m.store(k, i)
					} else if _, ok := m.load(k); !ok {
						b.Errorf("%s lost key %s", name, k)
						return
					}
				}
			})
		})
	}
}

// BenchmarkTableSetThenGet writes fresh keys from one goroutine while
// another reads and counts a write that a later read could not see
// ("invisible" per million writes): a store must never hide a finished
// write.
func BenchmarkTableSetThenGet(b *testing.B) {
	for _, name := range []string{"haxmap", "xsync", "syncmap", "rwmutex"} {
		b.Run(name, func(b *testing.B) {
			m := maps()[name]()
			invisible := 0
			var wg sync.WaitGroup
			var last atomic.Int64
			last.Store(-1)
			stop := make(chan struct{})
			wg.Add(1)
			go func() { // a concurrent reader keeps the map busy
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if n := last.Load(); n >= 0 {
						m.load("k" + strconv.Itoa(int(n)))
					}
				}
			}()
			for i := range b.N {
				k := "k" + strconv.Itoa(i)
				m.store(k, i)
				last.Store(int64(i))
				if _, ok := m.load(k); !ok {
					invisible++
				}
			}
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(invisible)*1e6/float64(b.N), "invisible/1M")
		})
	}
}
