package group

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

// Two members join; one is the leader and gets both members' metadata; the
// leader's SyncGroup hands each member its assignment.
func TestJoinSyncTwoMembers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		jv, sv int16
	}{
		{"join v0 sync v0", 0, 0},
		{"join v2 sync v1 (kafka-python)", 2, 1},
		{"join v3 sync v2", 3, 2},
		{"join v5 sync v3", 5, 3},
		{"join v7 sync v5", 7, 5},
		{"join v9 sync v5", 9, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			a := h.joinNew(tc.jv, "g", joinOpts{})
			// The first member alone completes the first rebalance (no initial delay).
			ra := recv(t, a)
			wantCode(t, "join a", ra.ErrorCode, nil)
			if ra.Generation != 1 || ra.LeaderID != ra.MemberID || len(ra.Members) != 1 {
				t.Fatalf("first join: generation %d leader %q member %q members %d", ra.Generation, ra.LeaderID, ra.MemberID, len(ra.Members))
			}
			if ra.Version != tc.jv {
				t.Fatalf("response version %d, want %d", ra.Version, tc.jv)
			}
			if got := h.state("g"); got != "CompletingRebalance" {
				t.Fatalf("state %s, want CompletingRebalance", got)
			}

			// A second member joins: a new rebalance that waits for the leader to rejoin.
			b := h.joinNew(tc.jv, "g", joinOpts{})
			eventually(t, waitFor, "PreparingRebalance", func() bool { return h.state("g") == "PreparingRebalance" })
			notReady(t, b)
			a = h.joinAsync(joinReq(tc.jv, "g", ra.MemberID, joinOpts{}))
			ra, rb := recv(t, a), recv(t, b)
			wantCode(t, "rejoin a", ra.ErrorCode, nil)
			wantCode(t, "join b", rb.ErrorCode, nil)
			if ra.Generation != 2 || rb.Generation != 2 {
				t.Fatalf("generations %d %d, want 2", ra.Generation, rb.Generation)
			}
			if ra.LeaderID != ra.MemberID || rb.LeaderID != ra.MemberID {
				t.Fatalf("leader: a sees %q, b sees %q, want %q", ra.LeaderID, rb.LeaderID, ra.MemberID)
			}
			if len(ra.Members) != 2 || len(rb.Members) != 0 {
				t.Fatalf("leader got %d members, follower %d; want 2 and 0", len(ra.Members), len(rb.Members))
			}
			for _, m := range ra.Members {
				if string(m.ProtocolMetadata) != "meta-range" {
					t.Fatalf("member %s metadata %q", m.MemberID, m.ProtocolMetadata)
				}
			}
			if ra.Protocol == nil || *ra.Protocol != "range" {
				t.Fatalf("protocol %v, want range", ra.Protocol)
			}

			// The follower syncs first and waits for the leader.
			sb := h.syncAsync(syncReq(tc.sv, "g", rb.MemberID, 2, nil))
			if code := h.heartbeat(0, "g", rb.MemberID, 2); code != 0 {
				t.Fatalf("heartbeat between join and sync: %v", kerr.ErrorForCode(code))
			}
			notReady(t, sb)
			sa := h.SyncGroup(t.Context(), syncReq(tc.sv, "g", ra.MemberID, 2, map[string]string{
				ra.MemberID: "for-a", rb.MemberID: "for-b",
			}))
			wantCode(t, "leader sync", sa.ErrorCode, nil)
			if string(sa.MemberAssignment) != "for-a" {
				t.Fatalf("leader assignment %q", sa.MemberAssignment)
			}
			rsb := recv(t, sb)
			wantCode(t, "follower sync", rsb.ErrorCode, nil)
			if string(rsb.MemberAssignment) != "for-b" || rsb.Version != tc.sv {
				t.Fatalf("follower assignment %q version %d", rsb.MemberAssignment, rsb.Version)
			}
			if got := h.state("g"); got != "Stable" {
				t.Fatalf("state %s, want Stable", got)
			}
			// A late SyncGroup in Stable returns the assignment at once.
			again := h.SyncGroup(t.Context(), syncReq(tc.sv, "g", rb.MemberID, 2, nil))
			if again.ErrorCode != 0 || string(again.MemberAssignment) != "for-b" {
				t.Fatalf("repeated sync: %v %q", kerr.ErrorForCode(again.ErrorCode), again.MemberAssignment)
			}
			for _, id := range []string{ra.MemberID, rb.MemberID} {
				wantCode(t, "heartbeat in Stable", h.heartbeat(1, "g", id, 2), nil)
			}
		})
	}
}

