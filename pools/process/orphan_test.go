package process_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
)

const orphanChildEnv = "SLITHER_TEST_ORPHAN_CHILD"

// orphanChild is the child process of TestNoOrphansAfterKill9: it starts a
// pool of two workers, prints their pids, has each run a batch that starts
// a grandchild process and prints its pid, and waits to be killed.
func orphanChild() {
	o := opts(2)
	o.Host = func(_ context.Context, c pools.HostCall) (any, error) {
		fmt.Printf("grandchild %d of worker %d\n", c.Args[0], c.Pid)
		return nil, nil
	}
	p, err := process.New(context.Background(), o)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for _, pid := range pids(p) {
		fmt.Println("worker", pid)
	}
	for range 2 { // one per worker: both are mid-batch when we die
		go func() { _, _ = p.Submit(context.Background(), batch("spawn_and_sleep", 1)) }()
	}
	select {}
}

// TestNoOrphansAfterKill9 kills a Go process running a pool with SIGKILL:
// its workers, and the processes they started, must all end.
func TestNoOrphansAfterKill9(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var workers, grandchildren []int
	sc := bufio.NewScanner(out)
	for len(grandchildren) < 2 && sc.Scan() {
		line := sc.Text()
		require.NotContains(t, line, "error:")
		if rest, ok := strings.CutPrefix(line, "worker "); ok {
			pid, err := strconv.Atoi(rest)
			require.NoError(t, err)
			workers = append(workers, pid)
		}
		var g, w int
		if _, err := fmt.Sscanf(line, "grandchild %d of worker %d", &g, &w); err == nil {
			require.Contains(t, workers, w)
			grandchildren = append(grandchildren, g)
		}
	}
	require.Len(t, workers, 2)
	require.Len(t, grandchildren, 2, "each worker reported its grandchild (the child's output ended early?)")
	for _, pid := range append(workers, grandchildren...) {
		require.True(t, alive(pid), "process %d runs before the kill", pid)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	for _, pid := range workers {
		assert.True(t, waitGone(pid, 20*time.Second), "worker %d of the killed Go process is gone", pid)
	}
	for _, pid := range grandchildren {
		if !assert.True(t, waitGone(pid, 20*time.Second), "grandchild %d is gone", pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	assert.Empty(t, groupMembers(workers), "no process is left in the workers' process groups")
}
