package group

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Versions lists, per Kafka API key, the request versions (min, max) this
// package implements and tests. The broker's ApiVersions handler derives its
// answer for these keys from this map.
//
// Caps and why:
//   - OffsetCommit (8) and OffsetFetch (9) stop at v9 (the member epochs of
//     the KIP-848 consumer protocol): v10 addresses topics by ID.
//   - JoinGroup v9 is served with SkipAssignment always false.
//   - DescribeGroups v6 answers GROUP_ID_NOT_FOUND for unknown groups (KIP-1043).
//   - ListGroups v5 reports each group's type, "classic" or "consumer".
//   - ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69): v0-v1,
//     the consumer group protocol of KIP-848 (consumer_group.go).
//   - DeleteGroups stops at v2 (v3 only adds error messages).
var Versions = map[int16][2]int16{
	8:  {0, 9}, // OffsetCommit
	9:  {0, 9}, // OffsetFetch
	11: {0, 9}, // JoinGroup
	12: {0, 4}, // Heartbeat
	13: {0, 5}, // LeaveGroup
	14: {0, 5}, // SyncGroup
	15: {0, 6}, // DescribeGroups
	16: {0, 5}, // ListGroups
	42: {0, 2}, // DeleteGroups
	47: {0, 0}, // OffsetDelete
	68: {0, 1}, // ConsumerGroupHeartbeat
	69: {0, 1}, // ConsumerGroupDescribe
}

// Kafka defaults, used by DefaultConfig; New also uses them for zero
// session timeouts, metadata size and commit timeout (a zero
// InitialRebalanceDelay stays 0).
const (
	DefaultMinSessionTimeout     = 6 * time.Second  // group.min.session.timeout.ms
	DefaultMaxSessionTimeout     = 30 * time.Minute // group.max.session.timeout.ms
	DefaultInitialRebalanceDelay = 3 * time.Second  // group.initial.rebalance.delay.ms
	DefaultMaxMetadataBytes      = 4096             // offset.metadata.max.bytes
	DefaultCommitTimeout         = 5 * time.Second  // offsets.commit.timeout.ms
)

// ErrClosed is returned by operations on a closed coordinator.
var ErrClosed = errors.New("group: coordinator closed")

// Persister makes committed offsets durable.
type Persister interface {
	// CommitOffsets makes committed offsets durable (the broker writes a WAL
	// entry and waits for it to be durable, and for replication commit when
	// replicated). Called without coordinator locks held. Commits of one group
	// are never issued concurrently, so the WAL order of one group's commits is
	// the order in which the coordinator applies them.
	//
	// An Offset of -1 is a tombstone (DeleteGroups, OffsetDelete, or a
	// client committing -1): it removes the partition's committed offset;
	// store it like any other and hand it back through Restore.
	//
	// A returned error that wraps a *kerr.Error is mapped the way Kafka maps
	// offset-log append errors (NOT_LEADER_OR_FOLLOWER -> NOT_COORDINATOR,
	// NOT_ENOUGH_REPLICAS -> COORDINATOR_NOT_AVAILABLE, MESSAGE_TOO_LARGE ->
	// INVALID_COMMIT_OFFSET_SIZE ...); any other error becomes
	// COORDINATOR_NOT_AVAILABLE, which clients retry.
	CommitOffsets(ctx context.Context, group string, offsets []Offset) error
}

// Offset is one committed offset of a group for one topic partition.
type Offset struct {
	Topic        string
	Partition    int32
	Offset       int64
	LeaderEpoch  int32 // -1 when the client did not send one (OffsetCommit < v6)
	Metadata     string
	CommitTimeMs int64 // wall-clock time of the commit, Unix milliseconds
}