// On v4+ a member joining with no member id gets MEMBER_ID_REQUIRED and a
// member id, and joins again with it; older versions join at once.
func TestMemberIDRequired(t *testing.T) {
	for _, v := range []int16{0, 3, 4, 6, 9} {
		t.Run("v"+string(rune('0'+v)), func(t *testing.T) {
			h := newHarness(t, nil)
			ctx := t.Context()
			first := h.joinAsync(joinReq(v, "g", "", joinOpts{}))
			resp := recv(t, first)
			if v < 4 {
				wantCode(t, "join", resp.ErrorCode, nil)
				if resp.MemberID == "" || resp.Generation != 1 {
					t.Fatalf("member %q generation %d", resp.MemberID, resp.Generation)
				}
				return
			}
			wantCode(t, "first join", resp.ErrorCode, kerr.MemberIDRequired)
			if resp.MemberID == "" || resp.Generation != -1 {
				t.Fatalf("MEMBER_ID_REQUIRED with member %q generation %d", resp.MemberID, resp.Generation)
			}
			// The handed-out id alone is not a member yet.
			wantCode(t, "heartbeat of pending id", h.heartbeat(0, "g", resp.MemberID, 0), kerr.UnknownMemberID)
			second := h.JoinGroup(ctx, joinReq(v, "g", resp.MemberID, joinOpts{}))
			wantCode(t, "second join", second.ErrorCode, nil)
			if second.MemberID != resp.MemberID || second.LeaderID != resp.MemberID || second.Generation != 1 {
				t.Fatalf("second join: member %q leader %q generation %d", second.MemberID, second.LeaderID, second.Generation)
			}
			// A made-up member id is refused.
			bad := h.JoinGroup(ctx, joinReq(v, "g", "made-up", joinOpts{}))
			wantCode(t, "unknown member id", bad.ErrorCode, kerr.UnknownMemberID)
		})
	}
}

// A member id handed out with MEMBER_ID_REQUIRED and never used expires
// after the session timeout; until then a rebalance waits for it.
func TestPendingMemberExpires(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 1, 4, 3)
	resp := h.JoinGroup(t.Context(), joinReq(4, "g", "", joinOpts{session: 100 * time.Millisecond}))
	wantCode(t, "first join", resp.ErrorCode, kerr.MemberIDRequired)
	// The leader rejoins (a rebalance); it must wait for the pending member
	// until the pending id expires.
	ch := h.joinAsync(joinReq(4, "g", ids[0], joinOpts{}))
	r := recv(t, ch)
	wantCode(t, "rejoin", r.ErrorCode, nil)
	if r.Generation != gen+1 || len(r.Members) != 1 {
		t.Fatalf("generation %d members %d, want %d and 1", r.Generation, len(r.Members), gen+1)
	}
	late := h.JoinGroup(t.Context(), joinReq(4, "g", resp.MemberID, joinOpts{}))
	wantCode(t, "join with expired id", late.ErrorCode, kerr.UnknownMemberID)
}

// A member that leaves triggers a rebalance; the remaining member gets the
// next generation and becomes the leader.
func TestLeaveTriggersRebalance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version int16
	}{{"v0", 0}, {"v2", 2}, {"v3 batch", 3}, {"v5 batch", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			ids, gen := h.stableGroup("g", 2, 5, 3)
			leader, follower := ids[0], ids[1]

			req := kmsg.NewPtrLeaveGroupRequest()
			req.Version = tc.version
			req.Group = "g"
			if tc.version < 3 {
				req.MemberID = leader
			} else {
				m := kmsg.NewLeaveGroupRequestMember()
				m.MemberID = leader
				unknown := kmsg.NewLeaveGroupRequestMember()
				unknown.MemberID = "nobody"
				req.Members = []kmsg.LeaveGroupRequestMember{m, unknown}
			}
			resp := h.LeaveGroup(t.Context(), req)
			wantCode(t, "leave", resp.ErrorCode, nil)
			if tc.version >= 3 {
				if len(resp.Members) != 2 || resp.Members[0].ErrorCode != 0 || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
					t.Fatalf("per-member results %+v", resp.Members)
				}
			}
			if got := h.state("g"); got != "PreparingRebalance" {
				t.Fatalf("state %s, want PreparingRebalance", got)
			}
			wantCode(t, "heartbeat", h.heartbeat(0, "g", follower, gen), kerr.RebalanceInProgress)
			wantCode(t, "heartbeat of the member that left", h.heartbeat(0, "g", leader, gen), kerr.UnknownMemberID)

			r := h.JoinGroup(t.Context(), joinReq(5, "g", follower, joinOpts{}))
			wantCode(t, "rejoin", r.ErrorCode, nil)
			if r.Generation != gen+1 || r.LeaderID != follower || len(r.Members) != 1 {
				t.Fatalf("generation %d leader %q members %d", r.Generation, r.LeaderID, len(r.Members))
			}
			wantCode(t, "old generation heartbeat", h.heartbeat(0, "g", follower, gen), kerr.IllegalGeneration)

			// The last member leaving empties the group (offsets none: it disappears).
			req = kmsg.NewPtrLeaveGroupRequest()
			req.Group = "g"
			req.MemberID = follower
			wantCode(t, "last leave", h.LeaveGroup(t.Context(), req).ErrorCode, nil)
			if got := h.state("g"); got != "Dead" {
				t.Fatalf("state after everyone left: %s, want Dead (forgotten)", got)
			}
		})
	}
}

