//go:build !linux

package main

import (
	"io"
	"os"
)

// resizeSignals is empty where this build does not read the terminal's
// size: top draws in --width x --height, else 80x24.
var resizeSignals []os.Signal

// termSize cannot tell the size here: it takes any file for a terminal of
// 80x24.
func termSize(w io.Writer) (cols, rows int, ok bool) {
	_, ok = w.(*os.File)
	return 80, 24, ok
}
