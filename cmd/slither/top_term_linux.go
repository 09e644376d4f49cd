package main

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// resizeSignals redraw `slither top` at once when the terminal changes size.
var resizeSignals = []os.Signal{syscall.SIGWINCH}

// termSize is the size of the terminal w writes to; ok is false when w is
// not a terminal.
func termSize(w io.Writer) (cols, rows int, ok bool) {
	f, isFile := w.(*os.File)
	if !isFile {
		return 0, 0, false
	}
	// SyscallConn, not Fd: Fd would switch the descriptor to blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var ws struct{ Row, Col, Xpixel, Ypixel uint16 }
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
	}); err != nil || errno != 0 || ws.Col == 0 || ws.Row == 0 {
		return 0, 0, false
	}
	return int(ws.Col), int(ws.Row), true
}
