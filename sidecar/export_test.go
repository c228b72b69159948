package sidecar

import "time"

// SetConnectionTimeout sets the handshake bound of servers opened from now
// on, for a test, and returns a function that restores it.
func SetConnectionTimeout(d time.Duration) (restore func()) {
	old := connectionTimeout
	connectionTimeout = d
	return func() { connectionTimeout = old }
}
