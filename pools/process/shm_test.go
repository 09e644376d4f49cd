package process_test

// The worker's half of the shared memory, driven frame by frame: what it
// does with references that Go would never send.

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/slither-go/slither/pools/process/wire"
)

const rawHalf = 1 << 20

// rawShared is a raw worker's shared memory, as the pool makes it: two
// halves of rawHalf bytes, the worker's starting with its table.
type rawShared struct {
	mem []byte
}

// startRawSharedWorker starts a raw worker with shared memory. The memfd
// reaches it as an inherited descriptor (the raw worker's own are 3-5).
func startRawSharedWorker(t *testing.T) (*rawWorker, *rawShared) {
	fd, err := unix.MemfdCreate("slither-test", 0) // inherited: not close-on-exec
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), "memfd")
	require.NoError(t, f.Truncate(2*rawHalf))
	mem, err := syscall.Mmap(fd, 0, 2*rawHalf, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Munmap(mem) })
	rw := startRawWorker(t, rawCtx(t), fmt.Sprintf("SLITHER_WORKER_ARENA=%d,%d,%d", fd, rawHalf, 256<<10))
	require.NoError(t, f.Close())
	require.True(t, rw.hello.Arena, "the worker says it mapped it")
	return rw, &rawShared{mem: mem}
}

// Load reads a reference from the worker (wire.Loader) and frees its slot
// as the pool does.
func (s *rawShared) Load(slot, off, n uint64) ([]byte, error) {
	if slot >= 64 || off < rawHalf+4096 || off+n > 2*rawHalf {
		return nil, fmt.Errorf("reference [%d, %d, %d] is outside the worker's half", slot, off, n)
	}
	if got := s.mem[rawHalf+4*slot]; got != 1 {
		return nil, fmt.Errorf("slot %d is not marked in use (%d)", slot, got)
	}
	b := append([]byte(nil), s.mem[off:off+n]...)
	s.mem[rawHalf+4*slot] = 0
	return b, nil
}

func TestWorkerSharedMemory(t *testing.T) {
	rw, sh := startRawSharedWorker(t)
	data := pattern(300<<10, 3)
	copy(sh.mem[4096:], data)
	call := func(id uint64, items string) {
		require.NoError(t, rw.send(headerFrame(fmt.Sprintf(`{"t":"call","id":%d,"m":"payloadtest","f":"check","v":%s}`, id, items))))
	}
	call(1, fmt.Sprintf(`[[{"$a":[4096,%d]},3]]`, len(data)))
	out, e := rw.result(1)
	require.Nil(t, e)
	assert.Equal(t, []any{[]any{true, int64(len(data))}}, out, "the worker read Go's half")

	// References Go would never send fail their call alone.
	for i, ref := range []string{
		fmt.Sprintf("[%d,1]", rawHalf),    // past Go's half
		fmt.Sprintf("[4096,%d]", rawHalf), // runs past it
		"[-1,5]", "[0,1,2]", `"x"`, "[0.5,1]",
	} {
		id := uint64(10 + i)
		call(id, fmt.Sprintf(`[[{"$a":%s},3]]`, ref))
		_, e := rw.result(id)
		require.NotNil(t, e, ref)
		assert.Equal(t, "exception", e.Kind, ref)
		assert.Contains(t, e.Message, "shared-memory reference", ref)
	}

	// Its results' large byte strings come through its half, each in a
	// slot marked until Go copies it out; the room is reused after that.
	for id := uint64(20); id < 30; id++ {
		rw.call(id, payloadMod, "make", []any{600 << 10, id}, []any{100, id}, []any{300 << 10, id})
		m, atts := rw.next()
		require.Equal(t, wire.TResult, m.T)
		require.Nil(t, m.E)
		assert.Contains(t, string(m.V), `{"$a":[`)
		v, err := wire.DecodeShared(m.V, atts, sh)
		require.NoError(t, err)
		assert.Equal(t, []any{pattern(600<<10, id), pattern(100, id), pattern(300<<10, id)}, v)
	}
	// With its half full (nothing copied out), results go through the pipe.
	rw.call(40, payloadMod, "make", []any{600 << 10, 1}, []any{600 << 10, 2})
	m, _ := rw.next()
	require.Nil(t, m.E)
	assert.Contains(t, string(m.V), `{"$a":[`, "the first fits")
	rw.call(41, payloadMod, "make", []any{600 << 10, 1})
	m, atts := rw.next()
	require.Nil(t, m.E)
	assert.Equal(t, `[{"$b":0}]`, string(m.V), "the worker's half is full: the pipe")
	assert.Len(t, atts[0], 600<<10)
}
