//go:build cgo

package cpython

/*
#include "shim.h"
*/
import "C"

import "runtime"

// Diagnostics of the per-OS-thread states, for tests.

// stateCounts is how many OS-thread states were made and deleted so far.
func stateCounts() (created, deleted uint64) {
	var c, d C.uint64_t
	C.slither_state_counts(&c, &d)
	return uint64(c), uint64(d)
}

// threadStates counts the interpreter's thread states, attaching the
// calling OS thread's own (made if needed).
func threadStates() int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return int(C.slither_count_thread_states())
}

// waitDeleted blocks until at least n states were deleted; false after
// timeoutMS milliseconds.
func waitDeleted(n uint64, timeoutMS int) bool {
	return C.slither_wait_deleted(C.uint64_t(n), C.int(timeoutMS)) == 0
}
