package gctune

import (
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// Without GOGC in the environment Apply sets DefaultPercent; with it, the
// operator's value stays. Each case runs in a child process, because GOGC
// is read at start-up.
func TestApply(t *testing.T) {
	if os.Getenv("GCTUNE_CHILD") == "1" {
		Apply()
		old := debug.SetGCPercent(-1)
		os.Stdout.WriteString(strconv.Itoa(old))
		return
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, strconv.Itoa(DefaultPercent)},
		{[]string{"GOGC=150"}, "150"},
		{[]string{"GOGC=off"}, "-1"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestApply$")
		cmd.Env = append(withoutGOGC(os.Environ()), append(tc.env, "GCTUNE_CHILD=1")...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child with %v: %v", tc.env, err)
		}
		if got := strings.SplitN(string(out), "PASS", 2)[0]; strings.TrimSpace(got) != tc.want {
			t.Errorf("with %v the GC percent is %q, want %s", tc.env, got, tc.want)
		}
	}
}

func withoutGOGC(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "GOGC=") {
			out = append(out, e)
		}
	}
	return out
}
