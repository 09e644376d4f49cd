package process

import (
	"syscall"
	"unsafe"
)

// waitExit blocks until child pid has exited, without reaping it: while it
// is a zombie its pid (and so its process group id) cannot be reused, so
// the group can still be killed safely.
func waitExit(pid int) {
	const (
		pPID    = 1         // P_PID
		wNoWait = 0x1000000 // WNOWAIT
	)
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|wNoWait, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}
