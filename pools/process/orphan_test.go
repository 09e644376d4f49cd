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

	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools/process"
)

const orphanChildEnv = "SLITHER_TEST_ORPHAN_CHILD"

// orphanChild is the child process of TestNoOrphansAfterKill9: it starts a
// pool, prints its workers' pids and waits to be killed.
func orphanChild() {
	p, err := process.New(context.Background(), opts(2))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for _, pid := range pids(p) {
		fmt.Println("worker", pid)
	}
	fmt.Println("ready")
	// Keep a call running too, so a worker is mid-batch when we die.
	_, _ = p.Submit(context.Background(), batch("sleep", 600.0))
	select {}
}

func TestNoOrphansAfterKill9(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var workers []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "worker "); ok {
			pid, err := strconv.Atoi(rest)
			require.NoError(t, err)
			workers = append(workers, pid)
		}
		if line == "ready" {
			break
		}
		require.NotContains(t, line, "error:")
	}
	require.Len(t, workers, 2)
	for _, pid := range workers {
		require.True(t, alive(pid), "worker %d runs before the kill", pid)
	}
	time.Sleep(200 * time.Millisecond) // let the long call start
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.Eventually(t, func() bool {
		for _, pid := range workers {
			if alive(pid) {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "every Python worker of the killed Go process is gone")
}