// A member that stops heartbeating is removed after its session timeout and
// the group rebalances without it.
func TestSessionTimeoutRemovesMember(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	short := joinOpts{session: 150 * time.Millisecond, rebalance: 10 * time.Second}
	a := recv(t, h.joinAsync(joinReq(3, "g", "", joinOpts{})))
	wantCode(t, "join a", a.ErrorCode, nil)
	b := h.joinAsync(joinReq(3, "g", "", short))
	h.waitState("g", "PreparingRebalance")
	a2 := recv(t, h.joinAsync(joinReq(3, "g", a.MemberID, joinOpts{})))
	rb := recv(t, b)
	wantCode(t, "join b", rb.ErrorCode, nil)
	sb := h.syncAsync(syncReq(2, "g", rb.MemberID, a2.Generation, nil))
	wantCode(t, "sync a", h.SyncGroup(ctx, syncReq(2, "g", a.MemberID, a2.Generation, nil)).ErrorCode, nil)
	wantCode(t, "sync b", recv(t, sb).ErrorCode, nil)

	// a keeps heartbeating, b does not: b is removed, a is told to rebalance.
	eventually(t, waitFor, "REBALANCE_IN_PROGRESS for a", func() bool {
		return h.heartbeat(0, "g", a.MemberID, a2.Generation) == kerr.RebalanceInProgress.Code
	})
	wantCode(t, "heartbeat of expired member", h.heartbeat(0, "g", rb.MemberID, a2.Generation), kerr.UnknownMemberID)
	r := h.JoinGroup(ctx, joinReq(3, "g", a.MemberID, joinOpts{}))
	wantCode(t, "rejoin", r.ErrorCode, nil)
	if r.Generation != a2.Generation+1 || len(r.Members) != 1 {
		t.Fatalf("generation %d members %d", r.Generation, len(r.Members))
	}
}

// A member that does not rejoin within the rebalance timeout is dropped and
// the rebalance completes with the others.
func TestRebalanceTimeoutDropsMember(t *testing.T) {
	h := newHarness(t, nil)
	opts := joinOpts{session: 10 * time.Second, rebalance: 200 * time.Millisecond}
	a := recv(t, h.joinAsync(joinReq(1, "g", "", opts)))
	b := h.joinAsync(joinReq(1, "g", "", opts))
	h.waitState("g", "PreparingRebalance")
	a2 := recv(t, h.joinAsync(joinReq(1, "g", a.MemberID, opts)))
	rb := recv(t, b)
	sb := h.syncAsync(syncReq(1, "g", rb.MemberID, a2.Generation, nil))
	h.SyncGroup(t.Context(), syncReq(1, "g", a.MemberID, a2.Generation, nil))
	recv(t, sb)

	// A third member joins; a rejoins, b (still heartbeating) never does.
	c := h.joinAsync(joinReq(1, "g", "", opts))
	h.waitState("g", "PreparingRebalance")
	wantCode(t, "b heartbeat", h.heartbeat(1, "g", rb.MemberID, a2.Generation), kerr.RebalanceInProgress)
	ra := h.joinAsync(joinReq(1, "g", a.MemberID, opts))
	r1, r2 := recv(t, ra), recv(t, c)
	wantCode(t, "a", r1.ErrorCode, nil)
	wantCode(t, "c", r2.ErrorCode, nil)
	if len(r1.Members) != 2 || r1.Generation != a2.Generation+1 {
		t.Fatalf("members %d generation %d", len(r1.Members), r1.Generation)
	}
	wantCode(t, "b after being dropped", h.heartbeat(1, "g", rb.MemberID, a2.Generation), kerr.UnknownMemberID)
}

