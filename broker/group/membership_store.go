package group

// Persisted membership. Kafka's group coordinator writes each group's
// metadata (generation, protocol, leader, and every member with its
// subscription and assignment) to __consumer_offsets when a rebalance
// completes and when the group empties, and a coordinator that takes over
// (another broker, or the same one restarted) loads it: members go on
// heartbeating in the same generation, with the same assignment, and no
// rebalance happens. The coordinator does the same through a Persister
// that also implements GroupPersister: the broker writes the state as a
// WAL entry, which replicates like committed offsets do.
//
// When it is written:
//   - when the leader's SyncGroup completes a generation. The group
//     becomes Stable, and the members' SyncGroup calls are answered, only
//     once the state is stored (as Kafka answers SyncGroup only after its
//     append); if storing fails, the waiting members get the mapped error
//     (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR ...) and the group
//     rebalances again;
//   - when a static member (group.instance.id) rejoins under a new member
//     id and keeps its assignment with no rebalance: its JoinGroup is
//     answered once stored, so that a coordinator that takes over does not
//     fence it (Kafka stores the group there too);
//   - when a rebalance ends with no members left (the group is Empty), in
//     the background: nobody waits for it.
//
// Writes of one group are serialized by its commit lock, and each write
// takes the group's state at the moment it holds that lock, so the last
// entry of a group in the WAL is never older than its previous one.
//
// Restore of a GroupState (the broker's WAL replay at start-up, and every
// entry on a follower) only records it. The membership becomes live when
// this coordinator becomes active (SetActive(true): a follower promoted to
// leader) or when the broker calls LoadMembership after its start-up
// replay. A loaded group is Stable in its stored generation; each member
// has a full session timeout from the load to send its next heartbeat, as
// in Kafka. A member that does not is removed and the group rebalances.

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// GroupPersister is implemented by a Persister that also stores group
// membership (see GroupState). Without it, membership lives in memory
// only and members rejoin after a restart or a leader change.
type GroupPersister interface {
	// StoreGroup makes s durable (for the broker: a WAL entry, durable
	// and, when replicated, committed) and hands it back later through
	// RestoreGroup, on this node at its next start and on every
	// follower. Called without coordinator locks held, never for the same
	// group concurrently. Errors map as for CommitOffsets.
	StoreGroup(ctx context.Context, s GroupState) error
}

// GroupState is the membership of a group as stored: a Stable generation
// with its members, or, with no members, an Empty group (which only
// carries its generation).
type GroupState struct {
	Group        string        `json:"group"`
	Generation   int32         `json:"generation"`
	ProtocolType string        `json:"protocol_type,omitempty"`
	Protocol     string        `json:"protocol,omitempty"`
	Leader       string        `json:"leader,omitempty"`
	Members      []MemberState `json:"members,omitempty"`
	// EmptySinceMs is when an Empty group became empty (Unix
	// milliseconds; 0 when unknown): its offsets expire from then.
	EmptySinceMs int64 `json:"empty_since_ms,omitempty"`
	// Consumer is the state of a group of the consumer protocol (KIP-848;
	// ProtocolType "consumer", no classic Members); nil for classic groups.
	Consumer *ConsumerState `json:"consumer,omitempty"`
}

// MemberState is one member of a stored group, in join order.
type MemberState struct {
	ID                 string `json:"id"`
	InstanceID         string `json:"instance_id,omitempty"`
	ClientID           string `json:"client_id"`
	ClientHost         string `json:"client_host"`
	SessionTimeoutMs   int32  `json:"session_timeout_ms"`
	RebalanceTimeoutMs int32  `json:"rebalance_timeout_ms"`
	// Metadata is the member's metadata for the group's protocol (a
	// consumer's subscription).
	Metadata   []byte `json:"metadata,omitempty"`
	Assignment []byte `json:"assignment,omitempty"`
}

