//go:build linux

package wal

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// File I/O of the WAL that uses Linux system calls: early writeback,
// vectored writes, fdatasync.

// startWriteback asks the kernel to begin writing [off, off+n) of f to the
// device now, without waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE).
// It is advice: durability still comes only from fsync, and an error (for
// example a file closed meanwhile) is ignored.
func startWriteback(f *os.File, off, n int64) {
	advise(f, func(fd int) { _ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE) })
}

// advise runs fn on f's descriptor, for calls whose errors do not matter
// (advice to the kernel). A closed file is skipped.
func advise(f *os.File, fn func(fd int)) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { fn(int(fd)) })
}

const writebackSupported = true

// releaseCache tells the kernel that the page cache of [off, off+n) of f is
// not needed soon (posix_fadvise POSIX_FADV_DONTNEED); clean pages are
// freed at once. Advice only: errors (a file closed meanwhile) are ignored.
func releaseCache(f *os.File, off, n int64) {
	advise(f, func(fd int) { _ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED) })
}

const cacheReleaseSupported = true

// writeFrameAt writes hdr followed by parts at off with pwritev(2),
// resuming after a short write.
func writeFrameAt(f *os.File, off int64, hdr []byte, parts [][]byte) error {
	iov := make([][]byte, 0, 1+len(parts))
	iov = append(iov, hdr)
	for _, p := range parts {
		if len(p) > 0 {
			iov = append(iov, p)
		}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	cerr := rc.Write(func(fd uintptr) bool {
		for len(iov) > 0 {
			n, err := unix.Pwritev(int(fd), iov, off)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return true
			}
			if n == 0 {
				werr = io.ErrShortWrite
				return true
			}
			off += int64(n)
			for n > 0 {
				if n >= len(iov[0]) {
					n -= len(iov[0])
					iov = iov[1:]
				} else {
					iov[0] = iov[0][n:]
					n = 0
				}
			}
		}
		return true
	})
	if cerr != nil {
		return cerr
	}
	return werr
}

// syncData is fdatasync(2): the data and what is needed to read it back
// (the file size), not the modification time. On a closed file it fails,
// as f.Sync does, with an error wrapping os.ErrClosed.
func syncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if cerr := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); cerr != nil {
		// Control fails only when f is closed (no fdatasync ran).
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: os.ErrClosed}
	}
	return serr
}
