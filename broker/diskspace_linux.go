package broker

import "syscall"

// diskSpace returns the size and the free bytes (for unprivileged users) of
// the file system holding dir, or -1, -1 when it cannot tell.
func diskSpace(dir string) (total, usable int64) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1, -1
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize
}
