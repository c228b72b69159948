//go:build !unix

package wal

import "os"

// lockDir is a no-op where flock(2) does not exist.
func lockDir(dir string) (*os.File, error) { return nil, nil }

func unlockDir(f *os.File) {}
