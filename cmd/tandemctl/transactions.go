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
// the ones holding read_committed consumers back. It connects as
// `tandemctl acls` does; with --acls the brokers show only the ids the
// principal may Describe.
func transactionsCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var (
		bootstrap string
		conn      kafkaConn
		states    stringsFlag
		olderThan time.Duration
	)
	fs := flag.NewFlagSet("transactions", flag.ContinueOnError)
	conn.flags(fs, "transactions", &bootstrap)
	fs.Var(&states, "state", "only transactions in these states, STATE[,STATE] (repeatable): Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, Empty")
	fs.DurationVar(&olderThan, "older-than", 0, "only transactions open for at least this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{"transactions: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("transactions takes no arguments (got %q)", fs.Args())}
	}
	if err := conn.check(bootstrap); err != nil {
		return err
	}
	var want []string
	for _, s := range states {
		want = append(want, splitList(s, ",")...)
	}
	cl, err := conn.client(bootstrap, stdin)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
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
