package capacity

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func TestCgroupQuota(t *testing.T) {
	v2 := t.TempDir()
	write(t, v2+"/cpu.max", "150000 100000\n")
	assert.InDelta(t, 1.5, cgroupQuota(v2), 1e-9)
	write(t, v2+"/cpu.max", "max 100000\n")
	assert.Zero(t, cgroupQuota(v2))

	v1 := t.TempDir()
	write(t, v1+"/cpu/cpu.cfs_quota_us", "50000\n")
	write(t, v1+"/cpu/cpu.cfs_period_us", "100000\n")
	assert.InDelta(t, 0.5, cgroupQuota(v1), 1e-9)
	write(t, v1+"/cpu/cpu.cfs_quota_us", "-1\n")
	assert.Zero(t, cgroupQuota(v1))
	assert.Zero(t, cgroupQuota(t.TempDir()), "no cgroup files: no quota")
}

func TestCgroupMemLimit(t *testing.T) {
	v2 := t.TempDir()
	write(t, v2+"/memory.max", "1073741824\n")
	assert.Equal(t, uint64(1<<30), cgroupMemLimit(v2))
	write(t, v2+"/memory.max", "max\n")
	assert.Zero(t, cgroupMemLimit(v2))
	v1 := t.TempDir()
	write(t, v1+"/memory/memory.limit_in_bytes", "536870912\n")
	assert.Equal(t, uint64(1<<29), cgroupMemLimit(v1))
}
