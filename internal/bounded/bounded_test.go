package bounded

import "testing"

func TestMapForgetsTheOldestFirst(t *testing.T) {
	b := Map[string, int]{Max: 3}
	for i, k := range []string{"a", "b", "c"} {
		b.Put(k, i)
	}
	b.Put("a", 10) // an update keeps a's place
	b.Put("d", 3)  // forgets a, the oldest
	if _, ok := b.Get("a"); ok {
		t.Fatal("a was kept past the bound")
	}
	for k, want := range map[string]int{"b": 1, "c": 2, "d": 3} {
		if v, ok := b.Get(k); !ok || v != want {
			t.Fatalf("%s = %d, %v; want %d", k, v, ok, want)
		}
	}
	b.Put("e", 4) // then b
	if _, ok := b.Get("b"); ok || b.Len() != 3 {
		t.Fatalf("b kept or len %d", b.Len())
	}
	var zero Map[int, bool] // Max 0 still keeps one
	zero.Put(1, true)
	zero.Put(2, true)
	if _, ok := zero.Get(1); ok || zero.Len() != 1 {
		t.Fatal("a zero Max map kept more than one key")
	}
}
