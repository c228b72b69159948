package testutil

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		run     func() error
		wantErr error
	}{
		{"bool true at third call", func() error {
			var n atomic.Int32
			return Poll(2*time.Second, func() bool { return n.Add(1) >= 3 })
		}, nil},
		{"bool never true", func() error {
			return Poll(100*time.Millisecond, func() bool { return false })
		}, errNotYet},
		{"error cleared", func() error {
			var n atomic.Int32
			return Poll(2*time.Second, func() error {
				if n.Add(1) < 3 {
					return errBoom
				}
				return nil
			})
		}, nil},
		{"error kept", func() error {
			return Poll(100*time.Millisecond, func() error { return errBoom })
		}, errBoom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Poll = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestFreePortAndWaitTCP(t *testing.T) {
	addr := FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the free address %s: %v", addr, err)
	}
	defer l.Close()
	WaitTCP(t, addr)
}

func TestRepoRootAndBinPath(t *testing.T) {
	root := RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("RepoRoot %s has no go.mod: %v", root, err)
	}
	if got, want := BinPath(root, "x"), filepath.Join(root, "bin", "x"); got != want {
		t.Fatalf("BinPath = %s, want %s", got, want)
	}
}

func TestProcessLifecycle(t *testing.T) {
	// A shell loop that prints a line, so that the log shows every start.
	p := Start(t, ProcessConfig{
		Name: "loop",
		Path: "/bin/sh",
		Args: []string{"-c", `trap 'echo by""e; exit 0' TERM; printf 'sta%s\n' rted; while :; do sleep 0.05; done`},
	})
	// Wait for the trap to be installed ("started" is not in the command line).
	Eventually(t, 5*time.Second, func() bool { return strings.Contains(p.Log(), "started") })
	if !p.Running() {
		t.Fatal("process not running after Start")
	}
	firstPid := p.Pid()

	if err := p.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := p.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}

	if err := p.Stop(); err != nil {
		t.Fatalf("Stop = %v, want a clean exit", err)
	}
	if p.Running() {
		t.Fatal("process still running after Stop")
	}
	Eventually(t, 5*time.Second, func() bool { return strings.Contains(p.Log(), "bye") })

	p.MustRestart()
	if p.Pid() == firstPid || !p.Running() {
		t.Fatalf("Restart did not start a new process (pid %d, first %d)", p.Pid(), firstPid)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if p.ExitErr() == nil {
		t.Fatal("a SIGKILLed process reported a clean exit")
	}
	if err := p.Kill(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Kill of an exited process = %v, want ErrNotRunning", err)
	}
	if n := strings.Count(p.Log(), "=== testutil: start #"); n != 2 {
		t.Fatalf("log shows %d starts, want 2:\n%s", n, p.Log())
	}
}

func TestProcessStopTimeout(t *testing.T) {
	p := Start(t, ProcessConfig{
		Name:        "stubborn",
		Path:        "/bin/sh",
		Args:        []string{"-c", `trap '' TERM; printf 're%s\n' ady; while :; do sleep 0.05; done`},
		StopTimeout: 300 * time.Millisecond,
	})
	Eventually(t, 5*time.Second, func() bool { return strings.Contains(p.Log(), "ready") })
	if err := p.Stop(); !errors.Is(err, ErrStopTimeout) {
		t.Fatalf("Stop of a process that ignores SIGTERM = %v, want ErrStopTimeout", err)
	}
	if p.Running() {
		t.Fatal("process still running after Stop timed out")
	}
}
