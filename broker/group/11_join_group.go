package group

// JoinGroup (API key 11), versions 0-9.
//
// A member joins (or rejoins) a group and waits until the rebalance
// completes; the answer carries the new generation, the chosen protocol, the
// leader's member id and, for the leader only, every member's metadata.
//
//   - v0 has no rebalance timeout: the session timeout serves as both.
//   - v4+: a member joining with an empty member id (and no group.instance.id)
//     gets MEMBER_ID_REQUIRED with a fresh member id and must join again with
//     it (KIP-394). Older versions are added at once.
//   - v5+: group.instance.id (static membership, KIP-345): a known instance
//     joining again takes over its old member's place and assignment; the old
//     member id is fenced (FENCED_INSTANCE_ID).
//   - v7+: the protocol type and name are returned; v9 SkipAssignment is always false.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// JoinGroup handles a JoinGroup request. It blocks until the rebalance
// completes or ctx is done.
func (c *Coordinator) JoinGroup(ctx context.Context, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	ch, resp := c.join(ctx, req)
	if resp != nil {
		return resp
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		// The member stays in the group and is part of the next generation,
		// as in Kafka; if its client is gone its session expires later.
		return joinError(req.Version, req.MemberID, kerr.RebalanceInProgress.Code)
	}
}

// join does the locked part of JoinGroup: either an immediate answer, or a
// channel that receives the answer when the rebalance completes.
func (c *Coordinator) join(ctx context.Context, req *kmsg.JoinGroupRequest) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	v := req.Version
	if req.Group == "" {
		return nil, joinError(v, req.MemberID, kerr.InvalidGroupID.Code)
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	rebalance := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if v == 0 || req.RebalanceTimeoutMillis <= 0 {
		rebalance = session
	}
	if session < c.minSess || session > c.maxSess {
		return nil, joinError(v, req.MemberID, kerr.InvalidSessionTimeout.Code)
	}
	instanceID := ""
	if v >= 5 && req.InstanceID != nil {
		instanceID = *req.InstanceID
	}
	protos := make([]protocol, 0, len(req.Protocols))
	for _, p := range req.Protocols {
		protos = append(protos, protocol{name: p.Name, metadata: cloneBytes(p.Metadata)})
	}
	ci := clientInfoFrom(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	if code := c.unavailableLocked(); code != 0 {
		return nil, joinError(v, req.MemberID, code)
	}
	g := c.getGroupLocked(req.Group)
	if g == nil {
		if req.MemberID != "" {
			return nil, joinError(v, req.MemberID, kerr.UnknownMemberID.Code)
		}
		g = c.getOrCreateGroupLocked(req.Group)
	}
	if g.isConsumerLocked() {
		// Kafka's online migration between the protocols is not supported.
		return nil, joinError(v, req.MemberID, kerr.InconsistentGroupProtocol.Code)
	}
	if g.cg != nil {
		// An empty consumer group becomes classic; its epochs go on as generations.
		g.generation = max(g.generation, g.cg.epoch)
		g.cg = nil
	}
	defer c.maybeDeleteLocked(g)

	jr := joinRequest{
		version:      v,
		session:      session,
		rebalance:    rebalance,
		instanceID:   instanceID,
		protocolType: req.ProtocolType,
		protocols:    protos,
		client:       ci,
		reason:       req.Reason,
	}

	if req.MemberID == "" {
		return c.joinUnknownLocked(g, jr)
	}
	return c.joinKnownLocked(g, req.MemberID, jr)
}

type joinRequest struct {
	version      int16
	session      time.Duration
	rebalance    time.Duration
	instanceID   string
	protocolType string
	protocols    []protocol
	client       clientInfo
	reason       *string
}

// consistentLocked reports whether a member with this protocol type and
// protocols may be in g (ignoring the member `except`): a new group needs
// a protocol type and at least one protocol; otherwise the type must match
// and at least one protocol must be supported by every other member.
func (g *group) consistentLocked(jr joinRequest, except string) bool {
	if jr.protocolType == "" || len(jr.protocols) == 0 {
		return false
	}
	others := 0
	for id := range g.members {
		if id != except {
			others++
		}
	}
	if others == 0 {
		return true
	}
	if jr.protocolType != g.protocolType {
		return false
	}
	for _, p := range jr.protocols {
		all := true
		for id, m := range g.members {
			if id != except && !m.supports(p.name) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (c *Coordinator) joinUnknownLocked(g *group, jr joinRequest) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	if !g.consistentLocked(jr, "") {
		return nil, joinError(jr.version, "", kerr.InconsistentGroupProtocol.Code)
	}
	if jr.instanceID != "" {
		newID := newMemberID(jr.instanceID)
		if oldID, ok := g.static[jr.instanceID]; ok {
			return c.replaceStaticLocked(g, oldID, newID, jr)
		}
		return c.addMemberLocked(g, newID, jr), nil
	}
	newID := newMemberID(jr.client.id)
	if jr.version >= 4 {
		exp := c.now().Add(jr.session)
		g.pending[newID] = exp
		c.scheduleLocked(exp)
		c.log.Debug("asking new member to rejoin with its member id", "group", g.name, "member", newID)
		return nil, joinError(jr.version, newID, kerr.MemberIDRequired.Code)
	}
	return c.addMemberLocked(g, newID, jr), nil
}

func (c *Coordinator) joinKnownLocked(g *group, memberID string, jr joinRequest) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	var inst *string
	if jr.instanceID != "" {
		inst = &jr.instanceID
	}
	if g.fencedLocked(inst, memberID) {
		return nil, joinError(jr.version, memberID, kerr.FencedInstanceID.Code)
	}
	if _, ok := g.pending[memberID]; ok {
		if !g.consistentLocked(jr, "") {
			return nil, joinError(jr.version, memberID, kerr.InconsistentGroupProtocol.Code)
		}
		delete(g.pending, memberID)
		return c.addMemberLocked(g, memberID, jr), nil
	}
	m := g.members[memberID]
	if m == nil {
		return nil, joinError(jr.version, memberID, kerr.UnknownMemberID.Code)
	}
	if !g.consistentLocked(jr, memberID) {
		return nil, joinError(jr.version, memberID, kerr.InconsistentGroupProtocol.Code)
	}
	switch g.state {
	case PreparingRebalance:
		return c.updateMemberLocked(g, m, jr, "member "+m.id+" rejoined"), nil
	case CompletingRebalance:
		if sameProtocols(m.protocols, jr.protocols) {
			// The member missed our JoinGroup answer: repeat it.
			c.touchLocked(m)
			return nil, c.joinResponseLocked(g, m, jr.version)
		}
		return c.updateMemberLocked(g, m, jr, "member "+m.id+" changed its protocols"), nil
	case Stable:
		if m.id == g.leader || !sameProtocols(m.protocols, jr.protocols) {
			reason := "leader " + m.id + " rejoined"
			if m.id != g.leader {
				reason = "member " + m.id + " changed its protocols"
			}
			return c.updateMemberLocked(g, m, jr, reason), nil
		}
		// A follower rejoining with unchanged metadata gets the current
		// generation; no rebalance.
		c.touchLocked(m)
		return nil, c.joinResponseLocked(g, m, jr.version)
	}
	return nil, joinError(jr.version, memberID, kerr.UnknownMemberID.Code)
}

// addMemberLocked adds a new member that waits for the rebalance.
func (c *Coordinator) addMemberLocked(g *group, id string, jr joinRequest) chan *kmsg.JoinGroupResponse {
	if len(g.members) == 0 {
		g.protocolType = jr.protocolType
	}
	g.seq++
	m := &member{
		id:               id,
		instanceID:       jr.instanceID,
		clientID:         jr.client.id,
		clientHost:       jr.client.host,
		sessionTimeout:   jr.session,
		rebalanceTimeout: jr.rebalance,
		protocolType:     jr.protocolType,
		protocols:        jr.protocols,
		seq:              g.seq,
		isNew:            true,
		lastHeartbeat:    c.now(),
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinCh = ch
	m.joinVersion = jr.version
	g.members[id] = m
	if jr.instanceID != "" {
		g.static[jr.instanceID] = id
	}
	if g.leader == "" {
		g.leader = id
	}
	c.log.Debug("member joined", "group", g.name, "member", id, "client_id", jr.client.id,
		"host", jr.client.host, "instance_id", jr.instanceID, "reason", derefOr(jr.reason, ""))
	if g.state == PreparingRebalance && g.initialPhase {
		g.newMemberAdded = true
	}
	c.maybePrepareRebalanceLocked(g, "new member "+id+" joined")
	c.maybeCompleteJoinLocked(g)
	return ch
}

// updateMemberLocked records a known member's new join and rebalances.
func (c *Coordinator) updateMemberLocked(g *group, m *member, jr joinRequest, reason string) chan *kmsg.JoinGroupResponse {
	if m.joinCh != nil {
		// A retried JoinGroup replaces the one still waiting.
		m.joinCh <- joinError(m.joinVersion, m.id, kerr.RebalanceInProgress.Code)
	}
	m.sessionTimeout = jr.session
	m.rebalanceTimeout = jr.rebalance
	m.protocols = jr.protocols
	m.protocolType = jr.protocolType
	if jr.client.id != "" || jr.client.host != "" {
		m.clientID, m.clientHost = jr.client.id, jr.client.host
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinCh = ch
	m.joinVersion = jr.version
	m.lastHeartbeat = c.now()
	c.maybePrepareRebalanceLocked(g, reason)
	c.maybeCompleteJoinLocked(g)
	return ch
}

// replaceStaticLocked hands a static member's place to a new member id
// (a restarted instance with the same group.instance.id).
func (c *Coordinator) replaceStaticLocked(g *group, oldID, newID string, jr joinRequest) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	old := g.members[oldID]
	if old == nil {
		delete(g.static, jr.instanceID)
		return c.addMemberLocked(g, newID, jr), nil
	}
	c.failWaitersLocked(g, old, kerr.FencedInstanceID.Code)
	delete(g.members, oldID)
	unchanged := sameProtocols(old.protocols, jr.protocols)
	old.id = newID
	g.members[newID] = old
	g.static[jr.instanceID] = newID
	wasLeader := g.leader == oldID
	if wasLeader {
		g.leader = newID
	}
	c.log.Info("static member replaced", "group", g.name, "instance_id", jr.instanceID,
		"old_member", oldID, "new_member", newID)
	if g.state == Stable && unchanged && !wasLeader {
		old.sessionTimeout, old.rebalanceTimeout = jr.session, jr.rebalance
		old.clientID, old.clientHost = jr.client.id, jr.client.host
		c.touchLocked(old)
		resp := c.joinResponseLocked(g, old, jr.version)
		if c.groupStore == nil {
			return nil, resp
		}
		// As Kafka does, the new member id is stored before it is handed
		// out: a coordinator that took over with the old one would fence
		// the instance (membership_store.go).
		ch := make(chan *kmsg.JoinGroupResponse, 1)
		c.wg.Add(1)
		go c.storeThenAnswer(g.name, ch, resp)
		return ch, nil
	}
	return c.updateMemberLocked(g, old, jr, "static member "+jr.instanceID+" rejoined"), nil
}

func sameProtocols(a, b []protocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || string(a[i].metadata) != string(b[i].metadata) {
			return false
		}
	}
	return true
}

func derefOr(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}
