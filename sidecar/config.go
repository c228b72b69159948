package sidecar

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config is everything a sidecar needs. Build it with DefaultConfig, set
// the required fields, then call Validate (New does).
type Config struct {
	// NodeID is this node's id (required, > 0). The broker attached on the
	// socket must report the same id.
	NodeID int32
	// ClusterID names the cluster (required). Peers with another cluster id
	// are refused, so two clusters on one network never mix their logs.
	ClusterID string
	// BrokerSocket is the Unix socket path where the sidecar serves
	// tandem.link.v1 to its broker (required). The socket file is created
	// with mode 0600 and its directory with 0700; a stale socket file from a
	// previous run is removed at start.
	BrokerSocket string
	// Listen is the TCP address for peers, the admin API and health
	// (required), e.g. 127.0.0.1:9192. Port 0 picks a free port (tests).
	Listen string
	// TLS enables mutual TLS on Listen (--tls-cert, --tls-key, --tls-ca,
	// --tls-server-name): every connection must present a certificate
	// signed by the CA, and followers verify the leader's certificate.
	// Default: none (plaintext). See tls.go and docs/security.md.
	TLS TLSFiles
	// HealthListen is an optional extra TCP address serving grpc.health.v1
	// only, always in plaintext, for probes that cannot do mutual TLS
	// (Kubernetes gRPC probes). Default: none.
	HealthListen string
	// AdminToken, when set, is required as "authorization: Bearer <token>"
	// on the admin calls that change or scan state (Promote, Checksum);
	// Status and health stay open. Default: none (no token checked).
	AdminToken string
	// Peers maps every node id of the cluster (this one included) to its
	// sidecar's Listen address. A single entry (or none) means standalone.
	Peers map[int32]string
	// LeaderID is the statically configured leader (--leader). 0 means
	// unset; it is required when there is more than one peer and no etcd.
	LeaderID int32
	// EtcdEndpoints enables automatic leader election through etcd
	// (election.go). --leader is then optional: the election decides, and
	// the --leader node only gets a head start in a brand-new cluster.
	EtcdEndpoints []string
	// EtcdPrefix is the key prefix of this cluster's election and ISR keys.
	// Default "/tandem/<cluster-id>/".
	EtcdPrefix string
	// LeaseTTL is the etcd lease TTL of the leader's election key. A leader
	// that could not renew it for LeaseTTL/2 stops taking writes; a dead
	// leader's key expires after LeaseTTL and an in-sync follower takes
	// over. Default 6s (etcd's minimum granularity is one second).
	LeaseTTL time.Duration
	// DataDir holds the sidecar's state file (the last leader and epoch
	// this node knew, so that a restart after a promotion does not go back
	// to --leader). Default: the directory of BrokerSocket, which the
	// sidecar already owns (mode 0700).
	DataDir string
	// EpochPollInterval: how often the sidecar asks every peer for its
	// epoch and leader, to learn about a promotion elsewhere and to fence
	// itself when it led an older epoch. Default 1s.
	EpochPollInterval time.Duration

	// HeartbeatInterval: how often each side of a replication stream sends
	// a heartbeat. Default 10s.
	HeartbeatInterval time.Duration
	// PeerTimeout: a peer that sent nothing for this long is declared dead
	// and its stream is closed (the follower reconnects). Default 30s.
	PeerTimeout time.Duration
	// ReplicaLagTimeMax: a follower stays in the ISR while it was caught up
	// to the leader's end within this time (Kafka replica.lag.time.max.ms).
	// It also bounds a follower's readiness. Default 10s.
	ReplicaLagTimeMax time.Duration
	// MaxMessageBytes bounds every gRPC message the sidecar sends or
	// receives on TCP and on the socket. Default 68 MiB: the largest WAL
	// entry (64 MiB) plus framing. Larger messages are refused with
	// RESOURCE_EXHAUSTED.
	MaxMessageBytes int
	// BatchBytes: entries are shipped to followers in messages of about
	// this many payload bytes (always at least one entry). Default 1 MiB.
	BatchBytes int
	// WindowBytes: at most this many payload bytes sent to one follower and
	// not yet acknowledged; a slow follower waits, nobody else does.
	// Default 16 MiB.
	WindowBytes int
	// CacheBytes: the leader keeps this many bytes of the newest entries in
	// memory so that followers that keep up never touch the broker's disk;
	// older entries are replayed from the broker's WAL. Default 32 MiB:
	// about 0.1 s of full-speed produce on a small machine, and replay from
	// the WAL runs at hundreds of MB/s anyway.
	CacheBytes int
	// CatchupBytesPerSec bounds the payload bytes per second the leader
	// sends, all together, to followers outside the ISR (catching up after
	// being away, or new), so that reading their backlog from the WAL does
	// not take the CPU and disk that producers and in-sync followers need
	// (Kafka's leader.replication.throttled.rate). In-sync followers are
	// never held back. A follower only catches up while its share of the
	// limit is above the produce rate. 0 (the default): no limit.
	CatchupBytesPerSec int64

	// Logger receives every log line (hclog.NewNullLogger when nil).
	Logger hclog.Logger
}

