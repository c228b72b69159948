//go:build !linux

package timerslack

import (
	"errors"
	"time"
)

// Apply does nothing outside Linux, which has no per-thread timer slack to
// set; d <= 0 is not an error.
func Apply(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return errors.New("timer slack can only be set on Linux; use --timer-slack 0 elsewhere")
}

// Current is not known outside Linux.
func Current() (time.Duration, error) {
	return 0, errors.New("timer slack is a Linux setting")
}
