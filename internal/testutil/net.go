package testutil

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on right now
// and that FreePort has not returned before in this test binary (the
// kernel may hand the same ephemeral port out twice in a row, and a test
// that asks for several ports before starting anything would then give two
// processes the same one). It is for processes that must be told their
// port on the command line; an in-process server should listen on
// 127.0.0.1:0 instead. Another process may grab the port before it is
// used, which is rare enough for tests.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testutil: find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port
		}
	}
	t.Fatalf("testutil: the kernel kept offering ports already handed out")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// FreeAddr returns "127.0.0.1:PORT" for a port from FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// WaitTCPTimeout is how long WaitTCP waits for a listener.
const WaitTCPTimeout = 20 * time.Second

// WaitTCP waits until addr accepts TCP connections, failing the test after
// WaitTCPTimeout.
func WaitTCP(t testing.TB, addr string) {
	t.Helper()
	WaitTCPFor(t, addr, WaitTCPTimeout)
}

// WaitTCPFor is WaitTCP with an explicit timeout.
func WaitTCPFor(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	err := Poll(timeout, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("testutil: nothing accepts connections on %s after %v: %v", addr, timeout, err)
	}
}
