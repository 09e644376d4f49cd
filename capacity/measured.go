package capacity

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/slither-go/slither/internal/cachedir"
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
	// Costs maps a Python function ("module.function", e.g.
	// "slither._bench.cpu") to each executor's measured cost per item of
	// it, in nanoseconds, by executor name ("thread", "process-gil",
	// "process-ft", ...): the seeds of Auto's cost model (pools.Router).
	Costs map[string]map[string]float64 `json:"costs_ns_per_item,omitempty"`
}

// MeasuredPath is where bench saves, and doctor reads, the measurements:
// measured.json in Slither's private cache directory ($SLITHER_CACHE_DIR or
// the user cache directory, under slither/; see internal/cachedir). It
// fails, rather than fall back to a shared directory, when there is none.
func MeasuredPath() (string, error) {
	root, err := cachedir.Root()
	if err != nil {
		return "", fmt.Errorf("capacity: measurements: %w", err)
	}
	return filepath.Join(root, "measured.json"), nil
}

// Save writes m to path atomically: to a temporary file of a unique name in
// the same directory (created 0700 if missing), renamed over path.
func (m Measured) Save(path string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("capacity: saving measurements: %w", err)
	}
	if err := cachedir.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("capacity: saving measurements: %w", err)
	}
	return nil
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
