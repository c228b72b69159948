//go:build !unix

package broker

// openFileLimit is not known on this platform (Tandem runs on Linux): the
// automatic --max-connections sets no limit.
func openFileLimit() int { return 0 }
