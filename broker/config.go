package broker

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tandem-io/tandem/broker/acl"
	"github.com/tandem-io/tandem/broker/group"
	"github.com/tandem-io/tandem/broker/wal"
)

// Config is everything a broker needs to start. Build it with DefaultConfig
// and change what you need; Validate reports what is wrong with it.
type Config struct {
	// NodeID identifies this node in the cluster and in Kafka Metadata. No default.
	NodeID int32
	// DataDir holds the WAL (DataDir/wal) and the state checkpoint. No default.
	DataDir string
	// Listen is the TCP address Kafka clients connect to. Default 127.0.0.1:9092.
	Listen string
	// Advertise is the host:port put in Metadata for clients. Default: Listen.
	Advertise string
	// SidecarSocket is the Unix socket of this node's sidecar. Empty means
	// standalone: no replication, the high watermark follows local durability.
	SidecarSocket string
	// Rack is this node's rack (Kafka broker.rack), used for follower reads.
	Rack string
	// TLSCertFile and TLSKeyFile, set together, make Listen a TLS listener
	// (Kafka's SSL listener) with this certificate and key, re-read when
	// the files change. Empty: plaintext. The broker also presents them
	// when it connects to the leader's Kafka listener (a follower asking
	// the leader to create a topic).
	TLSCertFile, TLSKeyFile string
	// TLSCAFile holds the CA certificates this broker trusts (Kafka's
	// ssl.truststore): to verify the leader's certificate when it connects
	// to it, and clients' certificates with TLSClientAuth. Empty: the
	// system's roots, and no client authentication.
	TLSCAFile string
	// TLSClientAuth requires every client to present a certificate signed
	// by a CA of TLSCAFile (Kafka's ssl.client.auth=required).
	TLSClientAuth bool
	// SASLUsersFile, when set, makes every client log in with SASL
	// (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) as a user of this file
	// (broker/sasl; tandemctl sasl-user writes it), before any request but
	// ApiVersions: Kafka's SASL_PLAINTEXT, or SASL_SSL with TLS.
	SASLUsersFile string
	// SASLBrokerUser and SASLBrokerPassword log this broker in when it
	// connects to the leader's Kafka listener (a follower asking it to
	// create a topic) and the leader requires SASL.
	SASLBrokerUser, SASLBrokerPassword string
	// ACLs makes the broker enforce Kafka ACLs (CreateAcls, DescribeAcls,
	// DeleteAcls; Kafka's authorizer.class.name): a request is refused
	// unless an ACL allows its principal the operation, its principal is a
	// super user, or no ACL names the resource and AllowEveryoneIfNoACL is
	// set. Without it every client may do everything, and the ACL APIs
	// answer SECURITY_DISABLED. The ACLs themselves are WAL entries, the
	// same on every node.
	ACLs bool
	// SuperUsers is Kafka's super.users: principals, separated by
	// semicolons, that may do everything ("User:admin;User:CN=ops,O=acme").
	// SASLBrokerUser is always one.
	SuperUsers string
	// AllowEveryoneIfNoACL is Kafka's allow.everyone.if.no.acl.found.
	// Default false.
	AllowEveryoneIfNoACL bool

	// NumPartitions is Kafka's num.partitions: partitions of an auto-created
	// topic, and of CreateTopics asking for -1. Default 1, as Kafka.
	NumPartitions int32
	// AutoCreateTopics is Kafka's auto.create.topics.enable. Default true.
	AutoCreateTopics bool
	// MinInsyncReplicas is the cluster default of min.insync.replicas (a
	// topic config overrides it). Default 1, as Kafka.
	MinInsyncReplicas int32

	// Fsync is the WAL durability policy. Default every batch (group commit):
	// a produce is acknowledged only after the fsync covering it.
	Fsync wal.SyncPolicy
	// FsyncInterval is the period of the interval policy. Default 1s.
	FsyncInterval time.Duration
	// PageCacheBytes is how much of the newest WAL the broker leaves in the
	// operating system's page cache; the pages of older, fsynced WAL data
	// are released (wal.Options.PageCacheBytes). Consumers and followers
	// near the tail read from memory, older reads go to the disk. Default
	// 256 MiB; 0 or negative leaves the page cache to the kernel, as Kafka
	// does.
	PageCacheBytes int64
	// SegmentBytes is the size at which the WAL rolls to a new segment file.
	// Retention deletes whole segments, so this is its granularity. Default 64 MiB.
	SegmentBytes int64
	// RetentionMs is Kafka's log.retention.ms, applied to the node-wide WAL:
	// a sealed segment whose last write is older is deleted. Default 7 days;
	// -1 keeps everything.
	RetentionMs int64
	// RetentionBytes is Kafka's log.retention.bytes, applied to the whole WAL:
	// the oldest sealed segments are deleted while the WAL is larger. Default -1 (no limit).
	RetentionBytes int64
	// ReplicaKeepBytes bounds how much WAL retention keeps, on a leader,
	// beyond what it would delete, because in-sync followers have not
	// flushed it yet (PostgreSQL's max_slot_wal_keep_size). Past the bound
	// such a follower is re-cloned. Default -1: no bound.
	ReplicaKeepBytes int64
	// RetentionCheckInterval is how often retention runs. Default 5 minutes
	// (Kafka's log.retention.check.interval.ms).
	RetentionCheckInterval time.Duration

	// InitialRebalanceDelay is Kafka's group.initial.rebalance.delay.ms: how
	// long a new, empty consumer group waits for more members before its
	// first rebalance. Default 3s, as Kafka; tests use 0.
	InitialRebalanceDelay time.Duration
	// OffsetsCommitTimeout is Kafka's offsets.commit.timeout.ms: how long
	// OffsetCommit, DeleteGroups and OffsetDelete wait for their WAL entry
	// to be committed (replicated to the in-sync replicas) before answering
	// COORDINATOR_NOT_AVAILABLE, which clients retry. Without a bound, a
	// commit point that stops moving (sidecar detached, ISR too small) would
	// hold these requests, and the heartbeats queued behind them on the
	// connection, forever. Default 5s, as Kafka.
	OffsetsCommitTimeout time.Duration
	// ConsumerSessionTimeout and ConsumerHeartbeatInterval are Kafka's
	// group.consumer.session.timeout.ms and
	// group.consumer.heartbeat.interval.ms: for groups of the consumer
	// protocol (KIP-848), how long a member may go without a heartbeat
	// before it is removed, and how often members are told to heartbeat.
	ConsumerSessionTimeout    time.Duration
	ConsumerHeartbeatInterval time.Duration
	// TransactionMaxTimeout is Kafka's transaction.max.timeout.ms: the
	// longest transaction timeout a producer may ask for
	// (INVALID_TRANSACTION_TIMEOUT above). Default 15 minutes.
	TransactionMaxTimeout time.Duration
	// TransactionCheckInterval is how often the leader looks for
	// transactions past their timeout, to abort them, and for ones a
	// former leader left half completed (Kafka's
	// transaction.abort.timed.out.transaction.cleanup.interval.ms).
	// Default 1 s.
	TransactionCheckInterval time.Duration
	// TransactionalIDExpiration is Kafka's transactional.id.expiration.ms:
	// a transactional id with no transaction open that has not been used
	// for this long is forgotten (its next producer gets a new producer
	// id). Default 7 days.
	TransactionalIDExpiration time.Duration
	// ProducerIDExpiration is Kafka's producer.id.expiration.ms: an
	// idempotent producer's state on a partition (the sequences of its
	// last batches, for spotting retries) is forgotten once it has written
	// nothing there for this long, and its producer id once no partition
	// holds state for it (producer_expiry.go). Default 1 day, as Kafka.
	ProducerIDExpiration time.Duration
	// ProducerIDExpirationCheckInterval is how often every node looks for
	// such state (Kafka's producer.id.expiration.check.interval.ms).
	// Default 10 minutes.
	ProducerIDExpirationCheckInterval time.Duration
	producerSweepBatch                int // tests: windows or ids per hold of the append lock (0: sweepBatch)
	// OffsetsRetention is Kafka's offsets.retention.minutes: committed
	// offsets of a consumer group expire once it has had no members for
	// this long, and offsets committed outside any group membership this
	// long after their last commit (broker/group/expire.go). Checked every
	// RetentionCheckInterval on the leader. Default 7 days, as Kafka; 0
	// keeps offsets forever.
	OffsetsRetention time.Duration

	// ConnectionsMaxIdle is Kafka's connections.max.idle.ms: a client
	// connection that sends nothing for this long is closed (clients
	// reconnect when they next need it). It also bounds how long one
	// request frame may take to arrive. Default 10 minutes, as Kafka; 0
	// never closes.
	ConnectionsMaxIdle time.Duration

	// MaxConnections is Kafka's max.connections: the client connections
	// this node holds at once; one more is reset as soon as it is
	// accepted (connlimit.go). 0, the default, is automatic: the
	// process's open-file limit less one descriptor per WAL segment and a
	// reserve, so that clients cannot take the descriptors the WAL needs.
	MaxConnections int
	// MaxConnectionsPerIP is Kafka's max.connections.per.ip: the client
	// connections from one address (0, the default: no limit).
	MaxConnectionsPerIP int
	// MaxConnectionsPerIPOverrides is Kafka's
	// max.connections.per.ip.overrides: the limit for given addresses, by
	// IP (ParseConnectionOverrides); 0 refuses every connection from it.
	MaxConnectionsPerIPOverrides map[string]int

	// MaxRequestBytes bounds one Kafka request frame (Kafka's
	// socket.request.max.bytes). Larger frames close the connection. Default 100 MiB.
	MaxRequestBytes int32
	// FetchMaxBytes is Kafka's fetch.max.bytes (KIP-541): the most record
	// bytes one Fetch answer carries, whatever the consumer asks for (the
	// first batch found is sent whole even when larger, so that consumers
	// make progress). Default 55 MiB, as Kafka.
	FetchMaxBytes int32
	// MaxMessageBytes bounds one record batch (Kafka's message.max.bytes).
	// Default 1 MiB + 12 bytes, as Kafka.
	MaxMessageBytes int32

	// Logger receives every log line. Default: hclog's default logger.
	Logger hclog.Logger
}

