package process_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A worker's shared memory stays its own: a child that user code forks
// (multiprocessing's "fork") does not keep it mapped, and neither it nor
// a subprocess is told of the descriptor it came through.
func TestSharedMemoryNotInherited(t *testing.T) {
	p := newPool(t, opts(1))
	require.True(t, p.SharedMemoryUse()[0].Mapped)
	out, err := p.Submit(context.Background(), payloadBatch("children", "self", "fork", "subprocess"))
	require.NoError(t, err)
	assert.Equal(t, []any{
		[]any{false, true}, // the worker: mapped, its setting consumed
		[]any{false, false},
		[]any{false, false},
	}, out)
}
