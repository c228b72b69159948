package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ThreadTimerSlacks reads the Linux timer slack of every thread of process
// pid, by thread id, as an operator would: /proc/TID/timerslack_ns for
// each TID in /proc/PID/task (the file exists only at the top level of
// /proc, which also answers for thread ids). Threads that exit while it
// reads are left out.
func ThreadTimerSlacks(pid int) (map[int]time.Duration, error) {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	out := make(map[int]time.Duration)
	for _, d := range dirs {
		tid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "timerslack_ns"))
		if err != nil {
			continue // the thread has exited since
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("thread %d: %w", tid, err)
		}
		out[tid] = time.Duration(ns)
	}
	return out, nil
}