// Config configures a Coordinator. Use DefaultConfig for Kafka's defaults.
type Config struct {
	// Logger receives the coordinator's log lines as given (name it, e.g.
	// Named("group")). Default: no logging.
	Logger hclog.Logger

	// Persister makes committed offsets durable before OffsetCommit answers.
	// Nil keeps offsets in memory only (tests, throwaway brokers).
	Persister Persister

	// MinSessionTimeout and MaxSessionTimeout bound the session timeout a
	// member may ask for; outside them JoinGroup fails with
	// INVALID_SESSION_TIMEOUT. Zero means Kafka's defaults, 6s and 30m.
	MinSessionTimeout, MaxSessionTimeout time.Duration

	// InitialRebalanceDelay is how long the first rebalance of an empty group
	// waits for more members before completing, extended by the same amount
	// (up to the rebalance timeout) while new members keep arriving. Kafka's
	// default is 3s (DefaultConfig); zero completes the first rebalance at
	// once, which tests want.
	InitialRebalanceDelay time.Duration

	// MaxMetadataBytes caps the metadata string of a committed offset; larger
	// commits fail with OFFSET_METADATA_TOO_LARGE. Zero means 4096, Kafka's
	// offset.metadata.max.bytes.
	MaxMetadataBytes int

	// CommitTimeout is Kafka's offsets.commit.timeout.ms: how long
	// OffsetCommit, DeleteGroups and OffsetDelete wait for the group's
	// earlier commits and for the Persister (for the broker: for the WAL
	// entry to be replicated) before they give up and answer
	// COORDINATOR_NOT_AVAILABLE, which clients retry. Without it a commit
	// point that stops moving (a detached sidecar, an ISR too small) would
	// hold the request, and every request queued behind it on the
	// connection, forever. Zero means Kafka's default, 5s. The offsets may
	// still become durable later, as with a timed-out Kafka commit.
	CommitTimeout time.Duration

	// PartitionExists, when set, is asked whether a committed partition
	// exists; commits to unknown partitions fail with
	// UNKNOWN_TOPIC_OR_PARTITION as in Kafka. Nil accepts every partition.
	// Called without coordinator locks held.
	PartitionExists func(topic string, partition int32) bool

	// Topics lists every topic with its id and partition count, for the
	// consumer group protocol's server-side assignment. Called without
	// coordinator locks held. Nil: consumer groups see no topics.
	Topics func() []TopicInfo

	// ConsumerSessionTimeout and ConsumerHeartbeatInterval are Kafka's
	// group.consumer.session.timeout.ms and
	// group.consumer.heartbeat.interval.ms for consumer-protocol groups.
	// Zero means Kafka's defaults, 45s and 5s.
	ConsumerSessionTimeout, ConsumerHeartbeatInterval time.Duration

	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with Kafka's defaults and no persistence.
func DefaultConfig() Config {
	return Config{
		MinSessionTimeout:     DefaultMinSessionTimeout,
		MaxSessionTimeout:     DefaultMaxSessionTimeout,
		InitialRebalanceDelay: DefaultInitialRebalanceDelay,
		MaxMetadataBytes:      DefaultMaxMetadataBytes,
		CommitTimeout:         DefaultCommitTimeout,
	}
}

// State is a group's state in Kafka's classic group protocol.
type State int

// The group states. Their String forms are the names Kafka reports in
// DescribeGroups and ListGroups.
const (
	Empty State = iota
	PreparingRebalance
	CompletingRebalance
	Stable
	Dead
)

func (s State) String() string {
	switch s {
	case Empty:
		return "Empty"
	case PreparingRebalance:
		return "PreparingRebalance"
	case CompletingRebalance:
		return "CompletingRebalance"
	case Stable:
		return "Stable"
	case Dead:
		return "Dead"
	}
	return "Unknown"
}

// Coordinator runs every consumer group of one broker.
//
// Locking: c.mu guards all group and member state (one mutex for the whole
// coordinator: every operation under it is a few map operations, and all
// waiting happens on channels outside it). Commits additionally take the
// group's commit lock (see commitLock) before c.mu, and hold only the commit
// lock while calling the Persister. Order: commit lock, then c.mu.
type Coordinator struct {
	log        hclog.Logger
	persister  Persister
	groupStore GroupPersister // persister, if it stores membership too; else nil
	minSess    time.Duration
	maxSess    time.Duration
	initDelay  time.Duration
	maxMeta    int
	commitTTL  time.Duration // Config.CommitTimeout
	exists     func(string, int32) bool
	topics     func() []TopicInfo
	cSession   time.Duration // Config.ConsumerSessionTimeout
	cHeartbeat time.Duration // Config.ConsumerHeartbeatInterval
	now        func() time.Time

	mu       sync.Mutex
	groups   map[string]*group
	stored   map[string]GroupState // RestoreGroup: the stored membership, by group
	closed   bool
	inactive bool      // SetActive(false): this node is not the coordinator
	nextWake time.Time // earliest deadline the timer loop is sleeping towards; zero = none

	commitMu    sync.Mutex
	commitLocks map[string]*commitLock

	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	// ctx is cancelled by Close: it ends background stores of group state.
	ctx    context.Context
	cancel context.CancelFunc
}

type group struct {
	name         string
	state        State
	protocolType string // set by the first member; "" for offset-only groups
	protocol     string // selected protocol; "" unless CompletingRebalance/Stable
	generation   int32
	leader       string
	members      map[string]*member
	pending      map[string]time.Time // member ids handed out with MEMBER_ID_REQUIRED -> expiry
	static       map[string]string    // group.instance.id -> member id
	offsets      map[string]map[int32]Offset
	seq          uint64 // join order counter

	// PreparingRebalance bookkeeping.
	joinDeadline   time.Time
	initialPhase   bool // first rebalance of an empty group (initial delay applies)
	newMemberAdded bool
	delayRemaining time.Duration

	// After a rebalance, members must send SyncGroup before syncDeadline
	// (the rebalance timeout, as in Kafka 3.2+); zero when all did.
	syncDeadline time.Time

	// storing: the leader's assignment arrived and is being stored
	// (GroupPersister); the group becomes Stable once it is.
	storing bool

	// emptySince is when the group last became Empty (zero: never, or
	// unknown); its offsets expire a retention after it (expire.go).
	emptySince time.Time

	// cg is set for a group of the consumer protocol (KIP-848,
	// consumer_group.go). Such a group has no classic members; its state
	// is Stable while cg has members and Empty otherwise.
	cg *cgroup
}

type member struct {
	id               string
	instanceID       string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []protocol
	assignment       []byte
	seq              uint64
	isNew            bool
	synced           bool // sent SyncGroup for the current generation
	lastHeartbeat    time.Time

	joinCh      chan *kmsg.JoinGroupResponse // non-nil while a JoinGroup waits
	joinVersion int16
	syncCh      chan *kmsg.SyncGroupResponse // non-nil while a SyncGroup waits
	syncVersion int16
}

type protocol struct {
	name     string
	metadata []byte
}

// New returns a running coordinator. Call Close to stop it.
func New(cfg Config) *Coordinator {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.MinSessionTimeout <= 0 {
		cfg.MinSessionTimeout = DefaultMinSessionTimeout
	}
	if cfg.MaxSessionTimeout <= 0 {
		cfg.MaxSessionTimeout = DefaultMaxSessionTimeout
	}
	if cfg.InitialRebalanceDelay < 0 {
		cfg.InitialRebalanceDelay = 0
	}
	if cfg.MaxMetadataBytes <= 0 {
		cfg.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ConsumerSessionTimeout <= 0 {
		cfg.ConsumerSessionTimeout = DefaultConsumerSessionTimeout
	}
	if cfg.ConsumerHeartbeatInterval <= 0 {
		cfg.ConsumerHeartbeatInterval = DefaultConsumerHeartbeatInterval
	}
	c := &Coordinator{
		log:         cfg.Logger,
		persister:   cfg.Persister,
		minSess:     cfg.MinSessionTimeout,
		maxSess:     cfg.MaxSessionTimeout,
		initDelay:   cfg.InitialRebalanceDelay,
		maxMeta:     cfg.MaxMetadataBytes,
		commitTTL:   cfg.CommitTimeout,
		exists:      cfg.PartitionExists,
		topics:      cfg.Topics,
		cSession:    cfg.ConsumerSessionTimeout,
		cHeartbeat:  cfg.ConsumerHeartbeatInterval,
		now:         cfg.Now,
		groups:      make(map[string]*group),
		stored:      make(map[string]GroupState),
		commitLocks: make(map[string]*commitLock),
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	c.groupStore, _ = cfg.Persister.(GroupPersister)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.run()
	return c
}

// Close stops the timer goroutine and answers every waiting JoinGroup and
// SyncGroup with COORDINATOR_NOT_AVAILABLE, so clients look for the
// coordinator again. Later requests get COORDINATOR_NOT_AVAILABLE too.
// Committed offsets stay readable through OffsetFetch.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for _, g := range c.groups {
		for _, m := range g.members {
			c.failWaitersLocked(g, m, kerr.CoordinatorNotAvailable.Code)
		}
	}
	c.mu.Unlock()
	close(c.done)
	c.cancel()
	c.wg.Wait()
	return nil
}

// ResetMembership drops every member of every group (used when this node
// stops being the leader and so the coordinator): waiting JoinGroup and
// SyncGroup calls get NOT_COORDINATOR, groups become Empty, committed offsets
// stay. Generations keep counting from where they were.
func (c *Coordinator) ResetMembership() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetMembershipLocked()
}

