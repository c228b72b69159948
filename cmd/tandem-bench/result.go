package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// MB is the unit of every throughput figure: 10^6 bytes, the unit disks and
// networks are sold in. The disk and the broker are measured in the same
// unit, so their ratio (the "half of the disk" target) is fair.
const MB = 1e6

// Result is one measurement, as written by a subcommand with --out or --json
// and read back by `report` and `chart`. Fields that do not apply to a kind
// of run are left out of the JSON.
type Result struct {
	// Name identifies the row in the report (e.g. "standalone-acks1");
	// Label is how the row is printed (e.g. "standalone produce acks=1").
	Name  string `json:"name"`
	Label string `json:"label,omitempty"`
	// Kind is the subcommand that produced it: produce, consume, disk, lag,
	// catchup, rss, jetstream.
	Kind string `json:"kind"`

	DurationSec   float64 `json:"duration_sec,omitempty"`
	Records       int64   `json:"records,omitempty"`
	Bytes         int64   `json:"bytes,omitempty"`
	MBps          float64 `json:"mb_per_sec,omitempty"`
	RecordsPerSec float64 `json:"records_per_sec,omitempty"`

	// Latency is per record: produce call to acknowledgement for produce,
	// leader acknowledgement to follower visibility for lag, one small
	// write+fsync for disk.
	Latency *LatencySummary `json:"latency,omitempty"`
	// SidecarLag (lag only) summarises the follower lag the leader sidecar
	// itself reported (tandemctl status lagSeconds), sampled during the run.
	SidecarLag *LatencySummary `json:"sidecar_lag,omitempty"`
	// ApplyLag (lag only) summarises the apply lag that the leader sidecar
	// measured for the follower during the window (its histogram
	// tandem_sidecar_follower_apply_lag_seconds): leader durable to
	// follower applied, PostgreSQL's replay_lag. It leaves out the commit
	// point's trip to the follower and the Fetch that the measured lag
	// includes.
	ApplyLag *LatencySummary `json:"apply_lag,omitempty"`

	// Load parameters, for the record.
	Acks        *int    `json:"acks,omitempty"`
	RecordBytes int     `json:"record_bytes,omitempty"`
	Partitions  int     `json:"partitions,omitempty"`
	Producers   int     `json:"producers,omitempty"`
	TargetRate  float64 `json:"target_rate,omitempty"` // records/s, 0 = as fast as possible

	Errors     int64  `json:"errors,omitempty"`
	FirstError string `json:"first_error,omitempty"`

	// RSS of a watched process (the broker) while the run lasted.
	RSS *RSSSummary `json:"rss,omitempty"`

	// Note is a free-form remark printed in the report (e.g. why a row was
	// measured differently).
	Note string `json:"note,omitempty"`
}

// writeResult writes r as indented JSON to path ("-" is stdout).
func writeResult(path string, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode result %q: %w", r.Name, err)
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("bench: write result: %w", err)
	}
	return nil
}

// emit prints the human summary and, as asked, JSON to stdout or a file.
func emit(r *Result, jsonOut bool, outPath string) error {
	if jsonOut {
		if err := writeResult("-", r); err != nil {
			return err
		}
	} else {
		fmt.Println(r.Summary())
	}
	if outPath != "" {
		return writeResult(outPath, r)
	}
	return nil
}

// Summary is a one-paragraph human description of a result.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", r.display())
	if r.MBps > 0 {
		fmt.Fprintf(&b, " %.1f MB/s", r.MBps)
	}
	if r.RecordsPerSec > 0 {
		fmt.Fprintf(&b, " %.0f records/s", r.RecordsPerSec)
	}
	if r.Records > 0 {
		fmt.Fprintf(&b, " (%d records, %d bytes in %.2fs)", r.Records, r.Bytes, r.DurationSec)
	} else if r.Bytes > 0 {
		fmt.Fprintf(&b, " (%d bytes in %.2fs)", r.Bytes, r.DurationSec)
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(&b, "\n  latency ms: p50 %.3f  p99 %.3f  p999 %.3f  max %.3f  mean %.3f  (%d samples)",
			l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.MeanMs, l.Count)
	}
	if s := r.RSS; s != nil {
		fmt.Fprintf(&b, "\n  pid %d RSS MiB: peak %.1f  last %.1f  VmHWM %.1f  (%d samples)",
			s.PID, mib(s.PeakKB), mib(s.LastKB), mib(s.HWMKB), len(s.Samples))
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "\n  errors: %d (first: %s)", r.Errors, r.FirstError)
	}
	if r.Note != "" {
		fmt.Fprintf(&b, "\n  note: %s", r.Note)
	}
	return b.String()
}

func (r *Result) display() string {
	if r.Label != "" {
		return r.Label
	}
	if r.Name != "" {
		return r.Name
	}
	return r.Kind
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// errNoResults is returned when a results directory holds no result file.
var errNoResults = errors.New("bench: no result files")

// loadResults reads every *.json result in dir, or the results of a report
// file (see Report) when path is a file.
func loadResults(path string) ([]*Result, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bench: results: %w", err)
	}
	if !st.IsDir() {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("bench: results: %w", err)
		}
		var rep Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return nil, fmt.Errorf("bench: decode %s: %w", path, err)
		}
		if len(rep.Results) == 0 {
			return nil, fmt.Errorf("%w in %s", errNoResults, path)
		}
		return rep.Results, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("bench: results: %w", err)
	}
	sort.Strings(files)
	var out []*Result
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("bench: results: %w", err)
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("bench: decode %s: %w", f, err)
		}
		if r.Name == "" {
			r.Name = strings.TrimSuffix(filepath.Base(f), ".json")
		}
		out = append(out, &r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w in %s", errNoResults, path)
	}
	return out, nil
}