// With an initial rebalance delay, members that arrive close together end
// up in the first generation together.
func TestInitialRebalanceDelay(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = 300 * time.Millisecond })
	a := h.joinAsync(joinReq(3, "g", "", joinOpts{}))
	b := h.joinAsync(joinReq(3, "g", "", joinOpts{}))
	ra, rb := recv(t, a), recv(t, b)
	if ra.Generation != 1 || rb.Generation != 1 {
		t.Fatalf("generations %d %d, want both 1", ra.Generation, rb.Generation)
	}
	if len(ra.Members)+len(rb.Members) != 2 {
		t.Fatalf("leader saw %d members, want 2", len(ra.Members)+len(rb.Members))
	}
}

// A rebalance that starts while followers wait in SyncGroup sends them
// REBALANCE_IN_PROGRESS; a SyncGroup during PreparingRebalance gets it too.
func TestSyncInterruptedByRebalance(t *testing.T) {
	h := newHarness(t, nil)
	a := recv(t, h.joinAsync(joinReq(3, "g", "", joinOpts{})))
	b := h.joinAsync(joinReq(3, "g", "", joinOpts{}))
	h.waitState("g", "PreparingRebalance")
	a2 := recv(t, h.joinAsync(joinReq(3, "g", a.MemberID, joinOpts{})))
	rb := recv(t, b)
	sb := h.syncAsync(syncReq(2, "g", rb.MemberID, a2.Generation, nil))
	c := h.joinAsync(joinReq(3, "g", "", joinOpts{})) // new member before the leader synced
	wantCode(t, "waiting follower", recv(t, sb).ErrorCode, kerr.RebalanceInProgress)
	wantCode(t, "leader sync during PreparingRebalance",
		h.SyncGroup(t.Context(), syncReq(2, "g", a.MemberID, a2.Generation, nil)).ErrorCode, kerr.RebalanceInProgress)
	ra := h.joinAsync(joinReq(3, "g", a.MemberID, joinOpts{}))
	rb2 := h.joinAsync(joinReq(3, "g", rb.MemberID, joinOpts{}))
	for _, ch := range []<-chan *kmsg.JoinGroupResponse{ra, rb2, c} {
		r := recv(t, ch)
		wantCode(t, "rejoin", r.ErrorCode, nil)
		if r.Generation != a2.Generation+1 {
			t.Fatalf("generation %d", r.Generation)
		}
	}
}

func TestJoinErrors(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MinSessionTimeout = time.Second
		c.MaxSessionTimeout = time.Minute
	})
	h.stableGroup("existing", 1, 3, 2)
	for _, tc := range []struct {
		name string
		req  *kmsg.JoinGroupRequest
		want *kerr.Error
	}{
		{"empty group id", joinReq(3, "", "", joinOpts{}), kerr.InvalidGroupID},
		{"session too short", joinReq(3, "g", "", joinOpts{session: 500 * time.Millisecond}), kerr.InvalidSessionTimeout},
		{"session too long", joinReq(3, "g", "", joinOpts{session: 2 * time.Minute}), kerr.InvalidSessionTimeout},
		{"member id on a new group", joinReq(3, "g", "someone", joinOpts{}), kerr.UnknownMemberID},
		{"no protocols on a new group", func() *kmsg.JoinGroupRequest {
			r := joinReq(3, "g", "", joinOpts{})
			r.Protocols = nil
			return r
		}(), kerr.InconsistentGroupProtocol},
		{"other protocol type", joinReq(3, "existing", "", joinOpts{protocolType: "connect"}), kerr.InconsistentGroupProtocol},
		{"no common protocol", joinReq(3, "existing", "", joinOpts{protocols: []string{"roundrobin"}}), kerr.InconsistentGroupProtocol},
		{"unknown member of existing group", joinReq(3, "existing", "ghost", joinOpts{}), kerr.UnknownMemberID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.JoinGroup(t.Context(), tc.req)
			wantCode(t, "join", resp.ErrorCode, tc.want)
		})
	}
}

