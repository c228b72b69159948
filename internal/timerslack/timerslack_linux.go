//go:build linux

package timerslack

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Apply makes d the timer slack of every thread of this process. If the
// calling thread's slack already is d it returns nil at once: every thread
// inherited it. Otherwise it sets the slack and re-executes the program; on
// success it does not return. It must run before the program starts any
// work (opens files, listens, logs), because the process starts over.
//
// d <= 0 leaves the slack as the kernel or the parent process set it.
// An error (prctl refused, execve failed, the slack not kept across
// execve) leaves the process running as it was: the caller logs it and
// carries on.
func Apply(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	_, again := os.LookupEnv(execMarker)
	if again {
		os.Unsetenv(execMarker) // not to be inherited by anything this process starts
	}
	// prctl works on the calling thread, and execve keeps that thread's
	// slack: both must run on the same thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := Current()
	if err != nil {
		return err
	}
	if cur == d {
		return nil
	}
	if again {
		return fmt.Errorf("timer slack is %v after re-executing with %v: the kernel did not keep it (a real-time scheduling policy keeps it at 0)", cur, d)
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_TIMERSLACK, %v): %w", d, err)
	}
	env := append(os.Environ(), execMarker+"=1")
	err = unix.Exec("/proc/self/exe", os.Args, env)
	// Still here: execve failed. Put this thread back as it was.
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(cur.Nanoseconds()), 0, 0, 0)
	return fmt.Errorf("re-executing /proc/self/exe with timer slack %v: %w", d, err)
}

// Current is the calling thread's timer slack.
func Current() (time.Duration, error) {
	ns, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("prctl(PR_GET_TIMERSLACK): %w", err)
	}
	return time.Duration(ns), nil
}
