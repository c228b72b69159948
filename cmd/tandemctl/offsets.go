package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// offsetsCmd implements `tandemctl offsets`, the operator's
// kafka-get-offsets.sh and kafka-delete-records.sh:
//
//   - it prints each partition's earliest offset (the log start, which
//     retention and deleted records move up), its last stable offset (where
//     read_committed consumers stop: below it while a transaction is open)
//     and its latest offset (the high watermark, where the next committed
//     record goes), of every topic or of the partitions named;
//   - --at TIME adds the first offset whose timestamp is at or after TIME
//     (an RFC 3339 time or a duration ago), as kafka-get-offsets.sh --time;
//   - --delete-records-before OFFSET|latest moves the named partitions' log
//     start to OFFSET (latest: the high watermark, deleting every committed
//     record), which every replica applies and no consumer can undo; it
//     prints the plan, and deletes only with --execute;
//   - --json prints the offsets as JSON, for scripts.
//
// It connects as `tandemctl acls` does.
func offsetsCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var (
		bootstrap string
		conn      kafkaConn
		at        string
		before    string
		execute   bool
		asJSON    bool
	)
	fs := flag.NewFlagSet("offsets", flag.ContinueOnError)
	conn.flags(fs, "offsets", &bootstrap)
	fs.StringVar(&at, "at", "", "also give the first offset whose timestamp is at or after this time: RFC 3339, or a duration ago (e.g. 90m)")
	fs.StringVar(&before, "delete-records-before", "", "delete the named partitions' records below this offset (latest: every committed record)")
	fs.BoolVar(&execute, "execute", false, "with --delete-records-before: delete the records (without it, only print the plan)")
	fs.BoolVar(&asJSON, "json", false, "print the offsets as JSON")
	names, err := parseWithNames(fs, args)
	if err != nil {
		return err
	}
	switch {
	case before != "" && (at != "" || asJSON):
		return usageError{"offsets: --at and --json go with listing offsets, not with --delete-records-before"}
	case before != "" && len(names) == 0:
		return usageError{"offsets --delete-records-before needs the partitions: TOPIC (every partition) or TOPIC:P[,P...]"}
	case before == "" && execute:
		return usageError{"offsets: --execute goes with --delete-records-before"}
	}
	selected, err := parseTopicPartitions(names)
	if err != nil {
		return usageError{"offsets: " + err.Error()}
	}
	var atMilli int64 = -1
	if at != "" {
		t, err := parseResetTarget(at, time.Now())
		if err != nil || t.kind != "time" {
			return usageError{fmt.Sprintf("offsets --at: %q is not an RFC 3339 time or a positive duration", at)}
		}
		atMilli = t.milli
	}
	deleteBefore := int64(-1) // latest
	if before != "" && before != "latest" {
		n, err := strconv.ParseInt(before, 10, 64)
		if err != nil || n < 0 {
			return usageError{fmt.Sprintf("offsets --delete-records-before: %q is not an offset or latest", before)}
		}
		deleteBefore = n
	}
	ctx, adm, closeAdm, err := conn.admin(ctx, bootstrap, stdin, timeout)
	if err != nil {
		return err
	}
	defer closeAdm()
	parts, err := readPartitionOffsets(ctx, adm, selected, atMilli)
	if err != nil {
		return err
	}
	if before != "" {
		return deleteRecords(ctx, adm, parts, deleteBefore, execute, out)
	}
	if asJSON {
		if parts == nil {
			parts = []partitionOffsets{}
		}
		return printJSON(out, parts)
	}
	if len(parts) == 0 {
		fmt.Fprintln(out, "no topics")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	header := "TOPIC\tPARTITION\tEARLIEST\tSTABLE\tLATEST"
	if atMilli >= 0 {
		header += "\tAT\tAT-TIMESTAMP"
	}
	fmt.Fprintln(tw, header)
	var failed []string
	for _, p := range parts {
		if p.Error != "" {
			failed = append(failed, fmt.Sprintf("%s/%d: %s", p.Topic, p.Partition, p.Error))
			fmt.Fprintf(tw, "%s\t%d\t%s\n", p.Topic, p.Partition, p.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d", p.Topic, p.Partition, p.Earliest, p.Stable, p.Latest)
		if p.At != nil {
			ts := "-" // no record at or after the time: the next one goes there
			if p.At.Timestamp >= 0 {
				ts = time.UnixMilli(p.At.Timestamp).UTC().Format(time.RFC3339Nano)
			}
			fmt.Fprintf(tw, "\t%d\t%s", p.At.Offset, ts)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return errors.New("listing offsets: " + strings.Join(failed, "; "))
	}
	return nil
}

// partitionOffsets is what `tandemctl offsets` reports of one partition;
// --json prints it as is.
type partitionOffsets struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Earliest  int64  `json:"earliest"` // the log start offset
	Stable    int64  `json:"stable"`   // the last stable offset (read_committed)
	Latest    int64  `json:"latest"`   // the high watermark
	// At is the first offset at or after --at's time (and that record's
	// timestamp, -1 when there is none: the offset is then the latest).
	At    *timedOffset `json:"at,omitempty"`
	Error string       `json:"error,omitempty"` // why the offsets are unknown
}

// timedOffset is an offset found by time.
type timedOffset struct {
	Offset    int64 `json:"offset"`
	Timestamp int64 `json:"timestamp"` // Unix milliseconds; -1: no record
}

// readPartitionOffsets lists the offsets of the selected partitions
// (every partition of every topic when none is selected), sorted by topic
// and partition; with atMilli >= 0 it also looks up the first offset at or
// after that time. A topic or partition that does not exist is an error.
func readPartitionOffsets(ctx context.Context, adm *kadm.Client, selected map[string][]int32, atMilli int64) ([]partitionOffsets, error) {
	md, err := adm.ListTopics(ctx, slices.Sorted(maps.Keys(selected))...)
	if err != nil {
		return nil, fmt.Errorf("reading the topics' metadata: %w", err)
	}
	set, err := selectPartitions(md, selected)
	if err != nil {
		return nil, err
	}
	topics := set.Topics()
	if len(topics) == 0 {
		return nil, nil
	}
	list := func(what string, fn func(context.Context, ...string) (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		l, err := fn(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("listing the %s offsets: %w", what, err)
		}
		return l, nil
	}
	starts, err := list("earliest", adm.ListStartOffsets)
	if err != nil {
		return nil, err
	}
	stables, err := list("last stable", adm.ListCommittedOffsets)
	if err != nil {
		return nil, err
	}
	ends, err := list("latest", adm.ListEndOffsets)
	if err != nil {
		return nil, err
	}
	var byTime kadm.ListedOffsets
	if atMilli >= 0 {
		byTime, err = list("timed", func(ctx context.Context, ts ...string) (kadm.ListedOffsets, error) {
			return adm.ListOffsetsAfterMilli(ctx, atMilli, ts...)
		})
		if err != nil {
			return nil, err
		}
	}
	var out []partitionOffsets
	for _, tp := range set.Sorted() {
		t := tp.Topic
		for _, p := range slices.Sorted(slices.Values(tp.Partitions)) {
			po := partitionOffsets{Topic: t, Partition: p}
			var errs []string
			get := func(l kadm.ListedOffsets) kadm.ListedOffset {
				o, ok := l.Lookup(t, p)
				switch {
				case !ok:
					errs = append(errs, "no answer")
				case o.Err != nil:
					errs = append(errs, o.Err.Error())
				}
				return o
			}
			po.Earliest, po.Stable, po.Latest = get(starts).Offset, get(stables).Offset, get(ends).Offset
			if atMilli >= 0 {
				o := get(byTime)
				po.At = &timedOffset{Offset: o.Offset, Timestamp: o.Timestamp}
			}
			if len(errs) > 0 {
				po.Error = errs[0]
			}
			out = append(out, po)
		}
	}
	return out, nil
}

// deleteRecords moves the partitions' log start to before (-1: the high
// watermark), or (without execute) prints the plan. An offset past a
// partition's high watermark is refused before anything is deleted.
func deleteRecords(ctx context.Context, adm *kadm.Client, parts []partitionOffsets, before int64, execute bool, out io.Writer) error {
	plan := kadm.Offsets{}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tEARLIEST\tLATEST\tNEW EARLIEST")
	var refused []string
	moves := false // some partition's earliest offset would move
	for _, p := range parts {
		if p.Error != "" {
			refused = append(refused, fmt.Sprintf("%s/%d: %s", p.Topic, p.Partition, p.Error))
			continue
		}
		next := before
		if next < 0 {
			next = p.Latest
		}
		if next > p.Latest {
			refused = append(refused, fmt.Sprintf("%s/%d: offset %d is past its latest offset %d", p.Topic, p.Partition, next, p.Latest))
			continue
		}
		// Kafka's offset -1 means "the high watermark when the leader
		// applies it", which also takes records committed since the list.
		plan.Add(kadm.Offset{Topic: p.Topic, Partition: p.Partition, At: before, LeaderEpoch: -1})
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", p.Topic, p.Partition, p.Earliest, p.Latest, max(next, p.Earliest))
		moves = moves || next > p.Earliest
	}
	if len(refused) > 0 {
		return errors.New("nothing deleted: " + strings.Join(refused, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !moves && before >= 0 {
		// (latest may have moved on by the time the leader applies it.)
		fmt.Fprintln(out, "nothing to delete: every partition already starts at or after that offset")
		return nil
	}
	if !execute {
		fmt.Fprintln(out, "nothing deleted: run again with --execute to delete the records below NEW EARLIEST")
		return nil
	}
	res, err := adm.DeleteRecords(ctx, plan)
	if err != nil {
		return fmt.Errorf("deleting records: %w", err)
	}
	var failed []string
	var done []string
	for _, p := range parts {
		r, ok := res.Lookup(p.Topic, p.Partition)
		switch {
		case !ok:
			failed = append(failed, fmt.Sprintf("%s/%d: no answer", p.Topic, p.Partition))
		case r.Err != nil:
			failed = append(failed, fmt.Sprintf("%s/%d: %v", p.Topic, p.Partition, r.Err))
		default:
			done = append(done, fmt.Sprintf("%s/%d from %d", p.Topic, p.Partition, r.LowWatermark))
		}
	}
	if len(done) > 0 {
		fmt.Fprintln(out, "deleted: the records now start at "+strings.Join(done, ", "))
	}
	if len(failed) > 0 {
		return errors.New("deleting records: " + strings.Join(failed, "; "))
	}
	return nil
}