func (c *Coordinator) resetMembershipLocked() {
	for name, g := range c.groups {
		if len(g.members) == 0 && len(g.pending) == 0 && g.state == Empty {
			continue
		}
		for _, m := range g.members {
			c.failWaitersLocked(g, m, kerr.NotCoordinator.Code)
		}
		n := len(g.members)
		if g.cg != nil {
			n += len(g.cg.members)
			if len(g.cg.members) > 0 {
				g.cg.members = make(map[string]*cmember)
				g.cg.target = make(map[string]partitions)
			}
		}
		c.log.Info("dropped group membership", "group", name, "members", n, "generation", g.generation)
		g.members = make(map[string]*member)
		g.pending = make(map[string]time.Time)
		g.static = make(map[string]string)
		g.leader = ""
		g.protocol = ""
		g.state = Empty
		g.emptySince = time.Time{} // its members did not leave: not known
		g.syncDeadline = time.Time{}
		g.initialPhase = false
		c.maybeDeleteLocked(g)
	}
}

// SetActive says whether this node is the group coordinator (the cluster
// leader, or a standalone broker: the default). While inactive, every group
// API answers NOT_COORDINATOR (ListGroups: no groups), so clients ask
// FindCoordinator again; committed offsets keep arriving through Restore.
// Going inactive also drops all membership, as ResetMembership does.
func (c *Coordinator) SetActive(active bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := !c.inactive
	c.inactive = !active
	if was && !active {
		c.log.Info("no longer the group coordinator: dropping group membership")
		c.resetMembershipLocked()
	} else if !was && active {
		c.log.Info("now the group coordinator")
		c.loadMembershipLocked()
	}
}

