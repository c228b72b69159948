package wal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppend measures group commit: N goroutines each append 16 KiB
// payloads and wait until each is durable (SyncEveryBatch), as produce
// requests with acks=all do. appends/fsync shows how many commits share one
// fsync. Run with e.g. `go test -run '^$' -bench Append ./broker/wal/`;
// TMPDIR decides which disk is measured.
func BenchmarkAppend(b *testing.B) {
	payload := make([]byte, 16<<10)
	for i := range payload {
		payload[i] = byte(i)
	}
	for _, writers := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			before := l.Stats()
			b.ResetTimer()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for left.Add(-1) >= 0 {
						p, err := l.Append(1, TypeRecordBatch, payload)
						if err == nil {
							err = l.WaitDurable(context.Background(), p.LSN)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			st := l.Stats()
			if fs := st.Fsyncs - before.Fsyncs; fs > 0 {
				b.ReportMetric(float64(st.Appends-before.Appends)/float64(fs), "appends/fsync")
			}
		})
	}
}

// BenchmarkFetchRead compares the two ways the Fetch path can read one
// stored batch out of a WAL entry: ReadAt (the whole entry into a new
// buffer, then the batch copied into the answer) and ReadRange (the batch
// read straight into the answer). Entries of 1 MiB with a 40-byte header
// in the payload, as a record batch entry has; the data is in the page
// cache.
func BenchmarkFetchRead(b *testing.B) {
	const head, size = 40, 1 << 20
	payload := make([]byte, head+size)
	for i := range payload {
		payload[i] = byte(i)
	}
	l, err := Open(Options{Dir: b.TempDir(), Sync: SyncNone, PageCacheBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var ps []Pos
	for range 64 {
		p, err := l.Append(1, TypeRecordBatch, payload)
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	for _, mode := range []string{"ReadAt", "ReadRange"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			out := make([]byte, 0, size)
			for i := 0; b.Loop(); i++ {
				p := ps[i%len(ps)]
				out = out[:0]
				if mode == "ReadAt" {
					e, err := l.ReadAt(p)
					if err != nil {
						b.Fatal(err)
					}
					out = append(out, e.Payload[head:]...)
				} else if out, err = l.ReadRange(p, head, size, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
