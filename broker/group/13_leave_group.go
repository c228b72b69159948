package group

// LeaveGroup (API key 13), versions 0-5.
//
// v0-v2 remove one member (MemberID) and report its error at the top level.
// v3+ remove a batch of members, each named by member id and/or
// group.instance.id, with one error per member (KIP-345). A member leaving a
// Stable or CompletingRebalance group starts a rebalance; leaving during
// PreparingRebalance may let the rebalance complete at once. A member id
// handed out with MEMBER_ID_REQUIRED but not used yet can leave too.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LeaveGroup handles a LeaveGroup request. It never blocks.
func (c *Coordinator) LeaveGroup(_ context.Context, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := kmsg.NewPtrLeaveGroupResponse()
	resp.Version = req.Version
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	codes, top := c.leave(req.Group, leaving)
	if req.Version < 3 {
		resp.ErrorCode = top
		if top == 0 && len(codes) == 1 {
			resp.ErrorCode = codes[0]
		}
		return resp
	}
	resp.ErrorCode = top
	if top != 0 {
		return resp
	}
	for i, lm := range leaving {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID = lm.MemberID
		rm.InstanceID = lm.InstanceID
		rm.ErrorCode = codes[i]
		resp.Members = append(resp.Members, rm)
	}
	return resp
}

// leave removes members and returns one error code per member plus a
// group-level error code.
func (c *Coordinator) leave(name string, leaving []kmsg.LeaveGroupRequestMember) ([]int16, int16) {
	if name == "" {
		return nil, kerr.InvalidGroupID.Code
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if code := c.unavailableLocked(); code != 0 {
		return nil, code
	}
	codes := make([]int16, len(leaving))
	g := c.getGroupLocked(name)
	if g == nil {
		for i := range codes {
			codes[i] = kerr.UnknownMemberID.Code
		}
		return codes, 0
	}
	defer c.maybeDeleteLocked(g)
	for i, lm := range leaving {
		codes[i] = c.leaveOneLocked(g, lm)
	}
	return codes, 0
}

func (c *Coordinator) leaveOneLocked(g *group, lm kmsg.LeaveGroupRequestMember) int16 {
	id := lm.MemberID
	if lm.InstanceID != nil && *lm.InstanceID != "" {
		sid, ok := g.static[*lm.InstanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		if id != "" && id != sid {
			return kerr.FencedInstanceID.Code
		}
		id = sid
	}
	if _, ok := g.pending[id]; ok {
		delete(g.pending, id)
		c.log.Debug("pending member left", "group", g.name, "member", id)
		c.maybeCompleteJoinLocked(g)
		return 0
	}
	m := g.members[id]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	c.log.Info("member left the group", "group", g.name, "member", id,
		"reason", derefOr(lm.Reason, ""), "generation", g.generation)
	c.removeMemberLocked(g, m, "member "+id+" left the group")
	return 0
}