// unavailableLocked returns the error code every group API answers with
// when this coordinator cannot serve (closed or inactive), else 0.
func (c *Coordinator) unavailableLocked() int16 {
	switch {
	case c.closed:
		return kerr.CoordinatorNotAvailable.Code
	case c.inactive:
		return kerr.NotCoordinator.Code
	}
	return 0
}

// failWaitersLocked answers a member's waiting JoinGroup/SyncGroup with code.
func (c *Coordinator) failWaitersLocked(g *group, m *member, code int16) {
	if m.joinCh != nil {
		m.joinCh <- joinError(m.joinVersion, m.id, code)
		m.joinCh = nil
	}
	if m.syncCh != nil {
		m.syncCh <- syncError(m.syncVersion, code)
		m.syncCh = nil
	}
}

// run is the timer loop: it sleeps until the earliest deadline (session
// expiry, pending member id expiry, rebalance deadline) and acts on it.
func (c *Coordinator) run() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := c.tick()
		d := time.Hour
		if !next.IsZero() {
			d = next.Sub(c.now())
			if d < time.Millisecond {
				d = time.Millisecond
			}
		}
		t.Reset(d)
		select {
		case <-c.done:
			return
		case <-t.C:
		case <-c.wake:
		}
	}
}

// tick processes every deadline that passed and returns the next one.
func (c *Coordinator) tick() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextWake = time.Time{}
	if c.closed {
		return time.Time{}
	}
	now := c.now()
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, g := range c.groups {
		for id, exp := range g.pending {
			if !now.Before(exp) {
				delete(g.pending, id)
				c.log.Debug("pending member id expired", "group", g.name, "member", id)
				if g.state == PreparingRebalance {
					c.maybeCompleteJoinLocked(g)
				}
			}
		}
		for _, m := range g.members {
			if m.keepAlive() {
				continue
			}
			if !now.Before(m.lastHeartbeat.Add(m.sessionTimeout)) {
				c.log.Info("member session expired, removing it", "group", g.name, "member", m.id,
					"session_timeout", m.sessionTimeout, "generation", g.generation)
				c.removeMemberLocked(g, m, "member "+m.id+" session expired")
			}
		}
		if g.state == PreparingRebalance && !now.Before(g.joinDeadline) {
			c.joinDeadlineLocked(g)
		}
		if !g.syncDeadline.IsZero() && !now.Before(g.syncDeadline) {
			c.syncDeadlineLocked(g)
		}
		if t := c.expireConsumersLocked(g, now); !t.IsZero() {
			consider(t)
		}
		c.maybeDeleteLocked(g)

		// Next deadlines of this group (after the changes above).
		for _, exp := range g.pending {
			consider(exp)
		}
		for _, m := range g.members {
			if !m.keepAlive() {
				consider(m.lastHeartbeat.Add(m.sessionTimeout))
			}
		}
		if g.state == PreparingRebalance {
			consider(g.joinDeadline)
		}
		if !g.syncDeadline.IsZero() {
			consider(g.syncDeadline)
		}
	}
	c.nextWake = next
	return next
}