func TestHeartbeatAndSyncErrors(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2, 5, 3)
	inst := "instance-x"
	for _, tc := range []struct {
		name         string
		group        string
		member       string
		gen          int32
		instanceID   *string
		wantHB, want *kerr.Error
	}{
		{"ok", "g", ids[1], gen, nil, nil, nil},
		{"empty group id", "", ids[1], gen, nil, kerr.InvalidGroupID, kerr.InvalidGroupID},
		{"unknown group", "nope", ids[1], gen, nil, kerr.UnknownMemberID, kerr.UnknownMemberID},
		{"unknown member", "g", "ghost", gen, nil, kerr.UnknownMemberID, kerr.UnknownMemberID},
		{"old generation", "g", ids[1], gen - 1, nil, kerr.IllegalGeneration, kerr.IllegalGeneration},
		{"future generation", "g", ids[1], gen + 1, nil, kerr.IllegalGeneration, kerr.IllegalGeneration},
		{"unknown instance id is not fenced", "g", ids[1], gen, &inst, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hb := kmsg.NewPtrHeartbeatRequest()
			hb.Version = 4
			hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = tc.group, tc.member, tc.gen, tc.instanceID
			wantCode(t, "heartbeat", h.Heartbeat(t.Context(), hb).ErrorCode, tc.wantHB)
			sr := syncReq(5, tc.group, tc.member, tc.gen, nil)
			sr.InstanceID = tc.instanceID
			wantCode(t, "sync", h.SyncGroup(t.Context(), sr).ErrorCode, tc.want)
		})
	}
	t.Run("sync with another protocol", func(t *testing.T) {
		sr := syncReq(5, "g", ids[1], gen, nil)
		sr.Protocol = strPtr("roundrobin")
		wantCode(t, "sync", h.SyncGroup(t.Context(), sr).ErrorCode, kerr.InconsistentGroupProtocol)
	})
}

// Protocol selection: among the protocols every member supports, the one
// most members prefer.
func TestProtocolSelection(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = 200 * time.Millisecond })
	chans := []<-chan *kmsg.JoinGroupResponse{
		h.joinAsync(joinReq(3, "g", "", joinOpts{protocols: []string{"cooperative-sticky", "range", "roundrobin"}})),
		h.joinAsync(joinReq(3, "g", "", joinOpts{protocols: []string{"roundrobin", "range"}})),
		h.joinAsync(joinReq(3, "g", "", joinOpts{protocols: []string{"roundrobin", "range"}})),
	}
	for _, ch := range chans {
		r := recv(t, ch)
		wantCode(t, "join", r.ErrorCode, nil)
		if r.Protocol == nil || *r.Protocol != "roundrobin" {
			t.Fatalf("protocol %v, want roundrobin", r.Protocol)
		}
		if r.MemberID == r.LeaderID {
			for _, m := range r.Members {
				if string(m.ProtocolMetadata) != "meta-roundrobin" {
					t.Fatalf("leader got metadata %q for %s", m.ProtocolMetadata, m.MemberID)
				}
			}
		}
	}
}

// A follower rejoining a Stable group with unchanged metadata gets the
// current generation without a rebalance.
func TestFollowerRejoinStable(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2, 5, 3)
	r := h.JoinGroup(t.Context(), joinReq(5, "g", ids[1], joinOpts{}))
	wantCode(t, "rejoin", r.ErrorCode, nil)
	if r.Generation != gen || h.state("g") != "Stable" {
		t.Fatalf("generation %d state %s", r.Generation, h.state("g"))
	}
}

// staticPair makes group "g" Stable with two static members: the leader,
// instance lead, assigned "A", and instance other, assigned "B". It
// returns the leader's last JoinGroup answer and the other's.
func (h *harness) staticPair(lead, other string) (*kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	h.t.Helper()
	a := recv(h.t, h.joinAsync(joinReq(5, "g", "", joinOpts{instanceID: &lead})))
	wantCode(h.t, "join of "+lead, a.ErrorCode, nil)
	b := h.joinAsync(joinReq(5, "g", "", joinOpts{instanceID: &other}))
	h.waitState("g", "PreparingRebalance")
	a2 := recv(h.t, h.joinAsync(joinReq(5, "g", a.MemberID, joinOpts{instanceID: &lead})))
	rb := recv(h.t, b)
	wantCode(h.t, "join of "+other, rb.ErrorCode, nil)
	sb := h.syncAsync(syncReq(3, "g", rb.MemberID, a2.Generation, nil))
	wantCode(h.t, "leader sync", h.SyncGroup(h.t.Context(), syncReq(3, "g", a.MemberID, a2.Generation,
		map[string]string{a.MemberID: "A", rb.MemberID: "B"})).ErrorCode, nil)
	wantCode(h.t, "sync of "+other, recv(h.t, sb).ErrorCode, nil)
	return a2, rb
}