// stateLocked returns g's state to store: its members and their
// assignments if it is Stable or completing a generation (assignments
// given), none if it is Empty. ok is false in the middle of a rebalance,
// when there is nothing worth storing.
func stateLocked(g *group) (s GroupState, ok bool) {
	s = GroupState{Group: g.name, Generation: g.generation, ProtocolType: g.protocolType}
	if g.cg != nil {
		s.Generation, s.ProtocolType, s.Consumer = g.cg.epoch, ConsumerProtocolType, g.cg.stored()
		if len(g.cg.members) == 0 && !g.emptySince.IsZero() {
			s.EmptySinceMs = g.emptySince.UnixMilli()
		}
		return s, true
	}
	switch {
	case g.state == Empty || g.state == Dead:
		if !g.emptySince.IsZero() {
			s.EmptySinceMs = g.emptySince.UnixMilli()
		}
		return s, true
	case g.state == Stable || (g.state == CompletingRebalance && g.storing):
	default:
		return GroupState{}, false
	}
	s.Protocol, s.Leader = g.protocol, g.leader
	for _, m := range g.sortedMembers() {
		s.Members = append(s.Members, MemberState{
			ID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost,
			SessionTimeoutMs:   int32(m.sessionTimeout / time.Millisecond),
			RebalanceTimeoutMs: int32(m.rebalanceTimeout / time.Millisecond),
			Metadata:           m.metadataFor(g.protocol),
			Assignment:         m.assignment,
		})
	}
	return s, true
}

// storeAssignment stores the generation gen of g that the leader's
// SyncGroup just completed, then makes the group Stable and answers the
// waiting members, or, if storing failed, answers them with the error and
// starts a new rebalance. It runs in its own goroutine.
func (c *Coordinator) storeAssignment(g *group, gen int32) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.commitTTL)
	defer cancel()
	current := func() bool {
		return c.groups[g.name] == g && g.generation == gen && g.state == CompletingRebalance && g.storing
	}
	var err error
	if unlock := c.lockCommits(ctx, g.name); unlock == nil {
		err = context.DeadlineExceeded
	} else {
		c.mu.Lock()
		s, ok := stateLocked(g)
		ok = ok && current()
		c.mu.Unlock()
		if ok {
			err = c.groupStore.StoreGroup(ctx, s)
		}
		unlock()
		if !ok {
			return // the group moved on meanwhile; its waiters were answered
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !current() {
		return
	}
	g.storing = false
	if err == nil {
		c.completeSyncLocked(g)
		return
	}
	code := persistErrorCode(err)
	if code == kerr.InvalidCommitOffsetSize.Code {
		code = kerr.UnknownServerError.Code // as Kafka maps a too-large group record
	}
	c.log.Warn("could not store the group's assignment; members must rejoin", "group", g.name,
		"generation", gen, "error_code", kerr.ErrorForCode(code), "error", err)
	for _, m := range g.members {
		if m.syncCh != nil {
			m.syncCh <- syncError(m.syncVersion, code)
			m.syncCh = nil
			c.touchLocked(m)
		}
	}
	c.prepareRebalanceLocked(g, "storing the assignment failed")
}

// storeThenAnswer stores the current state of group name (a static member
// took its place under a new member id, with no rebalance) and then sends
// resp on ch, or, if storing failed, the error; the client retries its
// join. It runs in its own goroutine.
func (c *Coordinator) storeThenAnswer(name string, ch chan *kmsg.JoinGroupResponse, resp *kmsg.JoinGroupResponse) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.commitTTL)
	defer cancel()
	unlock := c.lockCommits(ctx, name)
	if unlock == nil {
		ch <- joinError(resp.Version, resp.MemberID, kerr.CoordinatorNotAvailable.Code)
		return
	}
	defer unlock()
	c.mu.Lock()
	var s GroupState
	ok := false
	if g := c.getGroupLocked(name); g != nil {
		s, ok = stateLocked(g)
	}
	c.mu.Unlock()
	if ok {
		if err := c.groupStore.StoreGroup(ctx, s); err != nil {
			c.log.Warn("could not store the group after a static member rejoined", "group", name,
				"member", resp.MemberID, "error", err)
			ch <- joinError(resp.Version, resp.MemberID, persistErrorCode(err))
			return
		}
	}
	// Not ok: a rebalance began meanwhile, which the member joins next;
	// its new id is stored with the generation that rebalance completes.
	ch <- resp
}

// storeGroupLater stores the current state of group name in the
// background (a group that became Empty in generation gen, which is what
// is stored if the group is gone by the time the write starts). A failure
// is logged: the stored state then stays the last Stable one, whose
// members a new coordinator drops when their sessions expire.
func (c *Coordinator) storeGroupLater(name string, gen int32) {
	if c.groupStore == nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, c.commitTTL)
		defer cancel()
		unlock := c.lockCommits(ctx, name)
		if unlock == nil {
			c.log.Warn("could not store the group's state: earlier writes of the group are still waiting", "group", name)
			return
		}
		defer unlock()
		c.mu.Lock()
		s, ok := GroupState{Group: name, Generation: gen}, true
		if g := c.getGroupLocked(name); g != nil {
			s, ok = stateLocked(g)
		}
		c.mu.Unlock()
		if !ok {
			return // rebalancing again; the next generation is stored when it completes
		}
		if err := c.groupStore.StoreGroup(ctx, s); err != nil {
			c.log.Warn("could not store the group's state", "group", name, "generation", s.Generation,
				"members", len(s.Members), "error", err)
		}
	}()
}