// scheduleLocked makes sure the timer loop wakes up no later than t.
func (c *Coordinator) scheduleLocked(t time.Time) {
	if !c.nextWake.IsZero() && !t.Before(c.nextWake) {
		return
	}
	c.nextWake = t
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (m *member) keepAlive() bool { return m.joinCh != nil || m.syncCh != nil }

// touchLocked records a sign of life from m (heartbeat, join/sync answer, commit).
func (c *Coordinator) touchLocked(m *member) {
	m.lastHeartbeat = c.now()
	c.scheduleLocked(m.lastHeartbeat.Add(m.sessionTimeout))
}

// getGroupLocked returns the live group called name, or nil.
func (c *Coordinator) getGroupLocked(name string) *group {
	return c.groups[name]
}

func (c *Coordinator) getOrCreateGroupLocked(name string) *group {
	if g := c.groups[name]; g != nil {
		return g
	}
	g := &group{
		name:    name,
		state:   Empty,
		members: make(map[string]*member),
		pending: make(map[string]time.Time),
		static:  make(map[string]string),
		offsets: make(map[string]map[int32]Offset),
	}
	c.groups[name] = g
	return g
}

// maybeDeleteLocked forgets an Empty group that has nothing left: no
// members, no pending member ids and no committed offsets (Kafka marks such
// a group Dead and removes it).
func (c *Coordinator) maybeDeleteLocked(g *group) {
	if g.state != Empty || len(g.members) > 0 || len(g.pending) > 0 || len(g.offsets) > 0 {
		return
	}
	if c.groups[g.name] == g {
		delete(c.groups, g.name)
		g.state = Dead
		c.log.Debug("removed empty group", "group", g.name)
	}
}

// sortedMembers returns the members in join order.
func (g *group) sortedMembers() []*member {
	ms := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].seq < ms[j].seq })
	return ms
}

