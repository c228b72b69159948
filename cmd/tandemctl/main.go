// Command tandemctl is the operator's tool for a Tandem cluster. It talks to
// a sidecar's admin API (tandem.admin.v1) on the sidecar's --listen address.
//
//	tandemctl --sidecar HOST:PORT status [--json] [--watch] [--interval 1s]
//	tandemctl --sidecar HOST:PORT promote [--force]
//	tandemctl --sidecar HOST:PORT verify [--upto LSN] [--peers 1=H:P,...]
//	tandemctl --sidecar HOST:PORT wait-in-sync [--max-wait 10m] [--interval 1s]
//	tandemctl forget-isr --etcd-endpoints URL,... (--cluster-id ID | --etcd-prefix P)
//	tandemctl acls --bootstrap HOST:PORT,... (--list | --add | --remove) ...
//	tandemctl quotas --bootstrap HOST:PORT,... (--describe | --alter) ...
//	tandemctl transactions --bootstrap HOST:PORT,... [--state S] [--older-than D] [--abort ID]
//	tandemctl sasl-user --bootstrap HOST:PORT,... (--user NAME [--delete] | --list)
//
// status shows the node's role, epoch and WAL positions and, on the leader,
// one line per follower as PostgreSQL's pg_stat_replication does: sent,
// written, flushed and applied LSN, lag in entries, bytes and seconds, ISR
// membership and the last heartbeat.
//
// verify asks every node (the peers the sidecar lists, or --peers) for a
// rolling checksum of its WAL over the LSN range all of them hold (the
// highest first LSN to the lowest last LSN, or up to --upto), prints each
// node's checksum and exits 1 when they differ (2 on usage errors, 1 when a
// node cannot be asked).
//
// wait-in-sync waits until a node leads, ready, with every other node
// connected and in its ISR (asking the sidecar given, then the leader it
// names), printing what it still waits for; it exits 0 then, and 1 after
// --max-wait. Between two nodes of a rolling restart.
//
// forget-isr deletes the ISR the leader published in etcd (automatic
// failover), the way out when followers refuse to follow an elected leader
// that lacks entries they served as committed: it talks to etcd, refuses
// while the node that published the ISR still holds the election, and
// then every running node may be elected (docs/operations.md).
//
// acls is the operator's kafka-acls.sh for brokers started with --acls: it
// talks to a broker's Kafka listener (--bootstrap, default
// $TANDEM_BOOTSTRAP), logging in with --sasl-user (password from
// --sasl-password-file or the first line of standard input) and/or a TLS
// client certificate, as a super user or a principal with ALTER on the
// cluster. --list prints every binding, or those that apply to a resource
// (--topic T: T's literal ACLs, the literal "*" ones and the prefixes of
// T), optionally of one --principal; --add and --remove take
// --allow-principal/--deny-principal, --host (default *), --operation and
// a resource (--topic, --group, --cluster, --transactional-id; --prefixed
// for a name prefix) and print each binding added or removed. An error
// the broker answers (CLUSTER_AUTHORIZATION_FAILED, SECURITY_DISABLED on a
// broker without --acls, INVALID_REQUEST) exits 1 with its message.
//
// quotas is the operator's kafka-configs.sh for client quotas
// (producer_byte_rate, consumer_byte_rate), connecting as acls does.
// --describe prints every entity's quotas, or those of the entities with
// the parts given (--user NAME or --user-default, --client-id NAME or
// --client-id-default); --alter sets (--add-config
// producer_byte_rate=10M,...) and removes (--delete-config KEY) the quotas
// of one entity. Values are bytes per second, with K, M or G for powers of
// 1024. A broker's refusal (CLUSTER_AUTHORIZATION_FAILED without
// ALTER_CONFIGS on the cluster, INVALID_REQUEST for an unsupported key)
// exits 1 with its message.
//
// transactions is the operator's kafka-transactions.sh list and describe,
// connecting as acls does: every transactional id the leader coordinates,
// with its state, producer id and epoch, timeout, how long an open one has
// run, and its partitions; --state and --older-than filter (an old
// Ongoing transaction holds read_committed consumers back until its
// timeout aborts it); --abort ID aborts ID's open transaction at once.
//
// sasl-user --bootstrap manages SASL/SCRAM users cluster-wide through the
// Kafka API (AlterUserScramCredentials and DescribeUserScramCredentials,
// KIP-554), connecting as acls does (--sasl-user is the admin who logs
// in; --user is the user changed; with --acls the admin needs ALTER, to
// list DESCRIBE, on the cluster). --user NAME sets SCRAM-SHA-256 and
// SCRAM-SHA-512 credentials (--iterations, 4096 to 16384; the password,
// from --password-file or standard input, is salted by tandemctl and
// never sent), which every node applies and which come before any node's
// users file; --delete deletes the mechanisms set so; --list prints each
// user with its mechanisms and iterations, the users of the answering
// node's file included. When both the admin's and the user's password
// come from standard input, the first line is the admin's and the second
// the user's. $TANDEM_BOOTSTRAP stands for --bootstrap only without
// --file; --file with --bootstrap is a usage error.
//
// The sidecar address defaults to $TANDEM_SIDECAR, then 127.0.0.1:9192.
//
// Security (docs/security.md): --token (or $TANDEM_ADMIN_TOKEN) is sent as
// "authorization: Bearer <token>" on every call, as a sidecar started with
// --admin-token requires for promote and verify; --tls-ca, --tls-cert and
// --tls-key talk to a sidecar with mutual TLS. `tandemctl certs` writes a
// CA, node certificates and an admin client certificate into a directory;
// `tandemctl sasl-user --file` keeps the users file of brokers with SASL
// (tandem-broker --sasl-users).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tandem-io/tandem/sidecar"
)

