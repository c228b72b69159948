package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DiskConfig is what `tandem-bench disk` measures.
type DiskConfig struct {
	Dir         string // where the scratch file goes: put it on the broker's data disk
	Bytes       int64  // sequential write volume (default 1 GiB); large enough to get past the page cache's write-back burst
	ChunkBytes  int    // size of each write (default 1 MiB)
	SmallWrites int    // number of small write+fsync pairs timed (default 500)
	SmallBytes  int    // size of each small write (default 4 KiB, one page)
	// Repeat runs the sequential write this many times and reports the
	// median (default 3): virtual disks often absorb a first burst in a
	// host cache, so one run can be several times off the sustained figure.
	Repeat int
}

// DefaultDiskConfig returns the defaults documented on DiskConfig.
func DefaultDiskConfig() DiskConfig {
	return DiskConfig{Bytes: 1 << 30, ChunkBytes: 1 << 20, SmallWrites: 500, SmallBytes: 4096, Repeat: 3}
}

// Validate reports the first unusable setting.
func (c DiskConfig) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: disk needs --dir", errUsage)
	case c.Repeat < 1:
		return fmt.Errorf("%w: disk --repeat must be >= 1", errUsage)
	case c.Bytes <= 0 || c.ChunkBytes <= 0:
		return fmt.Errorf("%w: disk --bytes and --chunk-bytes must be > 0", errUsage)
	case c.SmallWrites < 0 || c.SmallBytes <= 0:
		return fmt.Errorf("%w: disk --small-writes must be >= 0 and --small-bytes > 0", errUsage)
	}
	return nil
}

// parseBytes reads sizes such as 1GiB, 512MiB, 64KiB, 1GB, 10MB or a plain
// number of bytes.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3},
		{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: bad size %q", errUsage, s)
	}
	return int64(n * float64(mult)), nil
}

// bytesFlag is a flag.Value for sizes.
type bytesFlag struct{ v *int64 }

func (b bytesFlag) String() string {
	if b.v == nil {
		return ""
	}
	return strconv.FormatInt(*b.v, 10)
}

func (b bytesFlag) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b.v = n
	return nil
}

// runDisk implements `tandem-bench disk`.
func runDisk(ctx context.Context, args []string) error {
	cfg := DefaultDiskConfig()
	fs := flag.NewFlagSet("disk", flag.ContinueOnError)
	fs.StringVar(&cfg.Dir, "dir", "", "directory on the disk to measure (required; a scratch file is created and removed)")
	fs.Var(bytesFlag{&cfg.Bytes}, "bytes", "sequential write volume, e.g. 1GiB")
	chunk := int64(cfg.ChunkBytes)
	fs.Var(bytesFlag{&chunk}, "chunk-bytes", "size of each sequential write")
	fs.IntVar(&cfg.SmallWrites, "small-writes", cfg.SmallWrites, "number of small write+fsync pairs to time (0 = skip)")
	small := int64(cfg.SmallBytes)
	fs.Var(bytesFlag{&small}, "small-bytes", "size of each small write")
	fs.IntVar(&cfg.Repeat, "repeat", cfg.Repeat, "sequential runs; the median is reported")
	name := fs.String("name", "disk", "result name")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of text")
	out := fs.String("out", "", "also write the JSON result to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.ChunkBytes = int(chunk)
	cfg.SmallBytes = int(small)
	if err := cfg.Validate(); err != nil {
		return err
	}
	r, err := measureDisk(ctx, cfg)
	if err != nil {
		return err
	}
	r.Name = *name
	return emit(r, *jsonOut, *out)
}

// measureDisk writes cfg.Bytes sequentially in cfg.ChunkBytes writes to a
// fresh file and fsyncs once at the end; bandwidth is bytes over the time
// from the first write to the end of the fsync (so data that only reached
// the page cache is not counted as written). It does so cfg.Repeat times and
// reports the median. Then it times SmallWrites appends of SmallBytes, each
// followed by fdatasync: the floor under any produce latency with
// fsync-per-batch.
func measureDisk(ctx context.Context, cfg DiskConfig) (*Result, error) {
	buf := make([]byte, max(cfg.ChunkBytes, cfg.SmallBytes))
	if _, err := rand.Read(buf); err != nil {
		return nil, fmt.Errorf("bench: disk: random data: %w", err)
	}
	var runs []float64
	var total time.Duration
	for i := 0; i < cfg.Repeat; i++ {
		el, err := seqWrite(ctx, cfg.Dir, cfg.Bytes, buf[:cfg.ChunkBytes])
		if err != nil {
			return nil, err
		}
		total += el
		runs = append(runs, float64(cfg.Bytes)/MB/el.Seconds())
	}
	sorted := append([]float64(nil), runs...)
	sort.Float64s(sorted)
	r := &Result{
		Kind:        "disk",
		DurationSec: total.Seconds(),
		Bytes:       cfg.Bytes,
		MBps:        sorted[len(sorted)/2],
	}
	notes := []string{fmt.Sprintf("median of %d runs of %d MiB; runs MB/s: %s", cfg.Repeat, cfg.Bytes>>20, joinFloats(runs))}
	if cfg.SmallWrites > 0 {
		h, err := smallWrites(ctx, cfg.Dir, cfg.SmallWrites, buf[:cfg.SmallBytes])
		if err != nil {
			return nil, err
		}
		r.Latency = h.Summary()
		notes = append(notes, fmt.Sprintf("latency = one %d-byte append + fdatasync", cfg.SmallBytes))
	}
	r.Note = strings.Join(notes, "; ")
	return r, nil
}

func joinFloats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, " ")
}

// seqWrite writes size bytes to a new scratch file in chunk-sized writes,
// fsyncs it, removes it and returns the time from first write to end of fsync.
func seqWrite(ctx context.Context, dir string, size int64, chunk []byte) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "tandem-bench-disk-*.tmp")
	if err != nil {
		return 0, fmt.Errorf("bench: disk: %w", err)
	}
	path := f.Name()
	defer os.Remove(path)
	defer f.Close()
	start := time.Now()
	var written int64
	for written < size {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n := int64(len(chunk))
		if rem := size - written; rem < n {
			n = rem
		}
		if _, err := f.Write(chunk[:n]); err != nil {
			return 0, fmt.Errorf("bench: disk: write %s at %d: %w", path, written, err)
		}
		written += n
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("bench: disk: fsync %s: %w", path, err)
	}
	return time.Since(start), nil
}

// smallWrites appends n small writes to a new scratch file, each followed by
// fdatasync (so each flush carries one write and a size change, as a WAL
// append does), and returns the distribution of write+flush times.
func smallWrites(ctx context.Context, dir string, n int, data []byte) (*Histogram, error) {
	f, err := os.CreateTemp(dir, "tandem-bench-fsync-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("bench: disk: %w", err)
	}
	path := f.Name()
	defer os.Remove(path)
	defer f.Close()
	h := &Histogram{}
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if _, err := f.Write(data); err != nil {
			return nil, fmt.Errorf("bench: disk: small write %s: %w", path, err)
		}
		if err := fdatasync(f); err != nil {
			return nil, fmt.Errorf("bench: disk: fdatasync %s: %w", path, err)
		}
		h.Record(time.Since(t0))
	}
	return h, nil
}
