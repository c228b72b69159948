package main

import (
	"os"
	"syscall"
)

// fdatasync flushes a file's data (and the size change) without forcing
// unrelated metadata such as mtime, as a WAL's group commit does on Linux.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
