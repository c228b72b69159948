package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Errors returned by Process methods.
var (
	ErrNotRunning  = errors.New("testutil: process is not running")
	ErrStopTimeout = errors.New("testutil: process did not exit after SIGTERM")
)

// DefaultStopTimeout is how long Stop waits after SIGTERM before it falls
// back to SIGKILL.
const DefaultStopTimeout = 15 * time.Second

// logTailLines is how many lines of a process log are printed when a test fails.
const logTailLines = 150

// ProcessConfig says which program to run and how.
type ProcessConfig struct {
	// Name labels the process in test output and names its log file
	// ("broker-1" gives broker-1.log). Defaults to the program's base name.
	Name string
	// Path is the program to run, usually from Bin.
	Path string
	// Args are the command-line arguments (without the program name).
	Args []string
	// Env is appended to the test's own environment.
	Env []string
	// Dir is the working directory; empty means the test's.
	Dir string
	// StopTimeout bounds how long Stop waits after SIGTERM
	// (default DefaultStopTimeout).
	StopTimeout time.Duration
}

// Process is a program started by a test. Its stdout and stderr go to a log
// file (LogPath). When the test ends the process is stopped (SIGTERM, then
// SIGKILL after StopTimeout), and if the test failed, or TANDEM_TEST_VERBOSE
// is set, the tail of the log is printed with the test's output. Set
// TANDEM_TEST_LOG_DIR to keep the log files after the test run.
//
// The methods are safe for concurrent use.
type Process struct {
	t       testing.TB
	cfg     ProcessConfig
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run has exited
	waitErr error         // exit status of the last run; valid after done closes
	logFile *os.File
	starts  int
}

// Start runs the program described by cfg and returns at once; use WaitTCP
// or Eventually to wait until it is ready. The test fails if it cannot be
// started.
func Start(t testing.TB, cfg ProcessConfig) *Process {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = filepath.Base(cfg.Path)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	dir := os.Getenv("TANDEM_TEST_LOG_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, sanitize(t.Name()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("testutil: create log dir: %v", err)
		}
	}
	p := &Process{t: t, cfg: cfg, logPath: filepath.Join(dir, sanitize(cfg.Name)+".log")}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testutil: open log file: %v", err)
	}
	p.logFile = f
	t.Cleanup(p.cleanup)
	if err := p.start(); err != nil {
		t.Fatalf("testutil: start %s: %v", cfg.Name, err)
	}
	return p
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// start launches one run of the program. The process must not be running.
func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return errors.New("testutil: process already running")
	}
	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	cmd.Dir = p.cfg.Dir
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.Stdout = p.logFile
	cmd.Stderr = p.logFile
	// If the test binary dies (timeout panic), take the process with it so
	// that no orphan keeps holding ports and data directories.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.starts++
	fmt.Fprintf(p.logFile, "=== testutil: start #%d at %s: %s %s\n", p.starts,
		time.Now().UTC().Format(time.RFC3339Nano), p.cfg.Path, strings.Join(p.cfg.Args, " "))
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	p.cmd, p.done, p.waitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		fmt.Fprintf(p.logFile, "=== testutil: pid %d exited at %s: %v\n", cmd.Process.Pid,
			time.Now().UTC().Format(time.RFC3339Nano), exitString(err))
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// current returns the running command and its done channel.
func (p *Process) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Name returns the label given in ProcessConfig.
func (p *Process) Name() string { return p.cfg.Name }

// Pid returns the process id of the current (or last) run.
func (p *Process) Pid() int {
	cmd, _ := p.current()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	return cmd.Process.Pid
}

// Running reports whether the process has been started and has not exited.
// A paused process is running.
func (p *Process) Running() bool {
	_, done := p.current()
	return !isClosed(done)
}

// Exited returns a channel closed when the current run exits.
func (p *Process) Exited() <-chan struct{} {
	_, done := p.current()
	return done
}

// ExitErr returns how the last run ended (nil for exit status 0). It is only
// meaningful once Running is false.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

func (p *Process) signal(sig syscall.Signal) error {
	cmd, done := p.current()
	if cmd == nil || isClosed(done) {
		return ErrNotRunning
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testutil: send %v to %s (pid %d): %w", sig, p.cfg.Name, cmd.Process.Pid, err)
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to exit: a crash, with no
// chance to flush or clean up.
func (p *Process) Kill() error {
	_, done := p.current()
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-done
	return nil
}

// Stop sends SIGTERM and waits for the process to exit, up to StopTimeout.
// A paused process is resumed first so that it can handle the signal. It
// returns the process's exit error (nil for a clean exit with status 0), or
// ErrStopTimeout after killing a process that did not exit in time.
func (p *Process) Stop() error {
	_, done := p.current()
	_ = p.signal(syscall.SIGCONT)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-done:
		return p.ExitErr()
	case <-time.After(p.cfg.StopTimeout):
		_ = p.signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("%w: %s within %v (killed)", ErrStopTimeout, p.cfg.Name, p.cfg.StopTimeout)
	}
}

// Pause freezes the process (SIGSTOP): it keeps its sockets open but does
// nothing, like a machine that hangs.
func (p *Process) Pause() error { return p.signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (p *Process) Resume() error { return p.signal(syscall.SIGCONT) }

// Restart starts the program again with the same arguments, appending to the
// same log file. A running process is stopped first (SIGTERM); use Kill
// before Restart to simulate a crash.
func (p *Process) Restart() error {
	if p.Running() {
		if err := p.Stop(); err != nil && errors.Is(err, ErrStopTimeout) {
			return err
		}
	}
	return p.start()
}

// MustRestart is Restart that fails the test on error.
func (p *Process) MustRestart() {
	p.t.Helper()
	if err := p.Restart(); err != nil {
		p.t.Fatalf("testutil: restart %s: %v", p.cfg.Name, err)
	}
}

// LogPath returns the file that holds the process's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Log returns everything the process has written so far, across restarts.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	return string(b)
}

// LogTail returns the last n lines of the log.
func (p *Process) LogTail(n int) string {
	b := []byte(p.Log())
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func (p *Process) cleanup() {
	if p.Running() {
		if err := p.Stop(); errors.Is(err, ErrStopTimeout) {
			p.t.Errorf("%s did not exit within %v of SIGTERM at the end of the test; it was killed", p.cfg.Name, p.cfg.StopTimeout)
		}
	}
	if p.t.Failed() || os.Getenv("TANDEM_TEST_VERBOSE") != "" {
		p.t.Logf("---- last %d lines of %s (%s) ----\n%s\n---- end of %s ----",
			logTailLines, p.cfg.Name, p.logPath, p.LogTail(logTailLines), p.cfg.Name)
	}
	p.mu.Lock()
	_ = p.logFile.Close()
	p.mu.Unlock()
}
