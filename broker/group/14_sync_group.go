package group

// SyncGroup (API key 14), versions 0-5.
//
// After JoinGroup, every member sends SyncGroup for the new generation. The
// leader's request carries the assignment of every member; the others wait
// until it arrives, then each gets its own assignment and the group is
// Stable. Members the leader left out get an empty assignment. If a new
// rebalance starts meanwhile, waiting members get REBALANCE_IN_PROGRESS and
// must rejoin. v3+ carries group.instance.id (fencing); v5+ carries the
// protocol type and name, which must match the group's.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SyncGroup handles a SyncGroup request. Followers block until the leader's
// assignment arrives, a rebalance starts, or ctx is done.
func (c *Coordinator) SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	ch, resp := c.sync(req)
	if resp != nil {
		return resp
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		// Stop treating the member as alive on account of this request.
		c.mu.Lock()
		if g := c.getGroupLocked(req.Group); g != nil {
			if m := g.members[req.MemberID]; m != nil && m.syncCh == ch {
				m.syncCh = nil
				c.touchLocked(m)
			}
		}
		c.mu.Unlock()
		select {
		case r := <-ch: // answered while we took the lock
			return r
		default:
		}
		return syncError(req.Version, kerr.RebalanceInProgress.Code)
	}
}

func (c *Coordinator) sync(req *kmsg.SyncGroupRequest) (chan *kmsg.SyncGroupResponse, *kmsg.SyncGroupResponse) {
	v := req.Version
	if req.Group == "" {
		return nil, syncError(v, kerr.InvalidGroupID.Code)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if code := c.unavailableLocked(); code != 0 {
		return nil, syncError(v, code)
	}
	g := c.getGroupLocked(req.Group)
	if g == nil {
		return nil, syncError(v, kerr.UnknownMemberID.Code)
	}
	if v >= 3 && g.fencedLocked(req.InstanceID, req.MemberID) {
		return nil, syncError(v, kerr.FencedInstanceID.Code)
	}
	m := g.members[req.MemberID]
	if m == nil {
		return nil, syncError(v, kerr.UnknownMemberID.Code)
	}
	if req.Generation != g.generation {
		return nil, syncError(v, kerr.IllegalGeneration.Code)
	}
	if v >= 5 {
		if (req.ProtocolType != nil && *req.ProtocolType != g.protocolType) ||
			(req.Protocol != nil && *req.Protocol != g.protocol) {
			return nil, syncError(v, kerr.InconsistentGroupProtocol.Code)
		}
	}
	switch g.state {
	case PreparingRebalance:
		return nil, syncError(v, kerr.RebalanceInProgress.Code)
	case Stable:
		c.touchLocked(m)
		m.synced = true
		c.maybeClearSyncDeadlineLocked(g)
		return nil, c.syncResponseLocked(g, m, v)
	case CompletingRebalance:
	default:
		return nil, syncError(v, kerr.UnknownMemberID.Code)
	}

	if m.syncCh != nil {
		m.syncCh <- syncError(m.syncVersion, kerr.RebalanceInProgress.Code)
	}
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	m.syncCh = ch
	m.syncVersion = v
	m.synced = true
	c.maybeClearSyncDeadlineLocked(g)
	if m.id != g.leader {
		return ch, nil
	}

	if g.storing {
		return ch, nil // a retry: answered with the others once stored
	}
	// The leader's assignment completes the generation.
	for _, a := range req.GroupAssignment {
		if om := g.members[a.MemberID]; om != nil {
			om.assignment = cloneBytes(a.MemberAssignment)
		}
	}
	for _, om := range g.members {
		if om.assignment == nil {
			om.assignment = []byte{}
		}
	}
	if c.groupStore != nil {
		// Stable, and answered, once stored (membership_store.go).
		g.storing = true
		c.wg.Add(1)
		go c.storeAssignment(g, g.generation)
		return ch, nil
	}
	c.completeSyncLocked(g)
	return ch, nil
}

// completeSyncLocked makes g Stable with the assignments its leader sent
// and answers every waiting SyncGroup.
func (c *Coordinator) completeSyncLocked(g *group) {
	g.state = Stable
	c.log.Info("group is stable", "group", g.name, "generation", g.generation,
		"protocol", g.protocol, "members", len(g.members))
	for _, om := range g.members {
		if om.syncCh != nil {
			om.syncCh <- c.syncResponseLocked(g, om, om.syncVersion)
			om.syncCh = nil
			c.touchLocked(om)
		}
	}
}

func (c *Coordinator) syncResponseLocked(g *group, m *member, version int16) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.Version = version
	resp.ProtocolType = strPtr(g.protocolType)
	resp.Protocol = strPtr(g.protocol)
	resp.MemberAssignment = m.assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	return resp
}

// maybeClearSyncDeadlineLocked stops the SyncGroup deadline once every
// member has sent SyncGroup.
func (c *Coordinator) maybeClearSyncDeadlineLocked(g *group) {
	for _, m := range g.members {
		if !m.synced {
			return
		}
	}
	g.syncDeadline = time.Time{}
}
