package process_test

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// waitGone waits up to d for process pid to end (a zombie has ended) and
// reports whether it did. It waits on a pidfd, which becomes readable when
// the process exits: an event, not a poll.
func waitGone(pid int, d time.Duration) bool {
	const sysPidfdOpen = 434 // the same number on every Linux architecture
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno == syscall.ESRCH {
		return true
	}
	if errno != 0 {
		panic(fmt.Sprintf("pidfd_open(%d): %v", pid, errno))
	}
	defer syscall.Close(int(fd))
	if !alive(pid) { // a zombie already
		return true
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		panic(err)
	}
	defer syscall.Close(ep)
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(fd), &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
		panic(err)
	}
	deadline := time.Now().Add(d)
	events := make([]syscall.EpollEvent, 1)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return !alive(pid)
		}
		n, err := syscall.EpollWait(ep, events, int(left/time.Millisecond)+1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			panic(err)
		}
		if n > 0 {
			return true
		}
	}
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	st, ok := procStat(pid)
	return ok && st[0] != "Z"
}

// procStat returns the fields of /proc/pid/stat after the command name
// (state, ppid, pgrp, ...).
func procStat(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return f, len(f) > 2
}

// groupMembers lists the live processes whose process group is one of
// pgids.
func groupMembers(pgids []int) []int {
	want := map[int]bool{}
	for _, g := range pgids {
		want[g] = true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		panic(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := procStat(pid)
		if !ok || st[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(st[2]); want[g] {
			out = append(out, pid)
		}
	}
	return out
}
