package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// MountTmpfs mounts a tmpfs of size bytes on dir (created if needed), a
// small file system that a test can fill, and unmounts it when the test
// ends: register it before whatever keeps files open on it, so that those
// cleanups run first. It needs root (scripts/test.sh runs as root: it
// installs packages with apt-get); without it the test fails and says so.
func MountTmpfs(t testing.TB, dir string, size uint64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s (needs root): %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// ResizeTmpfs sets the size of the tmpfs that MountTmpfs mounted on dir
// (it cannot shrink below what the files on it use).
func ResizeTmpfs(t testing.TB, dir string, size uint64) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), dir).CombinedOutput(); err != nil {
		t.Fatalf("resize the tmpfs on %s to %d bytes: %v: %s", dir, size, err, out)
	}
}
