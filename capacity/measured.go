package capacity

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Measured is what `slither bench` learned on this machine and leaves for
// the capacity model: the fastest correct executor per workload and each
// executor's measured per-call overhead. `slither doctor` reads it.
type Measured struct {
	Date    time.Time `json:"date"`
	Machine string    `json:"machine"`
	// Winners maps a workload ("cpu", "hash-1mb", ...) to the executor
	// that ran it fastest and correctly ("thread", "process-gil", ...).
	Winners map[string]string `json:"winners"`
	// CallOverhead is each executor's median no-op call (batch of 1).
	CallOverhead map[string]time.Duration `json:"call_overhead_ns"`
}

// MeasuredPath is where bench saves, and doctor reads, the measurements:
// $SLITHER_CACHE_DIR or the user cache directory, under slither/.
func MeasuredPath() string {
	root := os.Getenv("SLITHER_CACHE_DIR")
	if root == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			c = os.TempDir()
		}
		root = filepath.Join(c, "slither")
	}
	return filepath.Join(root, "measured.json")
}

// Save writes m to path atomically.
func (m Measured) Save(path string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("capacity: saving measurements: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("capacity: saving measurements: %w", err)
	}
	return os.Rename(tmp, path)
}

// LoadMeasured reads measurements saved by bench; ok is false when there
// are none.
func LoadMeasured(path string) (m Measured, ok bool, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return m, false, nil
	}
	if err != nil {
		return m, false, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, false, fmt.Errorf("capacity: %s: %w", path, err)
	}
	return m, true, nil
}
