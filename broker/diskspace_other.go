//go:build !linux

package broker

// diskSpace is not measured on this platform (Tandem runs on Linux).
func diskSpace(string) (total, usable int64) { return -1, -1 }
