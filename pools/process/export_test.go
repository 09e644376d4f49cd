package process

// SetWorkerModule points new workers at another module and returns a func
// that restores it.
func SetWorkerModule(m string) func() {
	old := workerModule
	workerModule = m
	return func() { workerModule = old }
}
