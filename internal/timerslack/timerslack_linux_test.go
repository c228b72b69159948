//go:build linux

package timerslack

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/internal/testutil"
)

// child is the program the test runs in a child process: it prints its
// pid, applies TIMERSLACK_CHILD's slack (re-executing itself), makes the
// runtime start more threads, and prints the slack of every thread.
func child() {
	fmt.Printf("start pid=%d\n", os.Getpid())
	d, err := time.ParseDuration(os.Getenv("TIMERSLACK_CHILD"))
	if err != nil {
		fmt.Println("bad TIMERSLACK_CHILD:", err)
		os.Exit(2)
	}
	if err := Apply(d); err != nil {
		fmt.Println("apply error:", err)
	}
	// Goroutines locked to their threads make the runtime create new ones.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-release
		}()
	}
	time.Sleep(50 * time.Millisecond)
	slacks, err := testutil.ThreadTimerSlacks(os.Getpid())
	if err != nil {
		fmt.Println("reading slacks:", err)
		os.Exit(2)
	}
	var tids []string
	for tid, s := range slacks {
		tids = append(tids, fmt.Sprintf("%d:%d", tid, s.Nanoseconds()))
	}
	close(release)
	wg.Wait()
	fmt.Printf("done pid=%d marker=%q threads=%s\n", os.Getpid(), os.Getenv(execMarker), strings.Join(tids, ","))
}

func TestMain(m *testing.M) {
	if os.Getenv("TIMERSLACK_CHILD") != "" {
		child()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type childResult struct {
	starts  []int                 // pid printed at each start (two when it re-executed)
	pid     int                   // pid at the end
	marker  string                // execMarker in the final environment
	threads map[int]time.Duration // thread id -> slack at the end
	errLine string
}

func runChild(t *testing.T, slack string) childResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TIMERSLACK_CHILD="+slack)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var r childResult
	r.threads = make(map[int]time.Duration)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case strings.HasPrefix(line, "start pid="):
			pid, _ := strconv.Atoi(strings.TrimPrefix(line, "start pid="))
			r.starts = append(r.starts, pid)
		case strings.HasPrefix(line, "apply error:"):
			r.errLine = line
		case strings.HasPrefix(line, "done "):
			var threads string
			if _, err := fmt.Sscanf(line, "done pid=%d marker=%q threads=%s", &r.pid, &r.marker, &threads); err != nil {
				t.Fatalf("child line %q: %v", line, err)
			}
			for _, kv := range strings.Split(threads, ",") {
				var tid int
				var ns int64
				if _, err := fmt.Sscanf(kv, "%d:%d", &tid, &ns); err != nil {
					t.Fatalf("child thread %q: %v", kv, err)
				}
				r.threads[tid] = time.Duration(ns)
			}
		}
	}
	if r.pid == 0 {
		t.Fatalf("child printed no result:\n%s", out)
	}
	return r
}

// Apply re-executes the process once, keeps its pid, and leaves every
// thread (including those the Go runtime started before main, such as its
// scheduler monitor, and those started afterwards) with the slack.
func TestApplySetsEveryThread(t *testing.T) {
	for _, slack := range []time.Duration{time.Millisecond, 250 * time.Microsecond} {
		t.Run(slack.String(), func(t *testing.T) {
			r := runChild(t, slack.String())
			if r.errLine != "" {
				t.Fatal(r.errLine)
			}
			if len(r.starts) != 2 || r.starts[0] != r.pid || r.starts[1] != r.pid {
				t.Errorf("starts %v, final pid %d: want two starts with the same pid", r.starts, r.pid)
			}
			if r.marker != "" {
				t.Errorf("%s = %q left in the environment", execMarker, r.marker)
			}
			if len(r.threads) < 5 {
				t.Errorf("only %d threads seen: %v", len(r.threads), r.threads)
			}
			for tid, s := range r.threads {
				if s != slack {
					t.Errorf("thread %d: slack %v, want %v", tid, s, slack)
				}
			}
		})
	}
}

// With 0 nothing changes: one start, and the threads keep the slack this
// test process has (the kernel's default unless someone changed it).
func TestApplyZeroLeavesSlack(t *testing.T) {
	runtime.LockOSThread()
	mine, err := Current()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	r := runChild(t, "0s")
	if r.errLine != "" || len(r.starts) != 1 {
		t.Fatalf("starts %v, error %q: want one start and no error", r.starts, r.errLine)
	}
	for tid, s := range r.threads {
		if s != mine {
			t.Errorf("thread %d: slack %v, want the parent's %v", tid, s, mine)
		}
	}
}
