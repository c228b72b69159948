package group

import (
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// testClock is a settable Config.Now.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// longMember makes a one-member group whose member's session (20 days)
// outlasts the test clock's jumps, and returns its id and generation.
func longMember(h *harness, group string) (string, int32) {
	h.t.Helper()
	r := recv(h.t, h.joinNew(5, group, joinOpts{session: 20 * 24 * time.Hour}))
	wantCode(h.t, "join "+group, r.ErrorCode, nil)
	s := h.SyncGroup(h.t.Context(), syncReq(3, group, r.MemberID, r.Generation, map[string]string{r.MemberID: "x"}))
	wantCode(h.t, "sync "+group, s.ErrorCode, nil)
	return r.MemberID, r.Generation
}

func commitOffset(h *harness, group, member string, gen int32, topic string, offset int64) {
	h.t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.MemberID, req.Generation = 8, group, member, gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Offset = offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	wantCode(h.t, "commit "+group+" "+topic, h.OffsetCommit(h.t.Context(), req).Topics[0].Partitions[0].ErrorCode, nil)
}

// Offsets expire as in Kafka (KIP-211): an Empty consumer group's all at
// once, the retention after it became empty; offsets committed outside
// membership one by one, the retention after their last commit; never
// those of a group with members.
func TestExpireOffsets(t *testing.T) {
	const retention = 7 * 24 * time.Hour
	clock := &testClock{now: time.Unix(1_700_000_000, 0)}
	h := newHarness(t, func(c *Config) { c.Now, c.MaxSessionTimeout = clock.Now, 365*24*time.Hour })
	ctx := t.Context()

	// "active" keeps a member; "left" has one that leaves.
	active, gen := longMember(h, "active")
	commitOffset(h, "active", active, gen, "t", 10)
	left, lgen := longMember(h, "left")
	commitOffset(h, "left", left, lgen, "t", 20)
	commitOffset(h, "left", left, lgen, "u", 21)
	// "standalone" commits with no membership (generation -1), twice.
	commitOffset(h, "standalone", "", -1, "old", 30)
	clock.advance(2 * 24 * time.Hour)
	commitOffset(h, "standalone", "", -1, "new", 31)

	lg := kmsg.NewPtrLeaveGroupRequest()
	lg.Version, lg.Group, lg.MemberID = 1, "left", left
	wantCode(t, "leave", h.LeaveGroup(ctx, lg).ErrorCode, nil)
	h.waitState("left", "Empty")

	expire := func() int {
		t.Helper()
		n, err := h.ExpireOffsets(ctx, retention)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := expire(); n != 0 {
		t.Fatalf("expired %d offsets before any retention passed", n)
	}
	clock.advance(5*24*time.Hour + time.Minute) // "old" is 7 days old, "new" 5, "left" empty for 5
	if n := expire(); n != 1 || len(h.Offsets("standalone")) != 1 || h.Offsets("standalone")[0].Topic != "new" {
		t.Fatalf("after 7 days: expired %d, standalone keeps %+v; want only the 7-day-old offset gone", n, h.Offsets("standalone"))
	}
	clock.advance(2 * 24 * time.Hour) // "left" empty for 7 days, "new" 7 days old
	if n := expire(); n != 3 {
		t.Fatalf("after 9 days: expired %d offsets, want the left group's 2 and the standalone's last", n)
	}
	if o := h.Offsets("left"); o != nil {
		t.Fatalf("the empty group keeps %+v", o)
	}
	if h.state("left") != "Dead" || h.state("standalone") != "Dead" {
		t.Fatalf("groups left with nothing: %s, %s; want them forgotten (Dead)", h.state("left"), h.state("standalone"))
	}
	wantCode(t, "heartbeat of the member", h.heartbeat(4, "active", active, gen), nil)
	if o := h.Offsets("active"); len(o) != 1 || o[0].Offset != 10 {
		t.Fatalf("the group with a member keeps %+v, want its offset 10", o)
	}
	// The tombstones went through the Persister, as OffsetDelete's do.
	var tombs int
	for _, call := range h.p.snapshot() {
		for _, o := range call.offsets {
			if o.Offset < 0 {
				tombs++
			}
		}
	}
	if tombs != 4 {
		t.Fatalf("%d tombstones persisted, want 4", tombs)
	}

	// An inactive coordinator (a follower) expires nothing.
	commitOffset(h, "standalone", "", -1, "again", 40)
	h.SetActive(false)
	clock.advance(30 * 24 * time.Hour)
	if n := expire(); n != 0 {
		t.Fatalf("an inactive coordinator expired %d offsets", n)
	}
}

// When an Empty group is stored, so is when it became empty: a coordinator
// that takes over expires its offsets counting from then, not from their
// commit (3 days earlier here) nor from when it took over.
func TestExpiryCountsFromStoredEmptySince(t *testing.T) {
	clock := &testClock{now: time.Unix(1_700_000_000, 0)}
	p := &storePersister{}
	h := newHarness(t, func(c *Config) { c.Now, c.Persister, c.MaxSessionTimeout = clock.Now, p, 365*24*time.Hour })
	id, gen := longMember(h, "g")
	commitOffset(h, "g", id, gen, "t", 7)
	clock.advance(3 * 24 * time.Hour)
	lg := kmsg.NewPtrLeaveGroupRequest()
	lg.Version, lg.Group, lg.MemberID = 1, "g", id
	wantCode(t, "leave", h.LeaveGroup(t.Context(), lg).ErrorCode, nil)
	eventually(t, waitFor, "the empty group stored", func() bool {
		st := p.stored()
		return len(st) == 2 && st[1].EmptySinceMs == clock.Now().UnixMilli()
	})

	clock.advance(6 * 24 * time.Hour) // the offset is 9 days old
	next := newHarness(t, func(c *Config) { c.Now = clock.Now })
	next.SetActive(false)
	// What replication brought: the offset and the states.
	next.Restore("g", p.snapshot()[0].offsets)
	for _, s := range p.stored() {
		next.RestoreGroup(s)
	}
	next.SetActive(true)
	if n, _ := next.ExpireOffsets(t.Context(), 7*24*time.Hour); n != 0 {
		t.Fatalf("expired %d offsets of a group empty for 6 days", n)
	}
	clock.advance(24*time.Hour + time.Second)
	if n, _ := next.ExpireOffsets(t.Context(), 7*24*time.Hour); n != 1 {
		t.Fatalf("expired %d offsets of a group empty for 7 days, want 1", n)
	}
}