// Static membership: a restarted instance takes over its old member's place
// and assignment without a rebalance; the old member id is fenced.
func TestStaticMemberRejoin(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	i2 := "inst-2"
	a2, rb := h.staticPair("inst-1", i2)

	// Instance 2 restarts and joins with no member id.
	nb := h.JoinGroup(ctx, joinReq(5, "g", "", joinOpts{instanceID: &i2}))
	wantCode(t, "static rejoin", nb.ErrorCode, nil)
	if nb.MemberID == rb.MemberID || nb.Generation != a2.Generation {
		t.Fatalf("static rejoin: member %q (old %q) generation %d (want %d)", nb.MemberID, rb.MemberID, nb.Generation, a2.Generation)
	}
	if h.state("g") != "Stable" {
		t.Fatalf("state %s, want Stable (no rebalance)", h.state("g"))
	}
	s := h.SyncGroup(ctx, syncReq(3, "g", nb.MemberID, nb.Generation, nil))
	if s.ErrorCode != 0 || string(s.MemberAssignment) != "B" {
		t.Fatalf("sync after static rejoin: %v %q", kerr.ErrorForCode(s.ErrorCode), s.MemberAssignment)
	}
	old := kmsg.NewPtrHeartbeatRequest()
	old.Version = 3
	old.Group, old.MemberID, old.Generation, old.InstanceID = "g", rb.MemberID, a2.Generation, &i2
	wantCode(t, "old instance heartbeat", h.Heartbeat(ctx, old).ErrorCode, kerr.FencedInstanceID)

	// Leaving by instance id with a stale member id is fenced; with the right one it works.
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 4
	lr.Group = "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: rb.MemberID, InstanceID: &i2}}
	if resp := h.LeaveGroup(ctx, lr); resp.Members[0].ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("stale static leave: %v", kerr.ErrorForCode(resp.Members[0].ErrorCode))
	}
	lr.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: &i2}}
	if resp := h.LeaveGroup(ctx, lr); resp.Members[0].ErrorCode != 0 {
		t.Fatalf("static leave: %v", kerr.ErrorForCode(resp.Members[0].ErrorCode))
	}
	if h.state("g") != "PreparingRebalance" {
		t.Fatalf("state %s after static leave", h.state("g"))
	}
}

