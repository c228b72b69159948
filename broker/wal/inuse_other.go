//go:build !linux

package wal

// inUse cannot tell whether a process has the log in dir open where
// /proc/locks does not exist: it says yes, so that Inspect looks twice at
// a frame that does not decode.
func inUse(dir string) bool { return true }
