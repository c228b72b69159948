package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ModulePath is the Go module whose go.mod marks the repository root.
const ModulePath = "github.com/tandem-io/tandem"

// ErrNoRepoRoot means no parent directory holds Tandem's go.mod.
var ErrNoRepoRoot = errors.New("testutil: repository root not found")

// FindRepoRoot walks up from the working directory to the directory whose
// go.mod declares ModulePath. It is for code without a *testing.T (TestMain).
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testutil: working directory: %w", err)
	}
	start := dir
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+ModulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%w: no go.mod for %s above %s", ErrNoRepoRoot, ModulePath, start)
		}
		dir = parent
	}
}

// RepoRoot returns the repository root, failing the test if it is not found.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// BinPath returns where scripts/build.sh puts the binary called name
// (bin/NAME under the repository root), without checking that it exists.
func BinPath(root, name string) string {
	return filepath.Join(root, "bin", name)
}

// Bin returns the path of the built binary bin/NAME and fails the test with a
// clear message when it has not been built.
func Bin(t testing.TB, name string) string {
	t.Helper()
	p := BinPath(RepoRoot(t), name)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatalf("testutil: binary %s is missing (%v); build it first with scripts/build.sh", p, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("testutil: %s is not an executable file; rebuild it with scripts/build.sh", p)
	}
	return p
}