func (g *group) maxRebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		if m.rebalanceTimeout > d {
			d = m.rebalanceTimeout
		}
	}
	return d
}

// allJoined reports whether every member is waiting in JoinGroup and no
// member id handed out with MEMBER_ID_REQUIRED is still outstanding.
func (g *group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.members {
		if m.joinCh == nil {
			return false
		}
	}
	return true
}

// prepareRebalanceLocked moves g to PreparingRebalance.
func (c *Coordinator) prepareRebalanceLocked(g *group, reason string) {
	if g.state == CompletingRebalance {
		// The assignment of the generation being completed will never come:
		// members waiting in SyncGroup must rejoin.
		for _, m := range g.members {
			if m.syncCh != nil {
				m.syncCh <- syncError(m.syncVersion, kerr.RebalanceInProgress.Code)
				m.syncCh = nil
				c.touchLocked(m)
			}
			m.assignment = nil
		}
	}
	now := c.now()
	if g.state == Empty {
		g.initialPhase = true
		g.newMemberAdded = false
		g.delayRemaining = g.maxRebalanceTimeout() - c.initDelay
		if g.delayRemaining < 0 {
			g.delayRemaining = 0
		}
		g.joinDeadline = now.Add(c.initDelay)
	} else {
		g.initialPhase = false
		g.joinDeadline = now.Add(g.maxRebalanceTimeout())
	}
	g.storing = false
	c.log.Info("preparing to rebalance group", "group", g.name, "old_state", g.state,
		"generation", g.generation, "reason", reason, "deadline", g.joinDeadline.Sub(now))
	g.state = PreparingRebalance
	g.protocol = ""
	g.syncDeadline = time.Time{}
	c.scheduleLocked(g.joinDeadline)
}

// maybePrepareRebalanceLocked starts a rebalance unless one is in progress.
func (c *Coordinator) maybePrepareRebalanceLocked(g *group, reason string) {
	switch g.state {
	case Stable, CompletingRebalance, Empty:
		c.prepareRebalanceLocked(g, reason)
	}
}

// maybeCompleteJoinLocked completes the rebalance when nothing is left to wait for.
func (c *Coordinator) maybeCompleteJoinLocked(g *group) {
	if g.state != PreparingRebalance {
		return
	}
	if g.initialPhase {
		// The initial delay always runs to its end (Kafka's InitialDelayedJoin);
		// with a zero delay that end is now.
		if !c.now().Before(g.joinDeadline) {
			c.joinDeadlineLocked(g)
		}
		return
	}
	if g.allJoined() {
		c.completeJoinLocked(g)
	}
}

// joinDeadlineLocked handles the end of a rebalance's waiting time.
func (c *Coordinator) joinDeadlineLocked(g *group) {
	if g.initialPhase && g.newMemberAdded && g.delayRemaining > 0 {
		// New members arrived during the initial delay: wait once more.
		d := c.initDelay
		if d > g.delayRemaining {
			d = g.delayRemaining
		}
		g.delayRemaining -= d
		g.newMemberAdded = false
		g.joinDeadline = c.now().Add(d)
		c.scheduleLocked(g.joinDeadline)
		return
	}
	c.completeJoinLocked(g)
}

