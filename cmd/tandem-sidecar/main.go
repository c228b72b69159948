// Command tandem-sidecar runs the replication half of a Tandem node, next to
// its broker.
//
//	tandem-sidecar --node-id 1 --cluster-id demo --broker-socket /run/tandem/node-1/sidecar.sock \
//	    --listen 0.0.0.0:9192 --peers 1=node-1:9192,2=node-2:9192,3=node-3:9192 --leader 1
//
// It serves tandem.link.v1 to its broker on --broker-socket, and
// tandem.replication.v1 (peers), tandem.admin.v1 (tandemctl) and
// grpc.health.v1 on --listen. Health: the empty service name is liveness;
// "tandem.Readiness" is readiness (attached to a broker that can write its
// WAL; on a leader, the broker leads; on a follower, the sidecar streams
// from the leader within --replica-lag-time-max).
//
// With --metrics-listen HOST:PORT it serves Prometheus metrics at /metrics
// (docs/replication-observability.md lists them) and Go profiles under
// /debug/pprof/.
//
// It stops cleanly on SIGINT or SIGTERM and exits non-zero on a
// configuration or startup error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-io/tandem/internal/gctune"
	"github.com/tandem-io/tandem/internal/logging"
	"github.com/tandem-io/tandem/internal/timerslack"
	"github.com/tandem-io/tandem/sidecar"
)

func main() {
	gctune.Apply()
	cfg, logOpts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "tandem-sidecar:", err)
		os.Exit(2)
	}
	// Before anything else: it may start the program over (same pid).
	slackErr := timerslack.Apply(timerSlack)
	cfg.Logger = logging.New(logOpts)
	if slackErr != nil {
		cfg.Logger.Warn("timer slack not set; running with the kernel's", "error", slackErr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, metricsListen); err != nil {
		cfg.Logger.Error("tandem-sidecar failed", "error", err)
		fmt.Fprintln(os.Stderr, "tandem-sidecar:", err)
		os.Exit(1)
	}
}

// metricsListen is --metrics-listen: the address of the Prometheus
// /metrics endpoint (off when empty). It is not part of sidecar.Config
// because the library only provides the registry; serving it is main's job.
var metricsListen string

// timerSlack is --timer-slack (internal/timerslack): a setting of the
// process, not of the sidecar library.
var timerSlack time.Duration

