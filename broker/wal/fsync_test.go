package wal

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestFsyncFailure: Linux reports a writeback error to one fsync only, so
// whichever fsync of a segment gets it, the log must fail (refuse writes
// until it is reopened) and report nothing durable that was written before
// the failure, even when a roll, Truncate or Close fsyncs the same file
// meanwhile and gets 0.
func TestFsyncFailure(t *testing.T) {
	noPrealloc := func(o *Options) { o.SegmentBytes = 4096; o.PreallocateBytes = -1 }
	// concurrently runs call while the syncer's fsync of the entry just
	// written is failing: the fsync returns only once call returned or
	// started is true (call is then waiting).
	concurrently := func(t *testing.T, fault *fsyncFault, call func() error, started func() bool) error {
		fault.waitEntered(t)
		done := make(chan error, 1)
		go func() { done <- call() }()
		var err error
		returned := false
		eventually(t, 10*time.Second, "the concurrent call to run or wait", func() bool {
			select {
			case err = <-done:
				returned = true
				return true
			default:
				return started()
			}
		})
		fault.open()
		if !returned {
			err = <-done
		}
		return err
	}
	tests := []struct {
		name string
		opts func(*Options)
		// provoke writes entries and makes an fsync fail; every entry up to
		// lsn was written before that fsync. callErr is the error of the
		// call that ran concurrently with it, if any.
		provoke func(t *testing.T, l *Log) (lsn uint64, callErr error)
		closes  bool // provoke closed the log
	}{
		{"syncer", noPrealloc, func(t *testing.T, l *Log) (uint64, error) {
			failFsync(t, l, anyPath).open()
			p, err := l.Append(1, TypeRecordBatch, testPayload(1, 100))
			if err != nil {
				t.Fatal(err)
			}
			return p.LSN, errNoCall
		}, false},
		{"preallocator", func(o *Options) { o.PreallocateBytes = 64 << 10 }, func(t *testing.T, l *Log) (uint64, error) {
			// Only the preallocator fsyncs: its fsync also writes back the
			// entry, and it fails. The syncer's fsync afterwards would
			// return 0.
			gate := gateSyncer(t, l)
			fault := failFsync(t, l, anyPath)
			// 40 KiB leave less than half of the 64 KiB ahead zero-filled:
			// the preallocator runs again, if its first run is not the
			// one failing.
			p, err := l.Append(1, TypeRecordBatch, testPayload(1, 40<<10))
			if err != nil {
				t.Fatal(err)
			}
			fault.waitEntered(t)
			fault.open()
			gate.open()
			return p.LSN, errNoCall
		}, false},
		{"roll", noPrealloc, func(t *testing.T, l *Log) (uint64, error) {
			fault := failFsync(t, l, anyPath)
			p, err := l.Append(1, TypeRecordBatch, testPayload(1, 1000))
			if err != nil {
				t.Fatal(err)
			}
			return p.LSN, concurrently(t, fault, func() error {
				_, err := l.Append(1, TypeRecordBatch, testPayload(2, 4000)) // rolls
				return err
			}, func() bool { return inStack("(*Log).rollLocked") })
		}, false},
		{"truncate", noPrealloc, func(t *testing.T, l *Log) (uint64, error) {
			appendN(t, l, 1, 1, 100)
			fault := failFsync(t, l, anyPath)
			for i := 0; i < 2; i++ {
				if _, err := l.Append(1, TypeRecordBatch, testPayload(l.LastLSN()+1, 100)); err != nil {
					t.Fatal(err)
				}
			}
			return 2, concurrently(t, fault, func() error { return l.Truncate(2) },
				func() bool { return inStack("(*Log).truncateLocked") })
		}, false},
		{"close", noPrealloc, func(t *testing.T, l *Log) (uint64, error) {
			fault := failFsync(t, l, anyPath)
			p, err := l.Append(1, TypeRecordBatch, testPayload(1, 100))
			if err != nil {
				t.Fatal(err)
			}
			return p.LSN, concurrently(t, fault, l.Close, func() bool {
				l.mu.Lock()
				defer l.mu.Unlock()
				return l.closed // Close waits for the syncer
			})
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			logger, _ := testLogger(t)
			opts := Options{Dir: dir, Logger: logger}
			tt.opts(&opts)
			l, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			lsn, callErr := tt.provoke(t, l)
			if callErr != errNoCall && !errors.Is(callErr, syscall.EIO) {
				t.Errorf("the call concurrent with the failing fsync returned %v, want the fsync's EIO", callErr)
			}
			if d := l.DurableLSN(); d >= lsn {
				t.Errorf("DurableLSN = %d, but LSN %d was written before the failed fsync", d, lsn)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = l.WaitDurable(ctx, lsn)
			if want := syscall.EIO; tt.closes {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("WaitDurable(%d) after Close = %v, want ErrClosed", lsn, err)
				}
			} else if !errors.Is(err, want) {
				t.Errorf("WaitDurable(%d) = %v, want the fsync's EIO", lsn, err)
			}
			if !tt.closes {
				if _, err := l.Append(1, TypeRecordBatch, testPayload(9, 10)); !errors.Is(err, syscall.EIO) {
					t.Errorf("Append after the failed fsync = %v, want the fsync's EIO", err)
				}
				if err := l.Close(); !errors.Is(err, syscall.EIO) {
					t.Errorf("Close = %v, want its fsync refused with the earlier EIO", err)
				}
			}
			// A restart recovers from what is on disk (here everything:
			// the EIO was not real) and takes writes again.
			l = openLog(t, dir, tt.opts)
			appendN(t, l, 1, 1, 10)
		})
	}
}

