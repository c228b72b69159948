package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logCapture sends component logs to t.Log and keeps them for assertions.
type logCapture struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	c.mu.Unlock()
	c.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func testLogger(t testing.TB) (hclog.Logger, *logCapture) {
	c := &logCapture{t: t}
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: c}), c
}

// openLog opens a log in dir with test defaults, tweaked by mod, and closes
// it at the end of the test (ignoring ErrClosed).
func openLog(t testing.TB, dir string, mod func(*Options)) *Log {
	t.Helper()
	logger, _ := testLogger(t)
	opts := Options{Dir: dir, Logger: logger}
	if mod != nil {
		mod(&opts)
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func closeLog(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// testPayload is a deterministic payload for an LSN: its first 8 bytes are
// the LSN, the rest a pattern.
func testPayload(lsn uint64, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(lsn*31 + uint64(i)*7)
	}
	if n >= 8 {
		binary.BigEndian.PutUint64(p, lsn)
	}
	return p
}

// appendN appends n entries of size bytes with epoch and waits until they
// are durable.
func appendN(t testing.TB, l *Log, epoch uint32, n, size int) []Pos {
	t.Helper()
	var ps []Pos
	for i := 0; i < n; i++ {
		p, err := l.Append(epoch, TypeRecordBatch, testPayload(l.LastLSN()+1, size))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		ps = append(ps, p)
	}
	if len(ps) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.WaitDurable(ctx, ps[len(ps)-1].LSN); err != nil {
			t.Fatalf("WaitDurable: %v", err)
		}
	}
	return ps
}

// readAll reads from `from` until io.EOF.
func readAll(t testing.TB, l *Log, from uint64) []Entry {
	t.Helper()
	r, err := l.NewReader(from)
	if err != nil {
		t.Fatalf("NewReader(%d): %v", from, err)
	}
	defer r.Close()
	var out []Entry
	for {
		e, p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next after %d entries: %v", len(out), err)
		}
		if p.LSN != e.LSN {
			t.Fatalf("Pos.LSN %d != Entry.LSN %d", p.LSN, e.LSN)
		}
		out = append(out, e)
	}
}

// checkEntries verifies that es are the entries [from, to] with testPayload
// payloads of size bytes.
func checkEntries(t testing.TB, es []Entry, from, to uint64, size int) {
	t.Helper()
	if want := int(to - from + 1); len(es) != want {
		t.Fatalf("got %d entries, want %d ([%d, %d])", len(es), want, from, to)
	}
	for i, e := range es {
		lsn := from + uint64(i)
		if e.LSN != lsn {
			t.Fatalf("entry %d has LSN %d, want %d", i, e.LSN, lsn)
		}
		if !bytes.Equal(e.Payload, testPayload(lsn, size)) {
			t.Fatalf("LSN %d: payload differs", lsn)
		}
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// syncGate lets a test hold the syncer at the start of its cycles.
type syncGate struct {
	entered chan struct{}
	permits chan struct{}
	once    sync.Once
}

// gateSyncer installs a gate; every syncer cycle waits for a permit (or
// for open()). The gate is opened at cleanup so Close never hangs.
func gateSyncer(t testing.TB, l *Log) *syncGate {
	g := &syncGate{entered: make(chan struct{}, 1024), permits: make(chan struct{})}
	l.mu.Lock()
	l.syncHook = func() {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		<-g.permits
	}
	l.mu.Unlock()
	t.Cleanup(g.open)
	return g
}

func (g *syncGate) open() { g.once.Do(func() { close(g.permits) }) }

func (g *syncGate) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("syncer never started a cycle")
	}
}

// appendFrame appends the encoded frame of e to dst (what Append writes).
func appendFrame(dst []byte, e Entry) []byte {
	hdr := encodeFrameHeader(e.LSN, e.Epoch, e.Type, len(e.Payload), crc32.Checksum(e.Payload, castagnoli))
	dst = append(dst, hdr[:]...)
	return append(dst, e.Payload...)
}

// fsyncFault fails one fsync of a log as Linux reports a writeback error:
// to one fsync only. The first fsync whose path match accepts (a segment
// file, or the directory when a segment is created) waits until release,
// then returns EIO without running; every other fsync runs, and so
// returns 0 as the real one would once the error was reported.
type fsyncFault struct {
	entered chan string // the failing fsync's path, when it starts
	release chan struct{}
	once    sync.Once
	fired   atomic.Bool
}

// failFsync installs an fsyncFault on l; it is released at cleanup.
func failFsync(t testing.TB, l *Log, match func(path string) bool) *fsyncFault {
	f := &fsyncFault{entered: make(chan string, 1), release: make(chan struct{})}
	hook := func(path string, fsync func() error) error {
		if !match(path) || !f.fired.CompareAndSwap(false, true) {
			return fsync()
		}
		f.entered <- path
		<-f.release
		return syscall.EIO
	}
	l.mu.Lock()
	l.syncMu.Lock()
	l.fsyncHook = hook
	l.syncMu.Unlock()
	l.mu.Unlock()
	t.Cleanup(f.open)
	return f
}

// open lets the failing fsync return (and fail the next one at once).
func (f *fsyncFault) open() { f.once.Do(func() { close(f.release) }) }

func (f *fsyncFault) waitEntered(t testing.TB) string {
	t.Helper()
	select {
	case path := <-f.entered:
		return path
	case <-time.After(10 * time.Second):
		t.Fatal("the fsync to fail never started")
		return ""
	}
}

func anyPath(string) bool { return true }

// inStack reports whether some goroutine is inside fn (a function name as
// a stack trace prints it, such as "(*Log).rollLocked").
func inStack(fn string) bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return bytes.Contains(buf[:n], []byte(fn+"("))
}