// parseFlags turns the command line into a Config (and sets metricsListen).
func parseFlags(args []string) (sidecar.Config, logging.Options, error) {
	cfg := sidecar.DefaultConfig()
	fs := flag.NewFlagSet("tandem-sidecar", flag.ContinueOnError)
	var (
		nodeID   = fs.Int("node-id", 0, "this node's id (required; the same as its broker's)")
		peers    = fs.String("peers", "", "every node's sidecar address: 1=HOST:PORT,2=HOST:PORT,... (this node included)")
		leader   = fs.Int("leader", 0, "node id of the static leader (required with more than one peer and no etcd)")
		etcd     = fs.String("etcd-endpoints", "", "etcd URLs (comma-separated) for automatic leader election; --leader then only names the first leader of a new cluster")
		logLevel = fs.String("log-level", "info", "trace, debug, info, warn or error")
		logJSON  = fs.Bool("log-json", false, "log one JSON object per line")
	)
	fs.StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus /metrics (and Go profiles under /debug/pprof/) on this address, e.g. 0.0.0.0:9292 (off when empty)")
	fs.StringVar(&cfg.ClusterID, "cluster-id", "", "cluster id (required); peers with another id are refused")
	fs.StringVar(&cfg.BrokerSocket, "broker-socket", "", "Unix socket to serve the broker link on (required)")
	fs.StringVar(&cfg.Listen, "listen", "", "TCP address for peers, admin and health, e.g. 0.0.0.0:9192 (required)")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", cfg.HeartbeatInterval, "heartbeat period on replication streams")
	fs.DurationVar(&cfg.PeerTimeout, "peer-timeout", cfg.PeerTimeout, "declare a peer dead after this long without a message")
	fs.DurationVar(&cfg.ReplicaLagTimeMax, "replica-lag-time-max", cfg.ReplicaLagTimeMax,
		"a follower not caught up for this long leaves the ISR and is not ready (replica.lag.time.max.ms)")
	fs.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", cfg.MaxMessageBytes, "largest gRPC message sent or accepted")
	fs.IntVar(&cfg.WindowBytes, "window-bytes", cfg.WindowBytes, "unacknowledged bytes in flight per follower")
	fs.IntVar(&cfg.CacheBytes, "cache-bytes", cfg.CacheBytes, "newest entries the leader keeps in memory for followers")
	fs.IntVar(&cfg.BatchBytes, "batch-bytes", cfg.BatchBytes, "payload bytes per replication message")
	fs.Int64Var(&cfg.CatchupBytesPerSec, "catchup-bytes-per-sec", cfg.CatchupBytesPerSec,
		"leader: bytes per second sent, all together, to followers outside the ISR (catching up); 0 = no limit (Kafka's leader.replication.throttled.rate)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the sidecar's state file (last leader and epoch; default: the directory of --broker-socket)")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", cfg.LeaseTTL, "etcd lease TTL of the leader's election key; a leader that cannot renew it for half of it stops taking writes")
	fs.StringVar(&cfg.EtcdPrefix, "etcd-prefix", "", "etcd key prefix for the election and the ISR (default /tandem/<cluster-id>/)")
	fs.DurationVar(&cfg.EpochPollInterval, "epoch-poll-interval", cfg.EpochPollInterval, "how often to ask every peer for its epoch and leader (learning of promotions, fencing)")
	fs.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "PEM certificate for mutual TLS on --listen (with --tls-key and --tls-ca; see docs/security.md)")
	fs.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&cfg.TLS.CAFile, "tls-ca", "", "PEM CA certificate(s) that every peer's and client's certificate must chain to")
	fs.StringVar(&cfg.TLS.ServerName, "tls-server-name", "", "name expected in the leader's certificate (default: the host of its --peers address)")
	fs.StringVar(&cfg.HealthListen, "health-listen", "", "extra plaintext address serving grpc.health.v1 only, for probes that cannot do mutual TLS (off when empty)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "require this bearer token on admin calls other than Status (prefer --admin-token-file: flags show in ps)")
	fs.DurationVar(&timerSlack, "timer-slack", timerslack.Default, "Linux timer slack of every thread: fewer scheduler wake-ups under light load, timers up to this late (0: keep the kernel's; docs/operations.md)")
	tokenFile := fs.String("admin-token-file", "", "read the admin token from this file (surrounding whitespace is ignored)")
	if err := fs.Parse(args); err != nil {
		return cfg, logging.Options{}, err
	}
	if fs.NArg() > 0 {
		return cfg, logging.Options{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.NodeID = int32(*nodeID)
	cfg.LeaderID = int32(*leader)
	if *tokenFile != "" {
		if cfg.AdminToken != "" {
			return cfg, logging.Options{}, fmt.Errorf("--admin-token and --admin-token-file are mutually exclusive")
		}
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return cfg, logging.Options{}, fmt.Errorf("--admin-token-file: %w", err)
		}
		if cfg.AdminToken = strings.TrimSpace(string(b)); cfg.AdminToken == "" {
			return cfg, logging.Options{}, fmt.Errorf("--admin-token-file %s is empty", *tokenFile)
		}
	}
	p, err := sidecar.ParsePeers(*peers)
	if err != nil {
		return cfg, logging.Options{}, err
	}
	cfg.Peers = p
	if *etcd != "" {
		cfg.EtcdEndpoints = strings.Split(*etcd, ",")
	}
	lo := logging.Options{Name: "tandem-sidecar", Level: *logLevel, JSON: *logJSON}
	return cfg, lo, cfg.Validate()
}

// run serves until ctx is done.
func run(ctx context.Context, cfg sidecar.Config, metricsAddr string) error {
	s, err := sidecar.Open(cfg)
	if err != nil {
		return err
	}
	var srv *http.Server
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			s.Close()
			return fmt.Errorf("--metrics-listen %s: %w", metricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.Registry(), promhttp.HandlerOpts{}))
		// Go profiles for diagnosing a slow sidecar: go tool pprof http://ADDR/debug/pprof/profile
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		cfg.Logger.Info("serving Prometheus metrics", "address", ln.Addr().String(), "path", "/metrics")
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Error("metrics listener failed", "error", err)
			}
		}()
	}
	<-ctx.Done()
	cfg.Logger.Info("shutting down")
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	return s.Close()
}
