package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tandem-io/tandem/broker"
	"github.com/tandem-io/tandem/broker/wal"
)

// errCorruptWAL is returned by `tandemctl wal` when the WAL holds damage
// that a broker refuses to start on.
var errCorruptWAL = errors.New("the WAL is corrupt")

// errPastTo ends the walk of `tandemctl wal` after --to.
var errPastTo = errors.New("past --to")

// walCmd implements `tandemctl wal`, the operator's pg_waldump (and
// kafka-dump-log.sh): it reads a broker's WAL from its data directory,
// without changing it and without the broker's help (the broker may be
// stopped, or running), and prints every entry with its LSN, epoch, type,
// size, place in its segment file and what it holds (broker.DescribeEntry),
// then a summary: entries and bytes per type, the epochs, and whatever
// does not decode. Damage that a broker refuses to start on makes the
// command fail, after it printed where; a torn tail, which a broker cuts
// off by itself, does not.
func walCmd(args []string, out io.Writer) error {
	var (
		dataDir string
		from    uint64
		to      uint64
		types   string
		summary bool
		full    bool
	)
	fs := flag.NewFlagSet("wal", flag.ContinueOnError)
	fs.StringVar(&dataDir, "data-dir", "", "the broker's --data-dir (or its wal directory); required")
	fs.Uint64Var(&from, "from", 0, "print the entries from this LSN")
	fs.Uint64Var(&to, "to", 0, "print the entries up to this LSN (0: to the end)")
	fs.StringVar(&types, "type", "", "print only entries of these types, e.g. RecordBatch,CreateTopic")
	fs.BoolVar(&summary, "summary", false, "print only the summary (and any damage)")
	fs.BoolVar(&full, "full", false, "print metadata entries' whole JSON payloads (default: their first 200 bytes)")
	rest, err := parseWithNames(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usageError{fmt.Sprintf("wal: unexpected argument %q", rest[0])}
	case dataDir == "":
		return usageError{"wal needs --data-dir DIR (the broker's data directory)"}
	case to != 0 && to < from:
		return usageError{fmt.Sprintf("wal: --to %d is below --from %d", to, from)}
	}
	wanted := map[wal.EntryType]bool{}
	for _, name := range splitList(types, ",") {
		t, ok := entryTypeNamed(name)
		if !ok {
			return usageError{fmt.Sprintf("wal --type: unknown entry type %q (%s)", name, strings.Join(entryTypeNames(), ", "))}
		}
		wanted[t] = true
	}
	dir := dataDir
	if fi, err := os.Stat(filepath.Join(dataDir, "wal")); err == nil && fi.IsDir() {
		dir = filepath.Join(dataDir, "wal")
	}
	maxJSON := 200
	if full {
		maxJSON = 0
	}
	if to == 0 {
		to = math.MaxUint64
	}
	w := bufio.NewWriterSize(out, 64<<10)
	defer w.Flush()
	var (
		st       walStats
		segment  string // the segment being read
		header   string // the segment whose entries' header was printed
		problems []string
	)
	err = wal.Inspect(dir, from, func(in wal.Inspected) error {
		if in.Segment != segment {
			segment = in.Segment
			st.segments++
			if !summary {
				fmt.Fprintf(w, "segment %s\n", segment)
			}
		}
		if in.Entry == nil {
			where := fmt.Sprintf("%s offset %d", in.Segment, in.Offset)
			fmt.Fprintf(w, "! %s: %s\n", where, in.Note)
			if in.Corrupt {
				problems = append(problems, where)
			}
			return nil
		}
		e := in.Entry
		switch {
		case e.LSN > to:
			return errPastTo // nothing further is asked for
		case e.LSN < from:
			return nil
		}
		st.add(e, in.FrameBytes)
		if summary || len(wanted) > 0 && !wanted[e.Type] {
			return nil
		}
		if header != segment {
			header = segment
			fmt.Fprintf(w, "%-12s %-6s %-16s %-10s %-10s %s\n", "LSN", "EPOCH", "TYPE", "BYTES", "OFFSET", "DETAIL")
		}
		fmt.Fprintf(w, "%-12d %-6d %-16s %-10d %-10d %s\n", e.LSN, e.Epoch, e.Type, len(e.Payload), in.Offset, broker.DescribeEntry(*e, maxJSON))
		return nil
	})
	if err != nil && !errors.Is(err, errPastTo) {
		return err
	}
	st.print(w, dir)
	if len(problems) > 0 {
		fmt.Fprintf(w, "damage a broker refuses to start on: %d place(s), the first at %s\n", len(problems), problems[0])
		if err := w.Flush(); err != nil {
			return err
		}
		return fmt.Errorf("%w (%s): see docs/operations.md, \"Restoring a node whose WAL is corrupt\"", errCorruptWAL, problems[0])
	}
	return w.Flush()
}

// walStats sums up the entries `tandemctl wal` read.
type walStats struct {
	segments, entries int
	first, last       uint64
	bytes             int64
	byType            map[wal.EntryType][2]int64 // entries, frame bytes
	epochs            [][2]uint64                // epoch, first LSN
}

func (s *walStats) add(e *wal.Entry, frame int64) {
	if s.entries == 0 {
		s.first, s.byType = e.LSN, map[wal.EntryType][2]int64{}
	}
	s.entries++
	s.last = e.LSN
	s.bytes += frame
	c := s.byType[e.Type]
	s.byType[e.Type] = [2]int64{c[0] + 1, c[1] + frame}
	if n := len(s.epochs); n == 0 || s.epochs[n-1][0] != uint64(e.Epoch) {
		s.epochs = append(s.epochs, [2]uint64{uint64(e.Epoch), e.LSN})
	}
}

func (s *walStats) print(w io.Writer, dir string) {
	if s.entries == 0 {
		fmt.Fprintf(w, "summary of %s: %d segment file(s), no entries in the range asked for\n", dir, s.segments)
		return
	}
	fmt.Fprintf(w, "summary of %s: %d segment file(s), %d entries, LSN %d to %d, %d bytes of frames\n",
		dir, s.segments, s.entries, s.first, s.last, s.bytes)
	var ep []string
	for _, e := range s.epochs {
		ep = append(ep, fmt.Sprintf("%d from LSN %d", e[0], e[1]))
	}
	fmt.Fprintf(w, "epochs: %s\n", strings.Join(ep, ", "))
	ts := make([]wal.EntryType, 0, len(s.byType))
	for t := range s.byType {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	fmt.Fprintf(w, "%-16s %-10s %s\n", "TYPE", "ENTRIES", "BYTES")
	for _, t := range ts {
		fmt.Fprintf(w, "%-16s %-10d %d\n", t, s.byType[t][0], s.byType[t][1])
	}
}

// entryTypeNamed finds the entry type a name (as EntryType.String gives
// it, any case) or a number stands for.
func entryTypeNamed(name string) (wal.EntryType, bool) {
	if n, err := strconv.ParseUint(name, 10, 8); err == nil && n > 0 {
		return wal.EntryType(n), true
	}
	for t := wal.EntryType(1); t < math.MaxUint8; t++ {
		if strings.EqualFold(t.String(), name) {
			return t, true
		}
	}
	return 0, false
}

// entryTypeNames lists the named entry types.
func entryTypeNames() []string {
	var names []string
	for t := wal.EntryType(1); t < math.MaxUint8; t++ {
		if s := t.String(); !strings.HasPrefix(s, "EntryType(") {
			names = append(names, s)
		}
	}
	return names
}