// errNoCall: no call ran concurrently with the failing fsync.
var errNoCall = errors.New("no concurrent call")

// TestSyncDataClosedFile: an fdatasync of a segment file closed because
// Truncate, Reset or retention deleted the segment ran no fsync; it must
// say so (os.ErrClosed), not look like an I/O failure.
func TestSyncDataClosedFile(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/f")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := syncData(f); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("syncData of a closed file = %v, want os.ErrClosed", err)
	}
}

// TestSegmentCreateFailure: when the directory fsync that creates a
// segment fails, the file is removed again, so that a retry succeeds
// instead of failing with EEXIST until a restart.
func TestSegmentCreateFailure(t *testing.T) {
	tests := []struct {
		name string
		// fail runs the call whose segment creation fails and returns its
		// error; retry runs it again and writes entries from first on.
		fail, retry func(t *testing.T, l *Log) error
		first, last uint64 // entries in the log at the end
	}{
		{"roll",
			func(t *testing.T, l *Log) error {
				_, err := l.Append(1, TypeRecordBatch, testPayload(2, 3000))
				return err
			},
			func(t *testing.T, l *Log) error {
				appendN(t, l, 1, 2, 3000)
				return nil
			}, 1, 3},
		{"reset",
			func(t *testing.T, l *Log) error { return l.Reset(100) },
			func(t *testing.T, l *Log) error {
				if err := l.Reset(100); err != nil {
					return err
				}
				for lsn := uint64(100); lsn <= 101; lsn++ {
					if _, err := l.AppendEntry(Entry{LSN: lsn, Epoch: 2, Type: TypeRecordBatch, Payload: testPayload(lsn, 3000)}); err != nil {
						return err
					}
				}
				return l.WaitDurable(context.Background(), 101)
			}, 100, 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := func(o *Options) { o.SegmentBytes = 4096; o.PreallocateBytes = -1 }
			l := openLog(t, dir, opts)
			appendN(t, l, 1, 1, 3000)
			failFsync(t, l, func(path string) bool { return path == dir }).open()
			if err := tt.fail(t, l); !errors.Is(err, syscall.EIO) {
				t.Fatalf("call with a failing directory fsync = %v, want EIO", err)
			}
			if err := tt.retry(t, l); err != nil {
				t.Fatalf("retry: %v", err)
			}
			checkEntries(t, readAll(t, l, tt.first), tt.first, tt.last, 3000)
			closeLog(t, l)
			l = openLog(t, dir, opts)
			checkEntries(t, readAll(t, l, tt.first), tt.first, tt.last, 3000)
		})
	}
}
