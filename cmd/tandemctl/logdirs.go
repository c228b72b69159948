package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// logDirsCmd implements `tandemctl log-dirs`, the operator's
// kafka-log-dirs.sh: every node answers for its own replicas
// (DescribeLogDirs), so it shows, per node, the WAL directory with the
// size and free space of its file system, and per partition the bytes
// each node holds and how far each replica trails the high watermark. A
// node that does not answer is listed with why. With topics named, only
// their partitions; --json prints the same for scripts. It connects as
// `tandemctl acls` does (with --acls it needs Describe on the cluster).
func logDirsCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var (
		bootstrap string
		conn      kafkaConn
		asJSON    bool
	)
	fs := flag.NewFlagSet("log-dirs", flag.ContinueOnError)
	conn.flags(fs, "log-dirs", &bootstrap)
	fs.BoolVar(&asJSON, "json", false, "print the directories and partitions as JSON")
	topics, err := parseWithNames(fs, args)
	if err != nil {
		return err
	}
	ctx, adm, closeAdm, err := conn.admin(ctx, bootstrap, stdin, timeout)
	if err != nil {
		return err
	}
	defer closeAdm()
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return fmt.Errorf("reading the metadata: %w", err)
	}
	var set kadm.TopicsSet // nil: every partition
	if len(topics) > 0 {
		named := map[string][]int32{}
		for _, t := range topics {
			named[t] = nil
		}
		if set, err = selectPartitions(md.Topics, named); err != nil {
			return err
		}
	}
	described, err := adm.DescribeAllLogDirs(ctx, set)
	failed := map[int32]string{}
	if err != nil {
		var se *kadm.ShardErrors
		if !errors.As(err, &se) {
			return fmt.Errorf("describing the log directories: %w", err)
		}
		for _, e := range se.Errs {
			failed[e.Broker.NodeID] = e.Err.Error()
		}
	}
	nodes := []*nodeLogDir{}
	for _, b := range md.Brokers {
		n := &nodeLogDir{Node: b.NodeID, Error: failed[b.NodeID], Partitions: []partitionSize{}}
		if _, answered := described[b.NodeID]; !answered && n.Error == "" {
			n.Error = "no answer"
		}
		for _, d := range described[b.NodeID].Sorted() {
			n.Dir, n.TotalBytes, n.UsableBytes = d.Dir, d.TotalBytes, d.UsableBytes
			if d.Err != nil {
				n.Error = d.Err.Error()
			}
			for _, p := range d.Topics.Sorted() {
				n.Partitions = append(n.Partitions, partitionSize{Topic: p.Topic, Partition: p.Partition, SizeBytes: p.Size, OffsetLag: p.OffsetLag})
				n.SizeBytes += p.Size
			}
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
	var errs []string
	for _, n := range nodes {
		if n.Error != "" {
			errs = append(errs, fmt.Sprintf("node %d: %s", n.Node, n.Error))
		}
	}
	if asJSON {
		if err := printJSON(out, nodes); err != nil {
			return err
		}
	} else if err := printLogDirs(out, nodes); err != nil {
		return err
	}
	if len(errs) > 0 {
		return errors.New("describing the log directories: " + strings.Join(errs, "; "))
	}
	return nil
}

// nodeLogDir is what `tandemctl log-dirs` reports of one node; --json
// prints it as is.
type nodeLogDir struct {
	Node        int32  `json:"node"`
	Dir         string `json:"dir"`
	TotalBytes  int64  `json:"total_bytes"`  // the file system's size; -1: unknown
	UsableBytes int64  `json:"usable_bytes"` // its free bytes; -1: unknown
	// SizeBytes sums the partitions' record batches (WAL framing and
	// metadata entries are not in it).
	SizeBytes  int64           `json:"size_bytes"`
	Partitions []partitionSize `json:"partitions"`
	Error      string          `json:"error,omitempty"` // why the node did not answer
}

// partitionSize is one replica of a nodeLogDir.
type partitionSize struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	SizeBytes int64  `json:"size_bytes"`
	OffsetLag int64  `json:"offset_lag"` // how far its end trails the high watermark
}

// printLogDirs prints one line per node, then one line per partition with
// a column per node.
func printLogDirs(out io.Writer, nodes []*nodeLogDir) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tDIR\tPARTITIONS\tFILE SYSTEM\tFREE")
	for _, n := range nodes {
		if n.Error != "" {
			fmt.Fprintf(tw, "%d\t%s\n", n.Node, n.Error)
			continue
		}
		free := "?"
		if n.UsableBytes >= 0 && n.TotalBytes > 0 {
			free = fmt.Sprintf("%s (%.0f%%)", humanBytes(n.UsableBytes), 100*float64(n.UsableBytes)/float64(n.TotalBytes))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", n.Node, n.Dir, humanBytes(n.SizeBytes), humanBytes(n.TotalBytes), free)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	type key struct {
		topic string
		part  int32
	}
	byPart := map[key]map[int32]partitionSize{}
	var keys []key
	for _, n := range nodes {
		for _, p := range n.Partitions {
			k := key{p.Topic, p.Partition}
			if byPart[k] == nil {
				byPart[k] = map[int32]partitionSize{}
				keys = append(keys, k)
			}
			byPart[k][n.Node] = p
		}
	}
	if len(keys) == 0 {
		fmt.Fprintln(out, "no partitions")
		return nil
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].topic < keys[j].topic || keys[i].topic == keys[j].topic && keys[i].part < keys[j].part
	})
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	header := "TOPIC\tPARTITION"
	for _, n := range nodes {
		header += fmt.Sprintf("\tNODE %d", n.Node)
	}
	fmt.Fprintln(tw, header)
	for _, k := range keys {
		line := fmt.Sprintf("%s\t%d", k.topic, k.part)
		for _, n := range nodes {
			p, ok := byPart[k][n.Node]
			switch {
			case !ok:
				line += "\t-"
			case p.OffsetLag > 0:
				line += fmt.Sprintf("\t%s (%d behind)", humanBytes(p.SizeBytes), p.OffsetLag)
			default:
				line += "\t" + humanBytes(p.SizeBytes)
			}
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// humanBytes prints n bytes in binary units ("?" when negative: unknown).
func humanBytes(n int64) string {
	if n < 0 {
		return "?"
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB", "PiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}
