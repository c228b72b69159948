// Command tandem-broker runs the Kafka-compatible half of a Tandem node.
//
//	tandem-broker --node-id 1 --data-dir /var/lib/tandem --listen 0.0.0.0:9092 \
//	    --advertise broker-1:9092 [--sidecar /run/tandem/sidecar.sock]
//
// Without --sidecar the broker runs standalone. With it, the broker attaches
// to its sidecar over the Unix socket and replicates through it; when the
// sidecar is away it keeps serving and re-attaches when it returns.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-io/tandem/broker"
	"github.com/tandem-io/tandem/broker/wal"
	"github.com/tandem-io/tandem/internal/gctune"
	"github.com/tandem-io/tandem/internal/logging"
	"github.com/tandem-io/tandem/internal/timerslack"
)

func main() {
	gctune.Apply()
	cfg := broker.DefaultConfig()
	var (
		nodeID         = flag.Int("node-id", -1, "this node's id (required)")
		fsync          = flag.String("fsync", "every-batch", "WAL fsync policy: every-batch (group commit before acks), interval, none")
		retentionHours = flag.Int64("log-retention-hours", 168, "delete WAL segments older than this (log.retention.hours); -1 keeps them")
		metricsListen  = flag.String("metrics-listen", "", "serve Prometheus /metrics (and Go profiles under /debug/pprof/) on this address (off when empty)")
		logLevel       = flag.String("log-level", "info", "trace, debug, info, warn or error")
		logJSON        = flag.Bool("log-json", false, "log one JSON object per line")
		minISR         = flag.Int("min-insync-replicas", int(cfg.MinInsyncReplicas), "default min.insync.replicas of topics")
		numPartitions  = flag.Int("num-partitions", int(cfg.NumPartitions), "partitions of auto-created topics (num.partitions)")
		maxReq         = flag.Int("max-request-bytes", int(cfg.MaxRequestBytes), "largest Kafka request accepted (socket.request.max.bytes)")
		maxMsg         = flag.Int("max-message-bytes", int(cfg.MaxMessageBytes), "largest record batch accepted (message.max.bytes)")
		fetchMax       = flag.Int("fetch-max-bytes", int(cfg.FetchMaxBytes), "most record bytes in one Fetch answer, whatever the consumer asks (fetch.max.bytes)")
		timerSlack     = flag.Duration("timer-slack", timerslack.Default, "Linux timer slack of every thread: fewer scheduler wake-ups under light load, timers up to this late (0: keep the kernel's; docs/operations.md)")
	)
	flag.StringVar(&cfg.DataDir, "data-dir", "", "directory for the WAL and checkpoints (required)")
	flag.StringVar(&cfg.Listen, "listen", cfg.Listen, "Kafka listener host:port")
	flag.StringVar(&cfg.Advertise, "advertise", "", "host:port given to clients in Metadata (default: --listen)")
	flag.StringVar(&cfg.SidecarSocket, "sidecar", "", "Unix socket of this node's sidecar (standalone when empty)")
	flag.StringVar(&cfg.Rack, "rack", "", "this node's rack (broker.rack), for follower reads")
	flag.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate: the Kafka listener speaks TLS (with --tls-key; re-read when the file changes)")
	flag.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	flag.StringVar(&cfg.TLSCAFile, "tls-ca", "", "PEM CA certificates trusted for other brokers' and (with --tls-client-auth) clients' certificates (ssl.truststore; default: the system's roots)")
	flag.BoolVar(&cfg.TLSClientAuth, "tls-client-auth", false, "require a client certificate signed by --tls-ca (ssl.client.auth=required)")
	flag.StringVar(&cfg.SASLUsersFile, "sasl-users", "", "users file (tandemctl sasl-user): clients must log in with SASL PLAIN or SCRAM-SHA-256/512 (re-read when it changes)")
	flag.StringVar(&cfg.SASLBrokerUser, "sasl-broker-user", "", "user this broker logs in as on the leader's Kafka listener when that requires SASL (with --sasl-broker-password-file)")
	saslBrokerPasswordFile := flag.String("sasl-broker-password-file", "", "file whose first line is the password of --sasl-broker-user")
	flag.BoolVar(&cfg.ACLs, "acls", false, "enforce Kafka ACLs (CreateAcls, DescribeAcls, DeleteAcls; authorizer.class.name): refuse what no ACL allows")
	flag.StringVar(&cfg.SuperUsers, "super-users", "", "with --acls: principals that may do everything, separated by semicolons (super.users), e.g. \"User:admin;User:CN=ops,O=acme\"; --sasl-broker-user is always one")
	flag.BoolVar(&cfg.AllowEveryoneIfNoACL, "allow-everyone-if-no-acl", false, "with --acls: allow every principal on a resource that no ACL names (allow.everyone.if.no.acl.found)")
	flag.BoolVar(&cfg.AutoCreateTopics, "auto-create-topics", cfg.AutoCreateTopics, "create unknown topics on Metadata (auto.create.topics.enable)")
	flag.DurationVar(&cfg.FsyncInterval, "fsync-interval", cfg.FsyncInterval, "fsync period with --fsync interval")
	flag.Int64Var(&cfg.PageCacheBytes, "wal-page-cache-bytes", cfg.PageCacheBytes, "newest WAL bytes left in the OS page cache; older fsynced WAL pages are released (0: leave it to the kernel)")
	flag.Int64Var(&cfg.SegmentBytes, "segment-bytes", cfg.SegmentBytes, "WAL segment size (log.segment.bytes)")
	flag.Int64Var(&cfg.RetentionBytes, "log-retention-bytes", cfg.RetentionBytes, "delete the oldest WAL segments while the WAL is larger (log.retention.bytes); -1 no limit")
	flag.Int64Var(&cfg.ReplicaKeepBytes, "replica-keep-bytes", cfg.ReplicaKeepBytes, "on a leader, WAL retention keeps up to this many bytes that in-sync followers have not flushed yet (max_slot_wal_keep_size); -1 no bound")
	flag.DurationVar(&cfg.RetentionCheckInterval, "log-retention-check-interval", cfg.RetentionCheckInterval, "how often retention runs")
	flag.DurationVar(&cfg.InitialRebalanceDelay, "group-initial-rebalance-delay", cfg.InitialRebalanceDelay, "group.initial.rebalance.delay.ms")
	flag.DurationVar(&cfg.ConnectionsMaxIdle, "connections-max-idle", cfg.ConnectionsMaxIdle, "close a client connection that sends nothing for this long (connections.max.idle.ms); 0 never")
	flag.IntVar(&cfg.MaxConnections, "max-connections", cfg.MaxConnections, "most client connections this node holds; more are reset at once (max.connections); 0: the open-file limit less what the WAL needs")
	flag.IntVar(&cfg.MaxConnectionsPerIP, "max-connections-per-ip", cfg.MaxConnectionsPerIP, "most client connections from one address (max.connections.per.ip); 0 no limit")
	connOverrides := flag.String("max-connections-per-ip-overrides", "", "other limits for given addresses, e.g. \"10.0.0.7:500,::1:20\" (max.connections.per.ip.overrides)")
	flag.DurationVar(&cfg.OffsetsRetention, "offsets-retention", cfg.OffsetsRetention, "committed offsets of a group expire after it has had no members this long (offsets.retention.minutes); 0 keeps them forever")
	flag.DurationVar(&cfg.ProducerIDExpiration, "producer-id-expiration", cfg.ProducerIDExpiration, "forget an idempotent producer's sequence state on a partition after this long without a write there, and its producer id once no partition holds any (producer.id.expiration.ms)")
	flag.DurationVar(&cfg.ProducerIDExpirationCheckInterval, "producer-id-expiration-check-interval", cfg.ProducerIDExpirationCheckInterval, "how often to look for idle producer state (producer.id.expiration.check.interval.ms)")
	flag.DurationVar(&cfg.TransactionalIDExpiration, "transactional-id-expiration", cfg.TransactionalIDExpiration, "forget a transactional id with no transaction open after this long unused (transactional.id.expiration.ms)")
	flag.DurationVar(&cfg.TransactionMaxTimeout, "transaction-max-timeout", cfg.TransactionMaxTimeout, "the longest transaction timeout a producer may ask for (transaction.max.timeout.ms)")
	flag.DurationVar(&cfg.ConsumerSessionTimeout, "group-consumer-session-timeout", cfg.ConsumerSessionTimeout, "consumer-protocol (KIP-848) groups: a member that sends no heartbeat for this long is removed (group.consumer.session.timeout.ms)")
	flag.DurationVar(&cfg.ConsumerHeartbeatInterval, "group-consumer-heartbeat-interval", cfg.ConsumerHeartbeatInterval, "consumer-protocol (KIP-848) groups: how often members heartbeat (group.consumer.heartbeat.interval.ms)")
	flag.DurationVar(&cfg.OffsetsCommitTimeout, "offsets-commit-timeout", cfg.OffsetsCommitTimeout, "how long OffsetCommit waits for replication before answering COORDINATOR_NOT_AVAILABLE (offsets.commit.timeout.ms)")
	flag.Parse()
	// Before anything else: it may start the program over (same pid).
	slackErr := timerslack.Apply(*timerSlack)

	cfg.NodeID = int32(*nodeID)
	if *saslBrokerPasswordFile != "" {
		data, err := os.ReadFile(*saslBrokerPasswordFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tandem-broker: --sasl-broker-password-file:", err)
			os.Exit(2)
		}
		cfg.SASLBrokerPassword = strings.TrimRight(strings.SplitN(string(data), "\n", 2)[0], "\r")
	}
	cfg.MinInsyncReplicas = int32(*minISR)
	cfg.NumPartitions = int32(*numPartitions)
	cfg.MaxRequestBytes = int32(*maxReq)
	cfg.MaxMessageBytes = int32(*maxMsg)
	cfg.FetchMaxBytes = int32(min(*fetchMax, math.MaxInt32))
	cfg.RetentionMs = *retentionHours * 3600 * 1000
	if *retentionHours < 0 {
		cfg.RetentionMs = -1
	}
	log := logging.New(logging.Options{Name: "tandem-broker", Level: *logLevel, JSON: *logJSON})
	cfg.Logger = log
	if slackErr != nil {
		log.Warn("timer slack not set; running with the kernel's", "error", slackErr)
	}
	policy, err := wal.ParseSyncPolicy(*fsync)
	if err == nil && *connOverrides != "" {
		cfg.MaxConnectionsPerIPOverrides, err = broker.ParseConnectionOverrides(*connOverrides)
	}
	if err == nil {
		cfg.Fsync = policy
		err = cfg.Validate()
	}
	if err == nil && *nodeID < 0 {
		err = errors.New("--node-id is required")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-broker:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, *metricsListen); err != nil {
		log.Error("broker stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg broker.Config, metricsListen string) error {
	b, err := broker.Open(cfg)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- b.Serve() }()
	var srv *http.Server
	if metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(b.Registry(), promhttp.HandlerOpts{}))
		// Go profiles for diagnosing a slow broker: go tool pprof http://ADDR/debug/pprof/profile
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/heap", pprof.Index)
		srv = &http.Server{Addr: metricsListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Error("metrics listener failed", "error", err)
			}
		}()
	}
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
	case err = <-errc:
	}
	if srv != nil {
		srv.Close()
	}
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	return err
}