// DefaultConfig returns a Config with every optional field at its default.
func DefaultConfig() Config {
	return Config{
		HeartbeatInterval: 10 * time.Second,
		PeerTimeout:       30 * time.Second,
		ReplicaLagTimeMax: 10 * time.Second,
		MaxMessageBytes:   68 << 20,
		BatchBytes:        1 << 20,
		WindowBytes:       16 << 20,
		CacheBytes:        32 << 20,
		LeaseTTL:          6 * time.Second,
		EpochPollInterval: time.Second,
	}
}

// Configuration errors.
var (
	ErrConfig         = errors.New("sidecar: invalid configuration")
	ErrNotImplemented = errors.New("sidecar: not implemented yet")
)

// Validate checks the configuration and fills in what can be derived.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.NodeID <= 0:
		return bad("--node-id must be a positive integer")
	case c.ClusterID == "":
		return bad("--cluster-id is required")
	case c.BrokerSocket == "":
		return bad("--broker-socket is required")
	case c.Listen == "":
		return bad("--listen is required")
	}
	if c.DataDir == "" {
		c.DataDir = filepath.Dir(c.BrokerSocket)
	}
	if c.EtcdPrefix == "" {
		c.EtcdPrefix = DefaultEtcdPrefix(c.ClusterID)
	}
	if len(c.EtcdEndpoints) > 0 && c.LeaseTTL < 2*time.Second {
		return bad("--lease-ttl must be at least 2s")
	}
	if c.EpochPollInterval <= 0 {
		return bad("--epoch-poll-interval must be positive")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("--listen %q: %v", c.Listen, err)
	}
	if c.TLS.Enabled() {
		if err := c.TLS.validate(); err != nil {
			return err
		}
	}
	if c.HealthListen != "" {
		if _, _, err := net.SplitHostPort(c.HealthListen); err != nil {
			return bad("--health-listen %q: %v", c.HealthListen, err)
		}
	}
	if c.Peers == nil {
		c.Peers = map[int32]string{}
	}
	if _, ok := c.Peers[c.NodeID]; !ok && len(c.Peers) > 0 {
		return bad("--peers does not list this node (%d)", c.NodeID)
	}
	if len(c.Peers) > 1 && len(c.EtcdEndpoints) > 0 {
		// With etcd, --leader is only the preferred first leader of a new
		// cluster (election.go).
		if _, ok := c.Peers[c.LeaderID]; c.LeaderID != 0 && !ok {
			return bad("--leader %d is not in --peers", c.LeaderID)
		}
	} else if len(c.Peers) > 1 {
		if c.LeaderID == 0 {
			return bad("--leader is required when --peers lists more than one node")
		}
		if _, ok := c.Peers[c.LeaderID]; !ok {
			return bad("--leader %d is not in --peers", c.LeaderID)
		}
	} else if c.LeaderID != 0 && c.LeaderID != c.NodeID {
		return bad("--leader %d is not in --peers", c.LeaderID)
	}
	switch {
	case c.HeartbeatInterval <= 0:
		return bad("--heartbeat-interval must be positive")
	case c.PeerTimeout <= c.HeartbeatInterval:
		return bad("--peer-timeout (%s) must be longer than --heartbeat-interval (%s)", c.PeerTimeout, c.HeartbeatInterval)
	case c.ReplicaLagTimeMax <= 0:
		return bad("--replica-lag-time-max must be positive")
	case c.MaxMessageBytes < 1<<20:
		return bad("--max-message-bytes must be at least 1 MiB")
	case c.BatchBytes <= 0 || c.BatchBytes > c.MaxMessageBytes/2:
		return bad("batch bytes must be positive and at most half of --max-message-bytes")
	case c.WindowBytes < c.BatchBytes:
		return bad("--window-bytes must be at least the batch size (%d)", c.BatchBytes)
	case c.CacheBytes < 0:
		return bad("--cache-bytes must not be negative")
	case c.CatchupBytesPerSec < 0:
		return bad("--catchup-bytes-per-sec must not be negative (0: no limit)")
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return nil
}

// Standalone reports whether the configuration has no other node.
func (c *Config) Standalone() bool { return len(c.Peers) <= 1 }

// ParsePeers parses "1=host:port,2=host:port" (the --peers flag).
func ParsePeers(s string) (map[int32]string, error) {
	peers := map[int32]string{}
	if strings.TrimSpace(s) == "" {
		return peers, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		id, addr, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%w: --peers entry %q is not ID=HOST:PORT", ErrConfig, part)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(id), 10, 32)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%w: --peers entry %q: node id must be a positive integer", ErrConfig, part)
		}
		addr = strings.TrimSpace(addr)
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: --peers entry %q: %v", ErrConfig, part, err)
		}
		if _, dup := peers[int32(n)]; dup {
			return nil, fmt.Errorf("%w: --peers lists node %d twice", ErrConfig, n)
		}
		peers[int32(n)] = addr
	}
	return peers, nil
}

// FormatPeers is the inverse of ParsePeers (sorted by node id).
func FormatPeers(peers map[int32]string) string {
	ids := make([]int32, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d=%s", id, peers[id])
	}
	return strings.Join(parts, ",")
}
