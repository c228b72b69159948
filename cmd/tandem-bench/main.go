// Command tandem-bench measures a Tandem broker (or cluster) and the disk
// under it, and turns the measurements into one table and PNG charts.
//
// Subcommands (each takes -h):
//
//	produce  drive produce load with franz-go: MB/s, records/s, p50/p99/p999 latency
//	consume  read a topic from its start: MB/s, records/s
//	txn      transactional producers: committed MB/s, records/s, transactions/s, commit latency
//	rebalance  a consumer group through a member joining and one leaving, per group protocol
//	disk     the disk's sequential write bandwidth (1 MiB writes + fsync) and small fsync latency
//	lag      follower apply lag: produce to the leader, read the same records from a follower
//	catchup  time a stopped follower takes to catch up with the leader
//	settle   wait until every follower has caught up (between measurements)
//	natsgo   publish to NATS JetStream with nats.go (async and sync), for comparison
//	jetstream  the same through a minimal built-in NATS client (cross-check)
//	natsgo-compare  table and chart of scripts/bench-compare.sh
//	rss      sample a process's VmRSS/VmHWM over time
//	report   one table from a directory of result files
//	chart    a PNG bar chart of one figure from results
//
// scripts/bench.sh runs them all in the right order; docs/benchmarks.md
// explains every number.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/tandem-io/tandem/internal/logging"
)

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("bench: usage")

const usage = `usage: tandem-bench [--log-level LEVEL] COMMAND [flags]

commands:
  produce   produce load: throughput and per-record latency
  consume   consume a topic from its start: throughput
  txn       transactional producers: committed throughput and latency per transaction
  rebalance a consumer group through a member joining and one leaving, per group protocol
  disk      disk sequential write bandwidth and fsync latency
  lag       follower apply lag under produce load
  catchup   follower catch-up rate after it was stopped
  settle    wait until every follower has caught up with the leader
  natsgo    publish to a NATS JetStream stream with nats.go (comparison)
  jetstream the same with a minimal built-in NATS client (cross-check)
  natsgo-compare  the Tandem vs JetStream table of scripts/bench-compare.sh
  rss       sample a process's resident memory over time
  report    print one table from result files
  chart     write a PNG bar chart from result files

Run 'tandem-bench COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "tandem-bench:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "tandem-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	top := flag.NewFlagSet("tandem-bench", flag.ContinueOnError)
	level := top.String("log-level", "warn", "log level of the bench tool and its Kafka client")
	cpuProfile := top.String("cpuprofile", "", "write the bench tool's own CPU profile to this file (is the load client the bottleneck?)")
	top.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	if err := top.Parse(args); err != nil {
		return err
	}
	if top.NArg() == 0 {
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	log := logging.New(logging.Options{Name: "tandem-bench", Level: *level})
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	cmd, rest := top.Arg(0), top.Args()[1:]
	switch cmd {
	case "produce":
		return runProduce(ctx, rest, log)
	case "consume":
		return runConsume(ctx, rest, log)
	case "txn":
		return runTxn(ctx, rest, log)
	case "rebalance":
		return runRebalance(ctx, rest, log)
	case "disk":
		return runDisk(ctx, rest)
	case "lag":
		return runLag(ctx, rest, log)
	case "catchup":
		return runCatchup(ctx, rest, log)
	case "jetstream":
		return runJetStream(ctx, rest, log)
	case "natsgo":
		return runNATSGo(ctx, rest, log)
	case "natsgo-compare":
		return runNATSCompare(ctx, rest)
	case "settle":
		return runSettle(ctx, rest)
	case "rss":
		return runRSS(ctx, rest)
	case "report":
		return runReport(ctx, rest)
	case "chart":
		return runChart(ctx, rest)
	case "help", "-h", "--help":
		fmt.Fprint(os.Stdout, usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}
