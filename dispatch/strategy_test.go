package dispatch_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
)

// form runs items through a strategy's batcher and returns the batches as
// item ids.
func form(t *testing.T, s dispatch.Strategy, items []dispatch.Item) [][]string {
	t.Helper()
	b, err := s.NewBatcher()
	require.NoError(t, err)
	var out [][]string
	add := func(batches [][]dispatch.Item) {
		for _, bt := range batches {
			var ids []string
			for _, it := range bt {
				ids = append(ids, it.ID)
			}
			out = append(out, ids)
		}
	}
	for _, it := range items {
		add(b.Add(it))
	}
	add(b.Flush())
	return out
}

func numbered(n int) []dispatch.Item {
	items := make([]dispatch.Item, n)
	for i := range items {
		items[i] = dispatch.Item{ID: strconv.Itoa(i), Payload: i}
	}
	return items
}

func TestFixedBatch(t *testing.T) {
	assert.Equal(t, [][]string{{"0", "1", "2"}, {"3", "4", "5"}, {"6"}}, form(t, dispatch.FixedBatch(3), numbered(7)))
	assert.Nil(t, form(t, dispatch.FixedBatch(3), nil))
	_, err := dispatch.FixedBatch(0).NewBatcher()
	assert.EqualError(t, err, "dispatch: FixedBatch size is 0; it must be >= 1")
}

func TestWeightedBatchKeepsOverweightItems(t *testing.T) {
	weights := map[string]float64{"0": 3, "1": 4, "2": 25, "3": 1, "4": 9, "5": 2}
	w := func(it dispatch.Item) float64 { return weights[it.ID] }
	got := form(t, dispatch.WeightedBatch(10, w), numbered(6))
	// 3+4 fit; 25 is overweight: alone, never dropped; 1+9 reach 10 exactly; 2 is left.
	assert.Equal(t, [][]string{{"0", "1"}, {"2"}, {"3", "4"}, {"5"}}, got)
	_, err := dispatch.WeightedBatch(0, w).NewBatcher()
	assert.ErrorContains(t, err, "maxWeight is 0")
	_, err = dispatch.WeightedBatch(1, nil).NewBatcher()
	assert.ErrorContains(t, err, "needs a weight function")
}

func TestKeyPartition(t *testing.T) {
	keys := []string{"a", "b", "a", "c", "a", "b", "a"}
	items := make([]dispatch.Item, len(keys))
	for i, k := range keys {
		items[i] = dispatch.Item{ID: strconv.Itoa(i), Route: k}
	}
	key := func(it dispatch.Item) string { return it.Route }
	got := form(t, dispatch.KeyPartition(key, 3), items)
	// a fills at item 4; the rest flush at the end in order of first arrival.
	assert.Equal(t, [][]string{{"0", "2", "4"}, {"1", "5"}, {"3"}, {"6"}}, got)

	// Many keys never filling: the longest-waiting key is cut at 16 x maxSize.
	many := make([]dispatch.Item, 100)
	for i := range many {
		many[i] = dispatch.Item{ID: strconv.Itoa(i), Route: strconv.Itoa(i)}
	}
	b, err := dispatch.KeyPartition(key, 2).NewBatcher()
	require.NoError(t, err)
	cut := 0
	for _, it := range many {
		out := b.Add(it)
		cut += len(out)
		for _, bt := range out {
			assert.Len(t, bt, 1)
		}
	}
	assert.Equal(t, 100-32, cut, "at most 32 items wait")
	assert.Len(t, b.Flush(), 32)

	_, err = dispatch.KeyPartition(key, 0).NewBatcher()
	assert.ErrorContains(t, err, "maxSize is 0")
}
