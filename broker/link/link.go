package link

import (
	"errors"
	"time"

	"github.com/tandem-io/tandem/broker/wal"
)

// Role says what a broker must do.
type Role int

const (
	// RoleStandalone: no replication; the broker accepts writes and its
	// commit point follows its own durable LSN.
	RoleStandalone Role = iota
	// RoleLeader: the broker accepts writes; its sidecar ships the WAL.
	RoleLeader
	// RoleFollower: the broker rejects Produce and appends only entries its
	// sidecar hands it.
	RoleFollower
)

// String returns "standalone", "leader" or "follower".
func (r Role) String() string {
	switch r {
	case RoleStandalone:
		return "standalone"
	case RoleLeader:
		return "leader"
	case RoleFollower:
		return "follower"
	}
	return "unknown"
}

// BrokerInfo is where Kafka clients reach one node's broker.
type BrokerInfo struct {
	NodeID int32
	Host   string
	Port   int32
	Rack   string
}

// ClusterView is the broker's role and what it tells Kafka clients.
type ClusterView struct {
	Role     Role
	LeaderID int32
	Epoch    uint32
	Brokers  []BrokerInfo // every node's Kafka address
	ISR      []int32      // node ids currently in sync (leader's view)
	// HandingOver: the leader's sidecar stops and hands the leadership
	// over; the broker appends nothing of its own meanwhile, but otherwise
	// still leads (tandem.link.v1 ClusterView.handing_over).
	HandingOver bool
	// FenceAfter: while leading, stop taking writes once the link has
	// been down this long (0: never; ClusterView.fence_after_ms).
	FenceAfter time.Duration
	// HeartbeatEvery: while leading, the sidecar sends a heartbeat this
	// often, so that FenceAfter of silence on an open stream fences the
	// broker too (0: none; ClusterView.heartbeat_interval_ms).
	HeartbeatEvery time.Duration
}

// Broker is what the link client needs from the broker; package broker
// implements it.
type Broker interface {
	NodeID() int32
	Advertised() (host string, port int32)
	WAL() *wal.Log                       // read entries (NewReader), positions, epoch history
	ApplyEntries(ents []wal.Entry) error // follower: append unchanged, index, make durable; returns when durable
	TruncateAfter(lsn uint64) error      // drop entries > lsn and rebuild broker state from the WAL
	ResetTo(next uint64) error           // wipe the WAL and state; next entry expected is `next`
	SetClusterView(v ClusterView)        // role/leader/epoch changes; a follower rejects Produce
	SetCommitLSN(lsn uint64)             // replication commit point; high watermarks follow it
}

// Appender is optionally implemented by a Broker that can append a
// follower's entries without waiting for them to be durable (otherwise
// like ApplyEntries). The link then waits for the WAL's group commit
// itself before it reports them applied, and meanwhile appends the next
// entries: the fsync of one batch overlaps the writing of the next.
type Appender interface {
	AppendEntries(ents []wal.Entry) error
}

// Committer is optionally implemented by a Broker that remembers the
// replication commit point it last served (package broker does, across a
// restart through its checkpoint file). The hello carries it, so that a
// follower's sidecar knows which of its entries were acknowledged even
// when the sidecar itself restarted.
type Committer interface {
	CommitLSN() uint64
}

// Stopper is optionally implemented by a Broker that stops on purpose
// (package broker does, in Close): Kafka's controlled shutdown. Once the
// channel of Stopping is closed, the broker takes no more writes. The link
// then tells a sidecar that reads it (ClusterView.reads_broker_stopping),
// while the broker leads, that it stops and where its WAL ends, and keeps
// the stream open until the sidecar ends it: a leading sidecar under etcd
// failover first waits for its in-sync followers to hold that end and
// resigns, so that one of them leads without waiting out a lease. Run then
// returns instead of reattaching. Otherwise (a follower, an older sidecar,
// no sidecar attached) Run returns at once.
type Stopper interface {
	Stopping() <-chan struct{}
}

// WritesBounder is optionally implemented by a Broker that can stop taking
// writes of its own at a given moment by itself (package broker checks it
// at every append). Whenever the link sets the fence of a leading broker
// (viewGate), it tells the broker when that fence is due; the zero time
// lifts the bound. The fence's timer makes the broker a follower at that
// moment, but a broker resumed after a freeze of the whole pair (SIGSTOP,
// a paused VM or container) first runs the requests that waited in its
// sockets, and the overdue timer gets to run tens of milliseconds later:
// writes taken while another node leads, lost when this one follows. With
// the bound, the first of them is refused.
type WritesBounder interface {
	SetWritesUntil(t time.Time)
}

// ClusterKeeper is optionally implemented by a Broker that keeps the id of
// the cluster its data belongs to (package broker does, in its data
// directory, as a Kafka broker keeps cluster.id in meta.properties). The
// hello carries KeptClusterID (empty: none yet). The first cluster view
// that names a cluster is kept with KeepClusterID before the broker applies
// it; a view that names another cluster than the kept one ends the stream
// with ErrOtherCluster and is not applied, so that nothing from a sidecar
// of another cluster (truncations, entries) reaches the WAL.
type ClusterKeeper interface {
	KeptClusterID() string
	KeepClusterID(id string) error
}

// ErrOtherCluster ends a stream whose sidecar serves another cluster than
// the one the broker's data belongs to (ClusterKeeper).
var ErrOtherCluster = errors.New("link: the sidecar serves another cluster than this broker's data belongs to")

// Racker is optionally implemented by a Broker that has a rack configured;
// the rack is sent in the hello so that the cluster view carries it.
type Racker interface {
	Rack() string
}

// Limits of the link.
const (
	// MaxMessageBytes bounds one gRPC message on the link in both
	// directions: the largest WAL entry (64 MiB) plus framing.
	MaxMessageBytes = 68 << 20
	// ChunkBytes is the payload size at which the broker cuts a batch of
	// pushed or replayed entries into a new message.
	ChunkBytes = 1 << 20
	// DefaultReplayBytes is the budget of a ReplayRequest with max_bytes 0.
	DefaultReplayBytes = 1 << 20
)

// Errors returned by the link.
var (
	// ErrBadMessage: the sidecar sent something that breaks the protocol.
	ErrBadMessage = errors.New("link: bad message from sidecar")
	// ErrNodeMismatch: the sidecar serves another node id.
	ErrNodeMismatch = errors.New("link: sidecar serves another node")
	// ErrDiverged: the sidecar sent an entry this WAL already holds with
	// another epoch; the logs diverged after the position the sidecar
	// knew, and the batch is refused (a reconnect repairs it).
	ErrDiverged = errors.New("link: WAL diverged from the leader's")
)
