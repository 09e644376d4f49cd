// Package bounded holds a map that remembers at most a fixed number of
// keys, forgetting the oldest first: for the "recently ended" memories of
// pools and nodes, which must not grow with a long-lived process's history.
package bounded

// Map is a map of at most Max keys; putting a new key into a full map
// forgets the key put longest ago. The zero value holds nothing and must
// have Max set before use; it is not safe for concurrent use.
type Map[K comparable, V any] struct {
	// Max is how many keys the map keeps (at least 1).
	Max  int
	m    map[K]V
	ring []K
	next int
}

// Get returns k's value, if k is remembered.
func (b *Map[K, V]) Get(k K) (V, bool) {
	v, ok := b.m[k]
	return v, ok
}

// Put sets k's value; a key already there keeps its place in the order.
func (b *Map[K, V]) Put(k K, v V) {
	if b.m == nil {
		b.m = map[K]V{}
	}
	if _, ok := b.m[k]; ok {
		b.m[k] = v
		return
	}
	if len(b.ring) < max(b.Max, 1) {
		b.ring = append(b.ring, k)
	} else {
		delete(b.m, b.ring[b.next])
		b.ring[b.next] = k
		b.next = (b.next + 1) % len(b.ring)
	}
	b.m[k] = v
}

// Len is the number of keys remembered.
func (b *Map[K, V]) Len() int { return len(b.m) }
