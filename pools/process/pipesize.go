package process

import (
	"os"
	"syscall"
)

// growPipe raises a pipe's kernel buffer to 1 MiB (best effort; the
// default 64 KiB makes a large payload cost many context switches).
func growPipe(f *os.File) {
	const fSetPipeSz = 1031 // F_SETPIPE_SZ
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, 1<<20)
		})
	}
}