// RestoreGroup records a stored group state (the broker's WAL replay, and
// every entry on a follower). It does not change live membership: see
// LoadMembership.
func (c *Coordinator) RestoreGroup(s GroupState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stored[s.Group] = s
}

// StoredGroups returns every stored group state, sorted by group (for the
// broker's state checkpoint; RestoreGroup brings them back).
func (c *Coordinator) StoredGroups() []GroupState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]GroupState, 0, len(c.stored))
	for _, s := range c.stored {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b GroupState) int { return strings.Compare(a.Group, b.Group) })
	return out
}

// LoadMembership makes the stored membership live: every stored group with
// members that has no live members here becomes Stable in its stored
// generation, and each member has its session timeout from now to send a
// heartbeat. The broker calls it after its start-up replay; SetActive(true)
// calls it when this node becomes the coordinator.
func (c *Coordinator) LoadMembership() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loadMembershipLocked()
}

func (c *Coordinator) loadMembershipLocked() {
	if c.closed || c.inactive {
		return
	}
	now := c.now()
	for _, name := range sortedKeys(c.stored) {
		s := c.stored[name]
		g := c.getGroupLocked(name)
		if g != nil && (len(g.members) > 0 || len(g.pending) > 0 || g.state != Empty) {
			continue // live membership wins
		}
		if s.Consumer != nil {
			if len(s.Consumer.Members) == 0 && g == nil {
				continue // empty, and no offsets (or it would exist): forgotten
			}
			g = c.getOrCreateGroupLocked(name)
			g.protocolType = ConsumerProtocolType
			g.cg = loadCGroup(s.Consumer, now)
			g.generation = max(g.generation, s.Generation)
			if len(g.cg.members) == 0 {
				if s.EmptySinceMs > 0 {
					g.emptySince = time.UnixMilli(s.EmptySinceMs)
				}
				continue
			}
			g.state = Stable
			c.scheduleLocked(now.Add(c.cSession))
			c.log.Info("loaded stored consumer group", "group", name, "epoch", g.cg.epoch, "members", len(g.cg.members))
			continue
		}
		if len(s.Members) == 0 {
			// An Empty group lives on only if it has committed offsets;
			// its generations go on counting from the stored one, and its
			// offsets expire counting from when it became empty.
			if g != nil {
				g.generation = max(g.generation, s.Generation)
				if g.protocolType == "" {
					g.protocolType = s.ProtocolType
				}
				if s.EmptySinceMs > 0 {
					g.emptySince = time.UnixMilli(s.EmptySinceMs)
				}
			}
			continue
		}
		g = c.getOrCreateGroupLocked(name)
		g.cg = nil
		g.generation = s.Generation // the one its members heartbeat with
		g.protocolType, g.protocol, g.leader = s.ProtocolType, s.Protocol, s.Leader
		for _, ms := range s.Members {
			g.seq++
			m := &member{
				id: ms.ID, instanceID: ms.InstanceID, clientID: ms.ClientID, clientHost: ms.ClientHost,
				sessionTimeout:   time.Duration(ms.SessionTimeoutMs) * time.Millisecond,
				rebalanceTimeout: time.Duration(ms.RebalanceTimeoutMs) * time.Millisecond,
				protocolType:     s.ProtocolType,
				protocols:        []protocol{{name: s.Protocol, metadata: ms.Metadata}},
				assignment:       ms.Assignment,
				seq:              g.seq,
				synced:           true,
				lastHeartbeat:    now,
			}
			if m.assignment == nil {
				m.assignment = []byte{}
			}
			g.members[m.id] = m
			if m.instanceID != "" {
				g.static[m.instanceID] = m.id
			}
			c.scheduleLocked(now.Add(m.sessionTimeout))
		}
		if _, ok := g.members[g.leader]; !ok {
			g.leader = g.sortedMembers()[0].id
		}
		g.state = Stable
		c.log.Info("loaded stored group membership", "group", name, "generation", g.generation,
			"protocol", g.protocol, "members", len(g.members))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
