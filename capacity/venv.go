package capacity

import (
	"path/filepath"

	"github.com/slither-go/slither/internal/pyvenv"
)

// VenvUse is a virtualenv the doctor was asked about (--venv,
// SLITHER_VENV) and which pools it can back.
type VenvUse struct {
	Dir string `json:"dir"`
	// MadeFrom is the interpreter the venv was made from (pyvenv.cfg
	// executable, else its home directory), Version that one's version.
	MadeFrom string `json:"made_from,omitempty"`
	Version  string `json:"version,omitempty"`
	// Pools says which pools it can back and through which setting.
	Pools string `json:"pools,omitempty"`
	// Mismatch says how it differs from the embedded interpreter: set,
	// engine.Config.Venv naming it fails Start.
	Mismatch string `json:"mismatch,omitempty"`
	Error    string `json:"error,omitempty"`
}

// CheckVenv reads the venv at dir and compares it with the embedded
// interpreter e (started without a venv, so e.Executable is the base
// interpreter): one made from it backs the thread pool and the process
// pools (engine.Config.Venv); any other backs a process pool of its own
// (ProcessConfig.Python).
func CheckVenv(dir string, e Embedded) VenvUse {
	v, err := pyvenv.Open(dir)
	if err != nil {
		return VenvUse{Dir: dir, Error: err.Error()}
	}
	u := VenvUse{Dir: v.Dir, MadeFrom: v.Executable, Version: v.Version}
	if u.MadeFrom == "" {
		u.MadeFrom = v.Home
	}
	own := "a process pool of its own (engine.ProcessConfig.Python: " + v.Dir + ")"
	switch {
	case !e.Available || e.Executable == "":
		u.Pools = own + "; no embedded interpreter here to compare it with"
	default:
		if err := v.Check(e.Executable, e.Version); err != nil {
			u.Mismatch = err.Error()
			u.Pools = own + ", not engine.Config.Venv"
		} else {
			u.Pools = "the thread pool and the process pools (engine.Config.Venv)"
		}
	}
	return u
}

func (u VenvUse) warning() string {
	switch {
	case u.Error != "":
		return u.Error
	case u.Mismatch != "":
		return u.Mismatch + " (as engine.Config.Venv the engine does not start; it can still back a process pool of its own: engine.ProcessConfig.Python)"
	}
	return ""
}

// venvOf finds the venv whose interpreter is python, among those read
// without error.
func (r *Report) venvOf(python string) (VenvUse, bool) {
	for _, u := range r.Venvs {
		if u.Error == "" && filepath.Join(u.Dir, "bin", "python") == python {
			return u, true
		}
	}
	return VenvUse{}, false
}

// venvNotes says which venvs can back the embedded pool.
func (r *Report) venvNotes() string {
	var s string
	for _, u := range r.Venvs {
		if u.Error == "" && u.Mismatch == "" && r.Embedded.Available {
			s += "; with engine.Config.Venv " + u.Dir + " it runs in that venv"
		}
	}
	return s
}