// DefaultConfig returns a Config with Kafka's defaults where Kafka has one.
func DefaultConfig() Config {
	return Config{
		Listen:                            "127.0.0.1:9092",
		NumPartitions:                     1,
		AutoCreateTopics:                  true,
		MinInsyncReplicas:                 1,
		Fsync:                             wal.SyncEveryBatch,
		FsyncInterval:                     time.Second,
		SegmentBytes:                      64 << 20,
		PageCacheBytes:                    wal.DefaultPageCacheBytes,
		RetentionMs:                       7 * 24 * 3600 * 1000,
		RetentionBytes:                    -1,
		ReplicaKeepBytes:                  -1,
		RetentionCheckInterval:            5 * time.Minute,
		InitialRebalanceDelay:             3 * time.Second,
		OffsetsCommitTimeout:              group.DefaultCommitTimeout,
		ConsumerSessionTimeout:            group.DefaultConsumerSessionTimeout,
		ConsumerHeartbeatInterval:         group.DefaultConsumerHeartbeatInterval,
		TransactionMaxTimeout:             15 * time.Minute,
		TransactionCheckInterval:          time.Second,
		TransactionalIDExpiration:         7 * 24 * time.Hour,
		ProducerIDExpiration:              24 * time.Hour,
		ProducerIDExpirationCheckInterval: 10 * time.Minute,
		OffsetsRetention:                  7 * 24 * time.Hour,
		MaxRequestBytes:                   100 << 20,
		ConnectionsMaxIdle:                10 * time.Minute,
		MaxMessageBytes:                   1<<20 + 12,
		FetchMaxBytes:                     55 << 20,
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID < 0 {
		errs = append(errs, fmt.Errorf("node id must be >= 0, got %d", c.NodeID))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.Listen, err))
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("advertise address %q: %w", c.Advertise, err))
		}
	}
	if c.NumPartitions < 1 {
		errs = append(errs, fmt.Errorf("num.partitions must be >= 1, got %d", c.NumPartitions))
	}
	if c.MinInsyncReplicas < 1 {
		errs = append(errs, fmt.Errorf("min.insync.replicas must be >= 1, got %d", c.MinInsyncReplicas))
	}
	if c.SegmentBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("segment bytes must be >= 1 MiB, got %d", c.SegmentBytes))
	}
	if c.FetchMaxBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("fetch max bytes must be >= 1 KiB, got %d", c.FetchMaxBytes))
	}
	if c.MaxRequestBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("max request bytes must be >= 1 KiB, got %d", c.MaxRequestBytes))
	}
	if c.ConnectionsMaxIdle < 0 {
		errs = append(errs, fmt.Errorf("connections.max.idle must be >= 0 (0: never), got %v", c.ConnectionsMaxIdle))
	}
	if c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0 {
		errs = append(errs, fmt.Errorf("max.connections and max.connections.per.ip must be >= 0 (0: automatic, no limit), got %d and %d", c.MaxConnections, c.MaxConnectionsPerIP))
	}
	for ip, n := range c.MaxConnectionsPerIPOverrides {
		if net.ParseIP(ip) == nil || n < 0 {
			errs = append(errs, fmt.Errorf("max.connections.per.ip.overrides: %q:%d: want an IP address and a count >= 0", ip, n))
		}
	}
	if c.OffsetsRetention < 0 {
		errs = append(errs, fmt.Errorf("offsets.retention must be >= 0 (0: never), got %v", c.OffsetsRetention))
	}
	if c.TransactionMaxTimeout <= 0 || c.TransactionCheckInterval <= 0 || c.TransactionalIDExpiration <= 0 {
		errs = append(errs, fmt.Errorf("transaction.max.timeout.ms, transactional.id.expiration.ms and the transaction check interval must be > 0, got %v, %v and %v",
			c.TransactionMaxTimeout, c.TransactionalIDExpiration, c.TransactionCheckInterval))
	}
	if c.ProducerIDExpiration <= 0 || c.ProducerIDExpirationCheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("producer.id.expiration.ms and its check interval must be > 0, got %v and %v",
			c.ProducerIDExpiration, c.ProducerIDExpirationCheckInterval))
	}
	if c.ConsumerHeartbeatInterval < 0 || c.ConsumerSessionTimeout < 0 ||
		(c.ConsumerSessionTimeout > 0 && c.ConsumerHeartbeatInterval >= c.ConsumerSessionTimeout) {
		errs = append(errs, fmt.Errorf("group.consumer.heartbeat.interval.ms (%v) must be below group.consumer.session.timeout.ms (%v)",
			c.ConsumerHeartbeatInterval, c.ConsumerSessionTimeout))
	}
	if c.OffsetsCommitTimeout <= 0 {
		errs = append(errs, fmt.Errorf("offsets.commit.timeout.ms must be > 0, got %v", c.OffsetsCommitTimeout))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("the TLS certificate and key go together (got certificate %q, key %q)", c.TLSCertFile, c.TLSKeyFile))
	}
	if (c.TLSCAFile != "" || c.TLSClientAuth) && c.TLSCertFile == "" {
		errs = append(errs, errors.New("a TLS CA or client authentication needs TLS: set the certificate and key too"))
	}
	if c.TLSClientAuth && c.TLSCAFile == "" {
		errs = append(errs, errors.New("client authentication needs the CA file that clients' certificates must chain to"))
	}
	if (c.SASLBrokerUser == "") != (c.SASLBrokerPassword == "") {
		errs = append(errs, errors.New("the broker's SASL user and password go together"))
	}
	if _, err := acl.ParseSuperUsers(c.SuperUsers); err != nil {
		errs = append(errs, err)
	}
	if (c.SuperUsers != "" || c.AllowEveryoneIfNoACL) && !c.ACLs {
		errs = append(errs, errors.New("super users and allow-everyone-if-no-acl need ACLs enforced (--acls)"))
	}
	if c.Fsync == wal.SyncInterval && c.FsyncInterval <= 0 {
		errs = append(errs, errors.New("fsync interval must be > 0 with the interval policy"))
	}
	return errors.Join(errs...)
}
