package group

// Heartbeat (API key 12), versions 0-4.
//
// A member proves it is alive; a member that sends nothing (no heartbeat,
// JoinGroup, SyncGroup or OffsetCommit) for its session timeout is removed
// and the group rebalances. The answer tells the member what to do next:
// REBALANCE_IN_PROGRESS (rejoin now), UNKNOWN_MEMBER_ID (the group forgot it:
// join again with no member id), ILLEGAL_GENERATION (it is behind: rejoin),
// FENCED_INSTANCE_ID (another process took its group.instance.id, v3+).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Heartbeat handles a Heartbeat request. It never blocks.
func (c *Coordinator) Heartbeat(_ context.Context, req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := kmsg.NewPtrHeartbeatResponse()
	resp.Version = req.Version
	resp.ErrorCode = c.heartbeat(req)
	return resp
}

func (c *Coordinator) heartbeat(req *kmsg.HeartbeatRequest) int16 {
	if req.Group == "" {
		return kerr.InvalidGroupID.Code
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if code := c.unavailableLocked(); code != 0 {
		return code
	}
	g := c.getGroupLocked(req.Group)
	if g == nil {
		return kerr.UnknownMemberID.Code
	}
	if req.Version >= 3 && g.fencedLocked(req.InstanceID, req.MemberID) {
		return kerr.FencedInstanceID.Code
	}
	m := g.members[req.MemberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	switch g.state {
	case PreparingRebalance:
		c.touchLocked(m)
		return kerr.RebalanceInProgress.Code
	case CompletingRebalance, Stable:
		// Members may heartbeat between their JoinGroup and SyncGroup.
		c.touchLocked(m)
		return 0
	}
	return kerr.UnknownMemberID.Code
}
