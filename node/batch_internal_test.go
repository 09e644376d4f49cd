package node

import "testing"

// TestOverDelivered: the last delivery MaxDeliver allows is answered, not
// run; a first delivery always runs; MaxDeliver <= 0 is unlimited.
func TestOverDelivered(t *testing.T) {
	for _, tc := range []struct {
		deliveries int
		limit      int64
		want       bool
	}{
		{1, 5, false}, {4, 5, false}, {5, 5, true}, {6, 5, true},
		{1, 1, false}, {2, 2, true}, {1, 2, false},
		{9, 0, false}, {9, -1, false}, {0, 5, false},
	} {
		if got := overDelivered(tc.deliveries, tc.limit); got != tc.want {
			t.Errorf("overDelivered(%d, %d) = %v, want %v", tc.deliveries, tc.limit, got, tc.want)
		}
	}
}