// syncDeadlineLocked handles the end of the time members have to send
// SyncGroup after a rebalance: members that did not are removed (the leader
// among them means no assignment will come) and the group rebalances.
func (c *Coordinator) syncDeadlineLocked(g *group) {
	g.syncDeadline = time.Time{}
	if g.state != CompletingRebalance && g.state != Stable {
		return
	}
	var late []*member
	for _, m := range g.sortedMembers() {
		if !m.synced {
			late = append(late, m)
		}
	}
	if len(late) == 0 {
		return
	}
	for _, m := range late {
		c.log.Info("member did not send SyncGroup within the rebalance timeout, removing it",
			"group", g.name, "member", m.id, "generation", g.generation)
		c.dropMemberLocked(g, m, kerr.UnknownMemberID.Code)
	}
	c.prepareRebalanceLocked(g, "members did not send SyncGroup in time")
	c.maybeCompleteJoinLocked(g)
}

// completeJoinLocked ends PreparingRebalance: members that did not rejoin are
// dropped, the generation advances, a protocol is chosen and every waiting
// JoinGroup is answered (the leader with the member list).
func (c *Coordinator) completeJoinLocked(g *group) {
	for _, m := range g.sortedMembers() {
		if m.joinCh == nil {
			c.log.Info("member did not rejoin in time, removing it", "group", g.name, "member", m.id,
				"generation", g.generation)
			c.dropMemberLocked(g, m, kerr.UnknownMemberID.Code)
		}
	}
	g.initialPhase = false
	if len(g.members) == 0 {
		g.generation++
		g.state = Empty
		g.emptySince = c.now()
		g.syncDeadline = time.Time{}
		g.protocol = ""
		g.leader = ""
		c.log.Info("group is empty", "group", g.name, "generation", g.generation)
		c.maybeDeleteLocked(g)
		c.storeGroupLater(g.name, g.generation)
		return
	}
	if _, ok := g.members[g.leader]; !ok {
		g.leader = g.sortedMembers()[0].id
	}
	g.generation++
	g.protocol = g.selectProtocol()
	g.state = CompletingRebalance
	g.syncDeadline = c.now().Add(g.maxRebalanceTimeout())
	c.scheduleLocked(g.syncDeadline)
	ms := g.sortedMembers()
	c.log.Info("group rebalanced, waiting for the leader's assignment", "group", g.name,
		"generation", g.generation, "protocol", g.protocol, "leader", g.leader, "members", len(ms))
	for _, m := range ms {
		m.assignment = nil
		m.synced = false
		resp := c.joinResponseLocked(g, m, m.joinVersion)
		m.joinCh <- resp
		m.joinCh = nil
		m.isNew = false
		c.touchLocked(m)
	}
}

// joinResponseLocked builds the successful JoinGroup answer for m in the
// current generation.
func (c *Coordinator) joinResponseLocked(g *group, m *member, version int16) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = version
	resp.Generation = g.generation
	resp.ProtocolType = strPtr(g.protocolType)
	resp.Protocol = strPtr(g.protocol)
	resp.LeaderID = g.leader
	resp.MemberID = m.id
	if m.id == g.leader {
		for _, o := range g.sortedMembers() {
			jm := kmsg.NewJoinGroupResponseMember()
			jm.MemberID = o.id
			if o.instanceID != "" {
				jm.InstanceID = strPtr(o.instanceID)
			}
			jm.ProtocolMetadata = o.metadataFor(g.protocol)
			resp.Members = append(resp.Members, jm)
		}
	}
	return resp
}

func (m *member) metadataFor(name string) []byte {
	for _, p := range m.protocols {
		if p.name == name {
			return p.metadata
		}
	}
	return nil
}

func (m *member) supports(name string) bool {
	for _, p := range m.protocols {
		if p.name == name {
			return true
		}
	}
	return false
}

