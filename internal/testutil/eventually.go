package testutil

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually re-checks its condition.
const PollInterval = 20 * time.Millisecond

// errNotYet is what a func() bool condition reports while it returns false.
var errNotYet = errors.New("testutil: condition not met yet")

// Eventually calls cond until it succeeds (returns true, or a nil error) or
// timeout passes, in which case it fails the test with the last error seen.
// cond must be cheap and must not call t.Fatal itself.
func Eventually[F func() bool | func() error](t testing.TB, timeout time.Duration, cond F) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// Poll is Eventually without a *testing.T: it returns nil as soon as cond
// succeeds, or the last error seen once timeout passes. Use it where a
// failure must be handled by the caller (for example to add context).
func Poll[F func() bool | func() error](timeout time.Duration, cond F) error {
	check := func() error {
		switch c := any(cond).(type) {
		case func() bool:
			if c() {
				return nil
			}
			return errNotYet
		case func() error:
			return c()
		default:
			panic(fmt.Sprintf("testutil: unsupported condition type %T", cond))
		}
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		<-tick.C
	}
}
