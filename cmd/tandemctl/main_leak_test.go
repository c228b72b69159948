package main

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must stop every goroutine it started (sidecars, links,
// replication streams).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