// errDiffer is returned by verify when the checksums differ.
var errDiffer = errors.New("replicas differ")

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "tandemctl:", err)
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "tandemctl:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  tandemctl [--sidecar HOST:PORT] [--timeout 5s] status [--json] [--watch] [--interval 1s]
  tandemctl [--sidecar HOST:PORT] promote [--force]
  tandemctl [--sidecar HOST:PORT] verify [--upto LSN] [--peers 1=HOST:PORT,...]
  tandemctl [--sidecar HOST:PORT] wait-in-sync [--max-wait 10m] [--interval 1s]
    waits until every node is connected to the leader and in its ISR (between two nodes of a rolling restart)
  tandemctl [--timeout 5s] forget-isr --etcd-endpoints URL,... (--cluster-id ID | --etcd-prefix PREFIX)
  tandemctl certs --out DIR --nodes 1,2,3 [--hosts 127.0.0.1,localhost] [--node-hosts 1=node-1,...] [--valid-for 8760h]
  tandemctl sasl-user --file USERS.json (--user NAME [--password-file F | password on stdin] [--delete] | --list)
  tandemctl [--timeout 5s] sasl-user --bootstrap HOST:PORT,... ($TANDEM_BOOTSTRAP without --file) [connection flags]
      --user NAME [--password-file F | password on stdin] [--iterations 4096..16384]
      | --user NAME --delete | --list
    sets SCRAM-SHA-256 and SCRAM-SHA-512 on every node (before any users file), deletes those set so, lists users;
    --sasl-user is the admin who logs in, --user the user changed; with both passwords on stdin, the admin's is the
    first line and the user's the second
  tandemctl [--timeout 5s] acls --bootstrap HOST:PORT,... ($TANDEM_BOOTSTRAP) [connection flags]
      --list [RESOURCE] [--principal P]
      | (--add | --remove) (--allow-principal P | --deny-principal P)... [--host H] --operation OP[,OP...] RESOURCE [--prefixed]
    RESOURCE: --topic NAME | --group NAME | --cluster | --transactional-id NAME (--topic '*': every topic)
    OP: Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All
  tandemctl [--timeout 5s] quotas --bootstrap HOST:PORT,... ($TANDEM_BOOTSTRAP) [connection flags]
      --describe [ENTITY]
      | --alter ENTITY (--add-config KEY=VALUE[,KEY=VALUE...] | --delete-config KEY[,KEY...])...
    ENTITY: [--user NAME | --user-default] [--client-id NAME | --client-id-default] (--describe without one: every entity)
    KEY: producer_byte_rate, consumer_byte_rate; VALUE: bytes per second, e.g. 1048576, 512K, 10M, 1G
  tandemctl [--timeout 5s] transactions --bootstrap HOST:PORT,... ($TANDEM_BOOTSTRAP) [connection flags]
      [--state STATE[,STATE...]] [--older-than DURATION] | --abort ID
    lists the transactional ids the leader coordinates: state, producer id and epoch, timeout, how long the open
    ones have run, their partitions; STATE: Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, Empty;
    --abort aborts ID's open transaction now (its producer is fenced)
  tandemctl [--timeout 5s] groups --bootstrap HOST:PORT,... ($TANDEM_BOOTSTRAP) [connection flags]
      [--json] [GROUP...] | [--json] --members GROUP... |
      --reset-offsets TO (--topic TOPIC[:P,P...]... | --all-topics) [--execute] GROUP | --delete GROUP...
    lists the consumer groups (type, state, members, lag), or describes the named ones per partition (committed
    offset, end, lag, member) or per member (--members: client id, host, assigned partitions); TO: earliest,
    latest, OFFSET, +N or -N (records from the committed offset), an RFC 3339 time or a DURATION ago; without
    --execute the reset only prints the new offsets; reset and delete need a group without members
  tandemctl [--timeout 5s] topics --bootstrap HOST:PORT,... ($TANDEM_BOOTSTRAP) [connection flags]
      [--json] [--under-replicated-partitions | --at-min-isr-partitions | --under-min-isr-partitions |
      --unavailable-partitions] [TOPIC...] | --create TOPIC [--partitions N] [--config K=V]... | --alter TOPIC...
      [--partitions N] [--config K=V]... [--delete-config K]... | --delete TOPIC...
    lists the topics (partitions, replicas, min.insync.replicas, under-replicated partitions), or describes the named
    ones (configs set on them; leader, replicas and ISR per partition), or shows only the partitions a filter names;
    creates, alters and deletes topics
  tandemctl [--timeout 5s] offsets --bootstrap HOST:PORT,... ($TANDEM_BOOTSTRAP) [connection flags]
      [--json] [--at TIME] [TOPIC[:P,P...]...] | --delete-records-before OFFSET|latest [--execute] TOPIC[:P,P...]...
    each partition's earliest offset, last stable offset (read_committed) and latest offset (high watermark), of
    every topic or the partitions named; --at: also the first offset at or after TIME (RFC 3339, or a DURATION
    ago); --delete-records-before deletes the records below OFFSET (latest: every committed record) on every
    replica: without --execute it only prints the plan
  tandemctl [--timeout 5s] log-dirs --bootstrap HOST:PORT,... ($TANDEM_BOOTSTRAP) [connection flags] [--json] [TOPIC...]
    each node's WAL directory, the bytes of its partitions and its file system's size and free space, and per
    partition the bytes each node holds and how far each replica trails
  tandemctl wal --data-dir DIR [--from LSN] [--to LSN] [--type TYPE[,TYPE...]] [--summary] [--full]
    prints a broker's WAL (stopped or running; nothing is changed): each entry's LSN, epoch, type, size, offset in
    its segment file and what it holds, then a summary; damage is printed where it is, and fails the command
    when a broker would refuse to start on it
    connection flags (acls, quotas, transactions, groups, topics, offsets, log-dirs, sasl-user --bootstrap): --sasl-user U [--sasl-password-file F | password on stdin] [--sasl-mechanism PLAIN|SCRAM-SHA-256|SCRAM-SHA-512]
      --tls-ca F [--tls-cert F --tls-key F] [--tls-server-name NAME]