func TestListAndDescribeGroups(t *testing.T) {
	h := newHarness(t, nil)
	ctx := WithClientInfo(t.Context(), "client-1", "/127.0.0.1")
	r := h.JoinGroup(ctx, joinReq(3, "active", "", joinOpts{}))
	wantCode(t, "join", r.ErrorCode, nil)
	s := h.SyncGroup(ctx, syncReq(2, "active", r.MemberID, r.Generation, map[string]string{r.MemberID: "A"}))
	wantCode(t, "sync", s.ErrorCode, nil)
	h.Restore("offsets-only", []Offset{{Topic: "t", Partition: 0, Offset: 5, LeaderEpoch: -1}})

	for _, tc := range []struct {
		name    string
		version int16
		states  []string
		types   []string
		want    []string
	}{
		{"v0 all", 0, nil, nil, []string{"active", "offsets-only"}},
		{"v3 all", 3, nil, nil, []string{"active", "offsets-only"}},
		{"v4 stable", 4, []string{"stable"}, nil, []string{"active"}},
		{"v4 empty", 4, []string{"Empty"}, nil, []string{"offsets-only"}},
		{"v5 classic", 5, nil, []string{"Classic"}, []string{"active", "offsets-only"}},
		{"v5 consumer", 5, nil, []string{"consumer"}, nil},
	} {
		t.Run("list "+tc.name, func(t *testing.T) {
			req := kmsg.NewPtrListGroupsRequest()
			req.Version = tc.version
			req.StatesFilter = tc.states
			req.TypesFilter = tc.types
			resp := h.ListGroups(t.Context(), req)
			wantCode(t, "list", resp.ErrorCode, nil)
			var got []string
			for _, g := range resp.Groups {
				got = append(got, g.Group)
				wantType := map[string]string{"active": "consumer", "offsets-only": ""}[g.Group]
				if g.ProtocolType != wantType {
					t.Fatalf("group %s protocol type %q, want %q", g.Group, g.ProtocolType, wantType)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("groups %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("groups %v, want %v", got, tc.want)
				}
			}
		})
	}

	for _, v := range []int16{0, 4, 5, 6} {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Version = v
		req.Groups = []string{"active", "offsets-only", "missing"}
		resp := h.DescribeGroups(t.Context(), req)
		if len(resp.Groups) != 3 {
			t.Fatalf("v%d: %d groups", v, len(resp.Groups))
		}
		act, off, miss := resp.Groups[0], resp.Groups[1], resp.Groups[2]
		if act.ErrorCode != 0 || act.State != "Stable" || act.ProtocolType != "consumer" || act.Protocol != "range" || len(act.Members) != 1 {
			t.Fatalf("v%d active: %+v", v, act)
		}
		m := act.Members[0]
		if m.MemberID != r.MemberID || m.ClientID != "client-1" || m.ClientHost != "/127.0.0.1" ||
			string(m.ProtocolMetadata) != "meta-range" || string(m.MemberAssignment) != "A" {
			t.Fatalf("v%d member: %+v", v, m)
		}
		if off.ErrorCode != 0 || off.State != "Empty" || len(off.Members) != 0 {
			t.Fatalf("v%d offsets-only: %+v", v, off)
		}
		wantMissing := int16(0)
		if v >= 6 {
			wantMissing = kerr.GroupIDNotFound.Code
		}
		if miss.State != "Dead" || miss.ErrorCode != wantMissing {
			t.Fatalf("v%d missing: state %s error %v", v, miss.State, kerr.ErrorForCode(miss.ErrorCode))
		}
	}
}

// ResetMembership drops members (waiting requests get NOT_COORDINATOR) and
// keeps offsets.
func TestResetMembership(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2, 5, 3)
	h.Restore("g", []Offset{{Topic: "t", Partition: 0, Offset: 9, LeaderEpoch: -1}})
	h.stableGroup("no-offsets", 1, 5, 3)
	c := h.joinAsync(joinReq(5, "g", ids[0], joinOpts{})) // leader rejoins: rebalance pending on ids[1]
	eventually(t, waitFor, "PreparingRebalance", func() bool { return h.state("g") == "PreparingRebalance" })
	h.ResetMembership()
	wantCode(t, "waiting join", recv(t, c).ErrorCode, kerr.NotCoordinator)
	wantCode(t, "heartbeat", h.heartbeat(0, "g", ids[1], gen), kerr.UnknownMemberID)
	if h.state("g") != "Empty" || h.state("no-offsets") != "Dead" {
		t.Fatalf("states %s %s", h.state("g"), h.state("no-offsets"))
	}
	if got := h.Offsets("g"); len(got) != 1 || got[0].Offset != 9 {
		t.Fatalf("offsets after reset: %+v", got)
	}
}

// Close answers waiting joins and syncs with COORDINATOR_NOT_AVAILABLE and
// leaves no goroutine behind.
func TestCloseFailsWaitersNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := New(Config{MinSessionTimeout: time.Millisecond, InitialRebalanceDelay: time.Hour})
	ctx := context.Background()
	join := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { join <- c.JoinGroup(ctx, joinReq(3, "g", "", joinOpts{})) }()
	eventually(t, waitFor, "the join to wait", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		g := c.groups["g"]
		return g != nil && len(g.members) == 1
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "waiting join", recv(t, join).ErrorCode, kerr.CoordinatorNotAvailable)
	wantCode(t, "join after close", c.JoinGroup(ctx, joinReq(3, "g", "", joinOpts{})).ErrorCode, kerr.CoordinatorNotAvailable)
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A JoinGroup whose context ends returns; the member stays for the
// rebalance, as in Kafka.
func TestJoinContextCancelled(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = time.Hour })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { done <- h.JoinGroup(ctx, joinReq(3, "g", "", joinOpts{})) }()
	eventually(t, waitFor, "PreparingRebalance", func() bool { return h.state("g") == "PreparingRebalance" })
	cancel()
	if r := recv(t, done); r.ErrorCode == 0 {
		t.Fatalf("cancelled join returned no error")
	}
}

