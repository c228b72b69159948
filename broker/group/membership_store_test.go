package group

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// storePersister is a memPersister that also stores group state
// (GroupPersister), as the broker does.
type storePersister struct {
	memPersister
	smu     sync.Mutex
	states  []GroupState
	sErr    error
	sGate   chan struct{} // when set, each StoreGroup waits for a value (or ctx)
	sCalled chan struct{} // when set, each StoreGroup signals here first
}

func (p *storePersister) StoreGroup(ctx context.Context, s GroupState) error {
	p.smu.Lock()
	gate, called := p.sGate, p.sCalled
	p.smu.Unlock()
	if err := passGate(ctx, gate, called); err != nil {
		return err
	}
	p.smu.Lock()
	defer p.smu.Unlock()
	if p.sErr != nil {
		return p.sErr
	}
	p.states = append(p.states, s)
	return nil
}

func (p *storePersister) stored() []GroupState {
	p.smu.Lock()
	defer p.smu.Unlock()
	return append([]GroupState(nil), p.states...)
}

// newStoreHarness is newHarness with a persister that stores membership;
// inactive starts the coordinator as a follower's.
func newStoreHarness(t *testing.T, inactive bool) (*harness, *storePersister) {
	t.Helper()
	p := &storePersister{}
	c := New(Config{
		Logger:            hclog.New(&hclog.LoggerOptions{Name: "group", Level: hclog.Debug, Output: testLogWriter{t}}),
		Persister:         p,
		MinSessionTimeout: time.Millisecond,
		MaxSessionTimeout: time.Minute,
	})
	if inactive {
		c.SetActive(false)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &harness{Coordinator: c, t: t, p: &p.memPersister}, p
}

func describe(h *harness, name string) kmsg.DescribeGroupsResponseGroup {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{name}
	return h.DescribeGroups(h.t.Context(), req).Groups[0]
}

// A completed rebalance is stored with every member and its assignment; a
// coordinator that takes over (a promoted follower) loads it, and the
// members heartbeat and commit in the same generation with no rebalance.
func TestStoredMembershipSurvivesCoordinatorChange(t *testing.T) {
	old, p := newStoreHarness(t, false)
	ids, gen := old.stableGroup("g", 2, 5, 3)
	states := p.stored()
	if len(states) != 1 {
		t.Fatalf("%d stored states after one rebalance, want 1: %+v", len(states), states)
	}
	s := states[0]
	if s.Group != "g" || s.Generation != gen || s.Protocol != "range" || s.Leader != ids[0] || len(s.Members) != 2 {
		t.Fatalf("stored %+v, want group g generation %d protocol range leader %s with 2 members", s, gen, ids[0])
	}
	for _, m := range s.Members {
		if string(m.Assignment) != "assign-"+m.ID || string(m.Metadata) != "meta-range" || m.SessionTimeoutMs != 10000 {
			t.Fatalf("stored member %+v: want its assignment, metadata and 10 s session", m)
		}
	}

	// The follower has the state through replication; it becomes the coordinator.
	next, _ := newStoreHarness(t, true)
	next.RestoreGroup(s)
	wantCode(t, "heartbeat to an inactive coordinator", next.heartbeat(4, "g", ids[0], gen), kerr.NotCoordinator)
	next.SetActive(true)
	for _, id := range ids {
		wantCode(t, "heartbeat of "+id+" after the change", next.heartbeat(4, "g", id, gen), nil)
	}
	d := describe(next, "g")
	if d.State != "Stable" || len(d.Members) != 2 || d.Protocol != "range" {
		t.Fatalf("loaded group: state %s, %d members, protocol %q; want Stable, 2, range", d.State, len(d.Members), d.Protocol)
	}
	for _, m := range d.Members {
		if string(m.MemberAssignment) != "assign-"+m.MemberID {
			t.Fatalf("member %s: assignment %q after the change", m.MemberID, m.MemberAssignment)
		}
	}
	// A SyncGroup retried for the generation gets the stored assignment.
	r := next.SyncGroup(t.Context(), syncReq(3, "g", ids[1], gen, nil))
	wantCode(t, "sync after the change", r.ErrorCode, nil)
	if string(r.MemberAssignment) != "assign-"+ids[1] {
		t.Fatalf("sync after the change: assignment %q", r.MemberAssignment)
	}
	// Offsets commit in the same generation.
	commitOffset(next, "g", ids[0], gen, "t", 42)

	// A new member still rebalances the loaded group, to the next generation.
	resps := next.grow("g", ids, 5, joinOpts{})
	if got := resps[0].Generation; got != gen+1 {
		t.Fatalf("rebalance after the change: generation %d, want %d", got, gen+1)
	}
}

// A loaded member that never heartbeats is removed after its session
// timeout, counted from the load, and the group rebalances without it.
func TestLoadedMemberExpires(t *testing.T) {
	h, _ := newStoreHarness(t, true)
	h.RestoreGroup(GroupState{Group: "g", Generation: 7, ProtocolType: "consumer", Protocol: "range", Leader: "a",
		Members: []MemberState{
			{ID: "a", ClientID: "c", SessionTimeoutMs: 60000, RebalanceTimeoutMs: 60000, Metadata: []byte("meta-range"), Assignment: []byte("x")},
			{ID: "b", ClientID: "c", SessionTimeoutMs: 200, RebalanceTimeoutMs: 60000, Metadata: []byte("meta-range"), Assignment: []byte("y")},
		}})
	h.SetActive(true)
	wantCode(t, "heartbeat of a", h.heartbeat(4, "g", "a", 7), nil)
	h.waitState("g", "PreparingRebalance") // b's 200 ms session ran out
	wantCode(t, "heartbeat of a during the rebalance", h.heartbeat(4, "g", "a", 7), kerr.RebalanceInProgress)
	r := recv(t, h.joinAsync(joinReq(5, "g", "a", joinOpts{})))
	wantCode(t, "rejoin of a", r.ErrorCode, nil)
	if r.Generation != 8 || r.LeaderID != "a" || len(r.Members) != 1 {
		t.Fatalf("rejoin: generation %d leader %q members %d; want 8, a, 1", r.Generation, r.LeaderID, len(r.Members))
	}
}

// The group becomes Stable, and SyncGroup is answered, only once its state
// is stored; a store that fails sends the members back to rejoin.
func TestSyncWaitsForStore(t *testing.T) {
	h, p := newStoreHarness(t, false)
	p.sGate = make(chan struct{})
	p.sCalled = make(chan struct{}, 4)
	rs := h.grow("g", nil, 5, joinOpts{})
	id, gen := rs[0].MemberID, rs[0].Generation
	sync := h.syncAsync(syncReq(3, "g", id, gen, map[string]string{id: "mine"}))
	recv(t, p.sCalled)
	notReady(t, sync)
	if st := h.state("g"); st != "CompletingRebalance" {
		t.Fatalf("state while storing: %s, want CompletingRebalance", st)
	}
	p.sGate <- struct{}{}
	r := recv(t, sync)
	wantCode(t, "sync", r.ErrorCode, nil)
	if string(r.MemberAssignment) != "mine" || h.state("g") != "Stable" {
		t.Fatalf("after the store: assignment %q state %s", r.MemberAssignment, h.state("g"))
	}

	// Next generation: the store fails.
	p.smu.Lock()
	p.sGate, p.sErr = nil, kerr.NotEnoughReplicas
	p.smu.Unlock()
	rs = h.grow("g", []string{id}, 5, joinOpts{})
	gen2 := rs[0].Generation
	var other <-chan *kmsg.SyncGroupResponse
	leader := rs[0].LeaderID
	for _, jr := range rs {
		if jr.MemberID != leader {
			other = h.syncAsync(syncReq(3, "g", jr.MemberID, gen2, nil))
			eventually(t, waitFor, "the member's SyncGroup waiting", func() bool {
				h.mu.Lock()
				defer h.mu.Unlock()
				return h.groups["g"].members[jr.MemberID].syncCh != nil
			})
		}
	}
	lr := h.SyncGroup(t.Context(), syncReq(3, "g", leader, gen2, map[string]string{leader: "l"}))
	wantCode(t, "leader sync with a failed store", lr.ErrorCode, kerr.CoordinatorNotAvailable)
	wantCode(t, "member sync with a failed store", recv(t, other).ErrorCode, kerr.CoordinatorNotAvailable)
	if st := h.state("g"); st != "PreparingRebalance" {
		t.Fatalf("after a failed store: %s, want PreparingRebalance", st)
	}
	if n := len(p.stored()); n != 1 {
		t.Fatalf("%d states stored, want only the first", n)
	}
}

// A group whose members all left is stored Empty; a coordinator that loads
// it has no members to wait for, and, as the group keeps its committed
// offsets, its generations go on from the stored one.
func TestEmptyGroupStored(t *testing.T) {
	h, p := newStoreHarness(t, false)
	ids, gen := h.stableGroup("g", 1, 5, 3)
	offs := []Offset{{Topic: "t", Partition: 0, Offset: 5, LeaderEpoch: -1}}
	h.Restore("g", offs)
	lg := kmsg.NewPtrLeaveGroupRequest()
	lg.Version, lg.Group, lg.MemberID = 1, "g", ids[0]
	wantCode(t, "leave", h.LeaveGroup(t.Context(), lg).ErrorCode, nil)
	eventually(t, waitFor, "the empty group stored", func() bool {
		st := p.stored()
		return len(st) == 2 && len(st[1].Members) == 0
	})
	empty := p.stored()[1]
	if empty.Generation <= gen {
		t.Fatalf("empty group stored at generation %d, want after %d", empty.Generation, gen)
	}

	next, _ := newStoreHarness(t, true)
	next.Restore("g", offs)
	for _, s := range p.stored() {
		next.RestoreGroup(s) // in WAL order: the empty state replaces the stable one
	}
	next.SetActive(true)
	wantCode(t, "heartbeat of the member that left", next.heartbeat(4, "g", ids[0], gen), kerr.UnknownMemberID)
	rs := next.grow("g", nil, 5, joinOpts{})
	if rs[0].Generation != empty.Generation+1 {
		t.Fatalf("first generation after the change: %d, want %d", rs[0].Generation, empty.Generation+1)
	}
}

// Without a GroupPersister nothing waits: SyncGroup completes at once.
func TestNoGroupStoreCompletesAtOnce(t *testing.T) {
	h := newHarness(t, nil)
	if h.groupStore != nil {
		t.Fatal("memPersister taken for a GroupPersister")
	}
	h.stableGroup("g", 2, 5, 3)
	if st := h.state("g"); st != "Stable" {
		t.Fatalf("state %s", st)
	}
}

// A static member that restarts takes its place under a new member id with
// no rebalance; that id is stored before JoinGroup answers, so the
// coordinator that takes over knows the instance by it (and fences the old
// one) instead of fencing the running instance.
func TestStaticRejoinStoredBeforeAnswer(t *testing.T) {
	h, p := newStoreHarness(t, false)
	inst := "inst-2" // not the leader: a leader rejoining would rebalance
	_, j := h.staticPair("inst-1", inst)

	p.smu.Lock()
	p.sGate, p.sCalled = make(chan struct{}), make(chan struct{}, 1)
	p.smu.Unlock()
	rejoin := h.joinAsync(joinReq(5, "g", "", joinOpts{instanceID: &inst}))
	recv(t, p.sCalled)
	notReady(t, rejoin) // answered only once stored
	p.sGate <- struct{}{}
	r := recv(t, rejoin)
	wantCode(t, "static rejoin", r.ErrorCode, nil)
	if r.MemberID == j.MemberID || r.Generation != j.Generation {
		t.Fatalf("static rejoin: member %q (was %q), generation %d (was %d)", r.MemberID, j.MemberID, r.Generation, j.Generation)
	}
	states := p.stored()
	last := states[len(states)-1]
	if len(last.Members) != 2 || last.Members[1].ID != r.MemberID || last.Members[1].InstanceID != inst ||
		string(last.Members[1].Assignment) != "B" {
		t.Fatalf("stored after the static rejoin: %+v, want member %s of %s with assignment B", last.Members, r.MemberID, inst)
	}

	next, _ := newStoreHarness(t, true)
	next.RestoreGroup(last)
	next.SetActive(true)
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version, hb.Group, hb.Generation, hb.InstanceID = 3, "g", r.Generation, &inst
	hb.MemberID = r.MemberID
	wantCode(t, "heartbeat of the running instance after the change", next.Heartbeat(t.Context(), hb).ErrorCode, nil)
	hb.MemberID = j.MemberID
	wantCode(t, "heartbeat of the replaced member id", next.Heartbeat(t.Context(), hb).ErrorCode, kerr.FencedInstanceID)

	// A failed store answers the join with the error; the instance retries.
	p.smu.Lock()
	p.sGate, p.sCalled, p.sErr = nil, nil, kerr.NotLeaderForPartition
	p.smu.Unlock()
	f := recv(t, h.joinAsync(joinReq(5, "g", "", joinOpts{instanceID: &inst})))
	wantCode(t, "static rejoin with a failed store", f.ErrorCode, kerr.NotCoordinator)
}
