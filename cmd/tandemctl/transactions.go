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

// transactionsCmd implements `tandemctl transactions`, the operator's
// kafka-transactions.sh list and describe: it prints the transactional ids
// the leader coordinates (ListTransactions, DescribeTransactions), with
// their state, producer id and epoch, timeout, how long the open ones have
// run and their partitions. --state keeps the ids in the given states
// (Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort,
// Empty); --older-than keeps the transactions open for at least that long,
// the ones holding read_committed consumers back. --abort ID aborts that
// id's open transaction now instead of at its timeout (WriteTxnMarkers, as
// Kafka's Admin.abortTransaction): every partition gets its abort marker,
// and the producer is fenced (it must start again, as after a timeout). It
// connects as `tandemctl acls` does; with --acls the brokers show only the
// ids the principal may Describe, and --abort needs ClusterAction on the
// cluster.
func transactionsCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var (
		bootstrap string
		conn      kafkaConn
		states    stringsFlag
		olderThan time.Duration
		abort     string
	)
	fs := flag.NewFlagSet("transactions", flag.ContinueOnError)
	conn.flags(fs, "transactions", &bootstrap)
	fs.Var(&states, "state", "only transactions in these states, STATE[,STATE] (repeatable): Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, Empty")
	fs.DurationVar(&olderThan, "older-than", 0, "only transactions open for at least this long")
	fs.StringVar(&abort, "abort", "", "abort the open transaction of this transactional id now")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{"transactions: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("transactions takes no arguments (got %q)", fs.Args())}
	}
	var want []string
	for _, s := range states {
		want = append(want, splitList(s, ",")...)
	}
	ctx, adm, closeAdm, err := conn.admin(ctx, bootstrap, stdin, timeout)
	if err != nil {
		return err
	}
	defer closeAdm()
	if abort != "" {
		return abortTransaction(ctx, adm, abort, out)
	}
	listed, err := adm.ListTransactions(ctx, nil, want)
	if err != nil {
		return fmt.Errorf("listing transactions: %w", err)
	}
	if len(listed) == 0 {
		fmt.Fprintln(out, "no transactions")
		return nil
	}
	described, err := adm.DescribeTransactions(ctx, listed.TransactionalIDs()...)
	if err != nil {
		return fmt.Errorf("describing transactions: %w", err)
	}
	now := time.Now()
	var rows []kadm.DescribedTransaction
	for _, d := range described.Sorted() {
		if d.Err != nil {
			return fmt.Errorf("describing transaction %s: %w", d.TxnID, d.Err)
		}
		if olderThan > 0 && (d.StartTimestamp <= 0 || now.Sub(time.UnixMilli(d.StartTimestamp)) < olderThan) {
			continue
		}
		rows = append(rows, d)
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "no transactions")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSACTIONAL ID\tSTATE\tPRODUCER ID\tEPOCH\tTIMEOUT\tOPEN FOR\tPARTITIONS")
	for _, d := range rows {
		open := "-"
		if d.StartTimestamp > 0 {
			open = now.Sub(time.UnixMilli(d.StartTimestamp)).Truncate(time.Second).String()
		}
		var parts []string
		for _, tp := range d.Topics.Sorted() {
			ps := append([]int32(nil), tp.Partitions...)
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
			for _, p := range ps {
				parts = append(parts, fmt.Sprintf("%s/%d", tp.Topic, p))
			}
		}
		if len(parts) == 0 {
			parts = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", d.TxnID, d.State, d.ProducerID, d.ProducerEpoch,
			time.Duration(d.TimeoutMillis)*time.Millisecond, open, strings.Join(parts, ","))
	}
	return tw.Flush()
}

// abortTransaction aborts the open transaction of a transactional id.
func abortTransaction(ctx context.Context, adm *kadm.Client, id string, out io.Writer) error {
	described, err := adm.DescribeTransactions(ctx, id)
	if err != nil {
		return fmt.Errorf("describing transaction %s: %w", id, err)
	}
	d, ok := described[id]
	switch {
	case !ok:
		return fmt.Errorf("transaction %s: not described", id)
	case d.Err != nil:
		return fmt.Errorf("transaction %s: %w", id, d.Err)
	case d.State != "Ongoing":
		return fmt.Errorf("transaction %s is %s, not Ongoing: nothing to abort", id, d.State)
	case len(d.Topics) == 0:
		return fmt.Errorf("transaction %s holds no partitions (only consumer offsets): it ends at its timeout or when its producer restarts", id)
	}
	res, err := adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch, Topics: d.Topics})
	if err != nil {
		return fmt.Errorf("aborting transaction %s: %w", id, err)
	}
	var failed []string
	res.EachPartition(func(p kadm.TxnMarkersPartitionResponse) {
		if p.Err != nil {
			failed = append(failed, fmt.Sprintf("%s/%d: %v", p.Topic, p.Partition, p.Err))
		}
	})
	if len(failed) > 0 {
		sort.Strings(failed)
		return fmt.Errorf("aborting transaction %s: %s", id, strings.Join(failed, "; "))
	}
	fmt.Fprintf(out, "aborted transaction %s (producer id %d, epoch %d); its producer is fenced\n", id, d.ProducerID, d.ProducerEpoch)
	return nil
}