global flags: --token TOKEN ($TANDEM_ADMIN_TOKEN) for promote and verify when the sidecar has --admin-token;
  --tls-ca, --tls-cert, --tls-key, --tls-server-name ($TANDEM_TLS_*) for a sidecar with mutual TLS.`

// run parses args and runs one command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := os.Getenv("TANDEM_SIDECAR")
	if def == "" {
		def = "127.0.0.1:9192"
	}
	g := flag.NewFlagSet("tandemctl", flag.ContinueOnError)
	g.SetOutput(stderr)
	g.Usage = func() { fmt.Fprintln(stderr, usage); g.PrintDefaults() }
	addr := g.String("sidecar", def, "sidecar admin address host:port ($TANDEM_SIDECAR when set)")
	timeout := g.Duration("timeout", defaultTimeout, "timeout of each call")
	token := g.String("token", os.Getenv("TANDEM_ADMIN_TOKEN"), "admin token for promote and verify (default $TANDEM_ADMIN_TOKEN)")
	var tlsFiles sidecar.TLSFiles
	g.StringVar(&tlsFiles.CAFile, "tls-ca", os.Getenv("TANDEM_TLS_CA"), "CA certificate to verify a TLS sidecar (default $TANDEM_TLS_CA; empty: plaintext)")
	g.StringVar(&tlsFiles.CertFile, "tls-cert", os.Getenv("TANDEM_TLS_CERT"), "client certificate for a mutual-TLS sidecar (default $TANDEM_TLS_CERT)")
	g.StringVar(&tlsFiles.KeyFile, "tls-key", os.Getenv("TANDEM_TLS_KEY"), "key of --tls-cert (default $TANDEM_TLS_KEY)")
	g.StringVar(&tlsFiles.ServerName, "tls-server-name", os.Getenv("TANDEM_TLS_SERVER_NAME"), "name expected in the sidecar's certificate (default: the host dialed)")
	if err := g.Parse(args); err != nil {
		return err
	}
	if g.NArg() == 0 {
		return usageError{"no command given"}
	}
	cmd, rest := g.Arg(0), g.Args()[1:]
	switch cmd {
	case "certs":
		return certsCmd(rest, stdout)
	case "sasl-user":
		return saslUserCmd(ctx, rest, os.Stdin, stdout, *timeout)
	case "forget-isr":
		return forgetISRCmd(ctx, rest, stdout, *timeout)
	case "acls":
		return aclsCmd(ctx, rest, os.Stdin, stdout, *timeout)
	case "quotas":
		return quotasCmd(ctx, rest, os.Stdin, stdout, *timeout)
	case "transactions":
		return transactionsCmd(ctx, rest, os.Stdin, stdout, *timeout)
	case "groups":
		return groupsCmd(ctx, rest, os.Stdin, stdout, *timeout)
	case "topics":
		return topicsCmd(ctx, rest, os.Stdin, stdout, *timeout)
	case "offsets":
		return offsetsCmd(ctx, rest, os.Stdin, stdout, *timeout)
	case "wal":
		return walCmd(rest, stdout)
	case "log-dirs":
		return logDirsCmd(ctx, rest, os.Stdin, stdout, *timeout)
	}
	cl := &client{addr: *addr, timeout: *timeout, out: stdout, token: *token}
	if tlsFiles.Enabled() {
		creds, err := sidecar.ClientCredentials(tlsFiles, nil)
		if err != nil {
			return usageError{err.Error()}
		}
		cl.creds = creds
	}
	defer cl.close()
	switch cmd {
	case "status":
		return cl.status(ctx, rest)
	case "promote":
		return cl.promote(ctx, rest)
	case "verify":
		return cl.verify(ctx, rest)
	case "wait-in-sync":
		return cl.waitInSync(ctx, rest)
	case "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}
