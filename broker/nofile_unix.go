//go:build unix

package broker

import "golang.org/x/sys/unix"

// openFileLimit is the process's open-file soft limit, 0 if unknown or
// unlimited.
func openFileLimit() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur >= 1<<31 {
		return 0
	}
	return int(rl.Cur)
}
