package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// inUse reports whether some process (a broker, or a Log of this one)
// has the log in dir open: whether /proc/locks lists a lock on its LOCK
// file (lockDir). It only reads, so it never keeps a broker from taking
// the lock. When it cannot tell, it says yes.
func inUse(dir string) bool {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "LOCK"), &st); err != nil {
		return false // no LOCK file: no Log ever had it open
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return true
	}
	// Lines such as "1: FLOCK  ADVISORY  WRITE 4242 08:01:1311 0 EOF":
	// the locked file is MAJOR:MINOR:INODE, the device numbers in hex.
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), st.Ino)
	for _, line := range strings.Split(string(locks), "\n") {
		for _, field := range strings.Fields(line) {
			if field == want {
				return true
			}
		}
	}
	return false
}
