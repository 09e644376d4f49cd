package capacity

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// CPU is what this process may use of the machine's processors.
type CPU struct {
	// Online is the CPUs this process may run on (its affinity mask).
	Online int `json:"online"`
	// Quota is the cgroup CPU limit in CPUs (e.g. 1.5), or 0 for none.
	Quota float64 `json:"quota"`
	// Usable is Online, lowered to the quota rounded up: what to size
	// CPU-bound pools by.
	Usable int `json:"usable"`
	// GOMAXPROCS is the Go scheduler's setting now.
	GOMAXPROCS int `json:"gomaxprocs"`
}

// Cores reads the affinity mask (runtime.NumCPU honours it on Linux) and
// the cgroup CPU quota (v2 cpu.max, or v1 cfs quota and period).
func Cores() CPU {
	c := CPU{Online: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	c.Quota = cgroupQuota("/sys/fs/cgroup")
	c.Usable = c.Online
	if c.Quota > 0 {
		c.Usable = max(1, min(c.Online, int(math.Ceil(c.Quota))))
	}
	return c
}

// cgroupQuota returns the CPU quota under root, or 0.
func cgroupQuota(root string) float64 {
	if b, err := os.ReadFile(root + "/cpu.max"); err == nil { // v2
		f := strings.Fields(string(b))
		if len(f) == 2 && f[0] != "max" {
			q, err1 := strconv.ParseFloat(f[0], 64)
			p, err2 := strconv.ParseFloat(f[1], 64)
			if err1 == nil && err2 == nil && p > 0 {
				return q / p
			}
		}
		return 0
	}
	q, err1 := readInt(root + "/cpu/cpu.cfs_quota_us") // v1
	p, err2 := readInt(root + "/cpu/cpu.cfs_period_us")
	if err1 == nil && err2 == nil && q > 0 && p > 0 {
		return float64(q) / float64(p)
	}
	return 0
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// Mem is the memory this process may use.
type Mem struct {
	// Total is the machine's memory (MemTotal), in bytes.
	Total uint64 `json:"total"`
	// Limit is the cgroup memory limit in bytes, or 0 for none.
	Limit uint64 `json:"limit"`
	// Available is MemAvailable now, in bytes.
	Available uint64 `json:"available"`
}

// Memory reads /proc/meminfo and the cgroup memory limit.
func Memory() Mem {
	m := Mem{}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var key string
			var kb uint64
			if _, err := fmt.Sscanf(sc.Text(), "%s %d", &key, &kb); err != nil {
				continue
			}
			switch key {
			case "MemTotal:":
				m.Total = kb << 10
			case "MemAvailable:":
				m.Available = kb << 10
			}
		}
	}
	m.Limit = cgroupMemLimit("/sys/fs/cgroup")
	if m.Total > 0 && m.Limit >= m.Total {
		m.Limit = 0 // "no limit" written as a huge number
	}
	return m
}

func cgroupMemLimit(root string) uint64 {
	for _, p := range []string{root + "/memory.max", root + "/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0
		}
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return v
		}
	}
	return 0
}