// Members that do not send SyncGroup within the rebalance timeout after a
// rebalance are removed; followers waiting for a missing leader are told to
// rejoin.
func TestSyncDeadlineRemovesLateMembers(t *testing.T) {
	h := newHarness(t, nil)
	opts := joinOpts{session: 10 * time.Second, rebalance: 300 * time.Millisecond}
	resps := h.grow("g", nil, 3, opts)
	resps = h.grow("g", []string{resps[0].MemberID}, 3, opts)
	leader, follower := resps[0], resps[1]
	if leader.LeaderID != leader.MemberID {
		t.Fatalf("unexpected leader %q", leader.LeaderID)
	}
	sf := h.syncAsync(syncReq(2, "g", follower.MemberID, follower.Generation, nil))
	// The leader never sends SyncGroup.
	wantCode(t, "waiting follower", recv(t, sf).ErrorCode, kerr.RebalanceInProgress)
	wantCode(t, "late leader heartbeat", h.heartbeat(2, "g", leader.MemberID, leader.Generation), kerr.UnknownMemberID)
	r := h.JoinGroup(t.Context(), joinReq(3, "g", follower.MemberID, opts))
	wantCode(t, "rejoin", r.ErrorCode, nil)
	if r.LeaderID != follower.MemberID || r.Generation != follower.Generation+1 || len(r.Members) != 1 {
		t.Fatalf("leader %q generation %d members %d", r.LeaderID, r.Generation, len(r.Members))
	}
	// Once everybody synced, the deadline no longer applies.
	wantCode(t, "sync", h.SyncGroup(t.Context(), syncReq(2, "g", r.MemberID, r.Generation, nil)).ErrorCode, nil)
	if !func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.groups["g"].syncDeadline.IsZero() }() {
		t.Fatalf("sync deadline still set in a fully synced group")
	}
}

// An inactive coordinator (this node is not the leader) answers
// NOT_COORDINATOR, lists no groups, keeps restoring offsets, and serves
// again once active.
func TestSetActive(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 1, 5, 3)
	waiting := h.joinNew(5, "g", joinOpts{})
	h.waitState("g", "PreparingRebalance")
	h.SetActive(false)
	wantCode(t, "waiting join", recv(t, waiting).ErrorCode, kerr.NotCoordinator)
	h.Restore("g", []Offset{{Topic: "t", Partition: 0, Offset: 4, LeaderEpoch: -1}})

	ctx := t.Context()
	wantCode(t, "join", h.JoinGroup(ctx, joinReq(3, "g", "", joinOpts{})).ErrorCode, kerr.NotCoordinator)
	wantCode(t, "sync", h.SyncGroup(ctx, syncReq(3, "g", ids[0], gen, nil)).ErrorCode, kerr.NotCoordinator)
	wantCode(t, "heartbeat", h.heartbeat(3, "g", ids[0], gen), kerr.NotCoordinator)
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Group, lr.MemberID = "g", ids[0]
	wantCode(t, "leave", h.LeaveGroup(ctx, lr).ErrorCode, kerr.NotCoordinator)
	cr := kmsg.NewPtrOffsetCommitRequest()
	cr.Version = 2
	cr.Group = "g"
	cr.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 9}}}}
	wantCode(t, "commit", h.OffsetCommit(ctx, cr).Topics[0].Partitions[0].ErrorCode, kerr.NotCoordinator)
	fr := kmsg.NewPtrOffsetFetchRequest()
	fr.Version = 3
	fr.Group = "g"
	wantCode(t, "fetch", h.OffsetFetch(ctx, fr).ErrorCode, kerr.NotCoordinator)
	dr := kmsg.NewPtrDescribeGroupsRequest()
	dr.Groups = []string{"g"}
	wantCode(t, "describe", h.DescribeGroups(ctx, dr).Groups[0].ErrorCode, kerr.NotCoordinator)
	if l := h.ListGroups(ctx, kmsg.NewPtrListGroupsRequest()); l.ErrorCode != 0 || len(l.Groups) != 0 {
		t.Fatalf("list while inactive: %v %v", kerr.ErrorForCode(l.ErrorCode), l.Groups)
	}

	h.SetActive(true)
	if got := h.Offsets("g"); len(got) != 1 || got[0].Offset != 4 {
		t.Fatalf("offsets: %+v", got)
	}
	if h.state("g") != "Empty" {
		t.Fatalf("state %s, want Empty", h.state("g"))
	}
	wantCode(t, "old member heartbeat", h.heartbeat(3, "g", ids[0], gen), kerr.UnknownMemberID)
	r := h.JoinGroup(ctx, joinReq(3, "g", "", joinOpts{}))
	wantCode(t, "join when active", r.ErrorCode, nil)
}