// selectProtocol picks, among the protocols every member supports, the one
// most members list first (Kafka's vote); ties go to the leader's preference.
func (g *group) selectProtocol() string {
	leader := g.members[g.leader]
	var candidates []string
	for _, p := range leader.protocols {
		all := true
		for _, m := range g.members {
			if !m.supports(p.name) {
				all = false
				break
			}
		}
		if all {
			candidates = append(candidates, p.name)
		}
	}
	if len(candidates) == 0 {
		return "" // cannot happen: joins are checked for a common protocol
	}
	votes := make(map[string]int)
	for _, m := range g.members {
		for _, p := range m.protocols {
			if contains(candidates, p.name) {
				votes[p.name]++
				break
			}
		}
	}
	best := candidates[0]
	for _, name := range candidates[1:] {
		if votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

// removeMemberLocked removes m (left the group or its session expired) and
// starts or advances a rebalance.
func (c *Coordinator) removeMemberLocked(g *group, m *member, reason string) {
	c.dropMemberLocked(g, m, kerr.UnknownMemberID.Code)
	switch g.state {
	case Stable, CompletingRebalance:
		c.prepareRebalanceLocked(g, reason)
		c.maybeCompleteJoinLocked(g)
	case PreparingRebalance:
		c.maybeCompleteJoinLocked(g)
	}
}

// dropMemberLocked deletes m from g, answering its waiting requests with code.
func (c *Coordinator) dropMemberLocked(g *group, m *member, code int16) {
	c.failWaitersLocked(g, m, code)
	delete(g.members, m.id)
	if m.instanceID != "" && g.static[m.instanceID] == m.id {
		delete(g.static, m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
		// Prefer a member that already rejoined, as Kafka does.
		for _, o := range g.sortedMembers() {
			if o.joinCh != nil {
				g.leader = o.id
				break
			}
		}
		if g.leader == "" {
			if ms := g.sortedMembers(); len(ms) > 0 {
				g.leader = ms[0].id
			}
		}
	}
}

// fencedLocked reports whether instanceID belongs to a static member other
// than memberID (the caller is an older instance that was replaced).
func (g *group) fencedLocked(instanceID *string, memberID string) bool {
	if instanceID == nil || *instanceID == "" {
		return false
	}
	id, ok := g.static[*instanceID]
	return ok && id != memberID
}

func joinError(version int16, memberID string, code int16) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = version
	resp.ErrorCode = code
	resp.Generation = -1
	resp.MemberID = memberID
	if version < 7 {
		resp.Protocol = strPtr("")
	}
	return resp
}

func syncError(version int16, code int16) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.Version = version
	resp.ErrorCode = code
	resp.MemberAssignment = []byte{}
	return resp
}

// newMemberID returns prefix-UUID, as Kafka builds member ids from the client
// id (or the group.instance.id of a static member).
func newMemberID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	u := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	if prefix == "" {
		return u
	}
	return prefix + "-" + u
}

func strPtr(s string) *string { return &s }

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

type clientInfoKey struct{}

type clientInfo struct{ id, host string }

// WithClientInfo returns a context that carries the Kafka client id (from the
// request header) and the client's host, which the coordinator records for
// new members and reports in DescribeGroups. Kafka reports the host as
// "/" + IP address, e.g. "/127.0.0.1"; pass it in that form.
func WithClientInfo(ctx context.Context, clientID, clientHost string) context.Context {
	return context.WithValue(ctx, clientInfoKey{}, clientInfo{id: clientID, host: clientHost})
}

type topicFilterKey struct{}

// WithTopicFilter returns a context that carries which topics the client
// may see (with ACLs: DESCRIBE on the topic). The topics a member of a
// consumer-protocol group subscribes to by regular expression are
// filtered through it, as Kafka filters them through the member's
// authorizations; topics it names are not.
func WithTopicFilter(ctx context.Context, visible func(topic string) bool) context.Context {
	return context.WithValue(ctx, topicFilterKey{}, visible)
}

func topicFilterFrom(ctx context.Context) func(string) bool {
	f, _ := ctx.Value(topicFilterKey{}).(func(string) bool)
	return f
}

func clientInfoFrom(ctx context.Context) clientInfo {
	ci, _ := ctx.Value(clientInfoKey{}).(clientInfo)
	return ci
}
