package group

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// topicList is the broker's topics as the coordinator sees them.
type topicList struct {
	mu     sync.Mutex
	topics []TopicInfo
}

func (l *topicList) get() []TopicInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.topics)
}

func (l *topicList) set(ts ...TopicInfo) {
	l.mu.Lock()
	l.topics = ts
	l.mu.Unlock()
}

func topicID(name string) [16]byte {
	var id [16]byte
	copy(id[:], name)
	return id
}

func topic(name string, n int32) TopicInfo {
	return TopicInfo{Name: name, ID: topicID(name), Partitions: n}
}

type cgHarness struct {
	*Coordinator
	t      *testing.T
	p      *storePersister
	topics *topicList
}

func newCGHarness(t *testing.T, topics *topicList, mod func(*Config)) *cgHarness {
	t.Helper()
	p := &storePersister{}
	cfg := Config{
		Logger:                    hclog.New(&hclog.LoggerOptions{Name: "group", Level: hclog.Debug, Output: testLogWriter{t}}),
		Persister:                 p,
		Topics:                    topics.get,
		ConsumerSessionTimeout:    time.Minute,
		ConsumerHeartbeatInterval: 100 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	c := New(cfg)
	t.Cleanup(func() { _ = c.Close() })
	return &cgHarness{Coordinator: c, t: t, p: p, topics: topics}
}

// hb sends one heartbeat; owned nil means a keepalive that says nothing
// about owned partitions.
type hbOpts struct {
	topics   []string
	regex    string
	assignor string
	instance string
	owned    map[string][]int32 // by topic name; nil: not sent
	// rebalanceMs is sent when set, or (60 s) with a subscription: a
	// heartbeat with both, and owned, is a full request.
	rebalanceMs int32
}

func (h *cgHarness) hb(member string, epoch int32, o hbOpts) *kmsg.ConsumerGroupHeartbeatResponse {
	h.t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version = 1
	req.Group = "g"
	req.MemberID = member
	req.MemberEpoch = epoch
	req.RebalanceTimeoutMillis = -1
	if epoch == 0 {
		req.RebalanceTimeoutMillis = 60000
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	}
	if o.topics != nil {
		req.SubscribedTopicNames = o.topics
		req.RebalanceTimeoutMillis = 60000
	}
	if o.rebalanceMs > 0 {
		req.RebalanceTimeoutMillis = o.rebalanceMs
	}
	if o.regex != "" {
		req.SubscribedTopicRegex = &o.regex
	}
	if o.assignor != "" {
		req.ServerAssignor = &o.assignor
	}
	if o.instance != "" {
		req.InstanceID = &o.instance
	}
	if o.owned != nil {
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		for name, ps := range o.owned {
			req.Topics = append(req.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: topicID(name), Partitions: ps})
		}
	}
	return h.ConsumerGroupHeartbeat(context.Background(), req)
}

// assigned returns a heartbeat answer's assignment by topic name, or nil
// when the answer carries none.
func assigned(resp *kmsg.ConsumerGroupHeartbeatResponse) map[string][]int32 {
	if resp.Assignment == nil {
		return nil
	}
	out := map[string][]int32{}
	for _, t := range resp.Assignment.Topics {
		name := string(t.TopicID[:])
		for i, b := range t.TopicID {
			if b == 0 {
				name = string(t.TopicID[:i])
				break
			}
		}
		out[name] = append(out[name], t.Partitions...)
	}
	return out
}

func wantHB(t *testing.T, resp *kmsg.ConsumerGroupHeartbeatResponse, want *kerr.Error) {
	t.Helper()
	if resp.ErrorCode != want.Code && !(want == nil && resp.ErrorCode == 0) {
		t.Fatalf("heartbeat answered %v (%s), want %v", kerr.ErrorForCode(resp.ErrorCode), derefOr(resp.ErrorMessage, ""), want)
	}
}

func ok(t *testing.T, resp *kmsg.ConsumerGroupHeartbeatResponse) *kmsg.ConsumerGroupHeartbeatResponse {
	t.Helper()
	if resp.ErrorCode != 0 {
		t.Fatalf("heartbeat answered %v: %s", kerr.ErrorForCode(resp.ErrorCode), derefOr(resp.ErrorMessage, ""))
	}
	return resp
}

// A member joining a group whose partitions another member holds gets
// them only once that member has stopped listing them as owned; the other
// member keeps its epoch until then, is never fenced, and keeps consuming
// the partitions it keeps.
func TestConsumerGroupRevokesBeforeAssigning(t *testing.T) {
	topics := &topicList{}
	topics.set(topic("t", 4))
	h := newCGHarness(t, topics, nil)
	sub := hbOpts{topics: []string{"t"}}

	a := ok(t, h.hb("A", 0, sub))
	if a.MemberEpoch != 1 || !slices.Equal(assigned(a)["t"], []int32{0, 1, 2, 3}) {
		t.Fatalf("A joined at epoch %d with %v, want epoch 1 with all four", a.MemberEpoch, assigned(a))
	}
	b := ok(t, h.hb("B", 0, sub))
	if b.MemberEpoch != 2 || len(assigned(b)["t"]) != 0 {
		t.Fatalf("B joined at epoch %d with %v, want epoch 2 with nothing yet (A holds everything)", b.MemberEpoch, assigned(b))
	}
	// A keepalive (owned not said): A is told to give two up and stays at 1.
	a = ok(t, h.hb("A", 1, hbOpts{}))
	keep := assigned(a)["t"]
	if a.MemberEpoch != 1 || len(keep) != 2 {
		t.Fatalf("A at epoch %d told %v, want epoch 1 and two partitions", a.MemberEpoch, assigned(a))
	}
	if got := h.describe(t).Members; got[0].MemberEpoch != 1 {
		t.Fatalf("A's epoch %d while revoking, want 1", got[0].MemberEpoch)
	}
	b = ok(t, h.hb("B", 2, hbOpts{}))
	if len(assigned(b)["t"]) != 0 && b.Assignment != nil {
		t.Fatalf("B got %v while A still holds it", assigned(b))
	}
	// A says it still owns all four: nothing moves.
	a = ok(t, h.hb("A", 1, hbOpts{owned: map[string][]int32{"t": {0, 1, 2, 3}}}))
	if a.MemberEpoch != 1 {
		t.Fatalf("A moved to epoch %d while still owning the revoked partitions", a.MemberEpoch)
	}
	// A released them: it moves to epoch 2, B gets the other two.
	a = ok(t, h.hb("A", 1, hbOpts{owned: map[string][]int32{"t": keep}}))
	if a.MemberEpoch != 2 {
		t.Fatalf("A at epoch %d after releasing, want 2", a.MemberEpoch)
	}
	b = ok(t, h.hb("B", 2, hbOpts{}))
	got := assigned(b)["t"]
	if len(got) != 2 || slices.ContainsFunc(got, func(p int32) bool { return slices.Contains(keep, p) }) {
		t.Fatalf("B got %v, A keeps %v: want the other two", got, keep)
	}
	if d := h.describe(t); d.State != "Stable" || d.Epoch != 2 || d.AssignmentEpoch != 2 {
		t.Fatalf("group %s at epoch %d/%d, want Stable at 2/2", d.State, d.Epoch, d.AssignmentEpoch)
	}
}

func (h *cgHarness) describe(t *testing.T) kmsg.ConsumerGroupDescribeResponseGroup {
	t.Helper()
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Version = 1
	req.Groups = []string{"g"}
	resp := h.ConsumerGroupDescribe(context.Background(), req)
	if len(resp.Groups) != 1 {
		t.Fatalf("describe answered %d groups", len(resp.Groups))
	}
	return resp.Groups[0]
}

// Member epochs: a member ahead of the coordinator, or behind it by more
// than one lost answer, is fenced; one that missed the answer that moved
// it (the epoch before, owning only what it has) is taken back.
func TestConsumerGroupFencing(t *testing.T) {
	topics := &topicList{}
	topics.set(topic("t", 2))
	h := newCGHarness(t, topics, nil)
	sub := hbOpts{topics: []string{"t"}}
	ok(t, h.hb("A", 0, sub))                                         // epoch 1, both partitions
	ok(t, h.hb("B", 0, sub))                                         // epoch 2
	ok(t, h.hb("A", 1, hbOpts{owned: map[string][]int32{"t": {0}}})) // releases 1 at once: epoch 2
	wantHB(t, h.hb("A", 3, hbOpts{}), kerr.FencedMemberEpoch)
	// The answer that moved A to 2 was lost: epoch 1 owning {0} is fine.
	if r := ok(t, h.hb("A", 1, hbOpts{topics: []string{"t"}, owned: map[string][]int32{"t": {0}}})); r.MemberEpoch != 2 {
		t.Fatalf("A retried with its previous epoch and got %d, want 2", r.MemberEpoch)
	}
	// Epoch 1 while owning a partition that is not its own: fenced.
	wantHB(t, h.hb("A", 1, hbOpts{owned: map[string][]int32{"t": {0, 1}}}), kerr.FencedMemberEpoch)
	// Epoch 1 without saying what it owns: fenced.
	wantHB(t, h.hb("A", 1, hbOpts{}), kerr.FencedMemberEpoch)
	wantHB(t, h.hb("nobody", 4, hbOpts{}), kerr.UnknownMemberID)
	// Rejoining with epoch 0 under the same id re-sends its partitions.
	r := ok(t, h.hb("A", 0, sub))
	if r.MemberEpoch != 2 || !slices.Equal(assigned(r)["t"], []int32{0}) {
		t.Fatalf("A rejoined at %d with %v, want 2 with [0]", r.MemberEpoch, assigned(r))
	}
}

// Offset commits and fetches from a member of a consumer group carry its
// member epoch, as Kafka checks them.
func TestConsumerGroupOffsetCommitEpochs(t *testing.T) {
	topics := &topicList{}
	topics.set(topic("t", 1))
	h := newCGHarness(t, topics, nil)
	ok(t, h.hb("A", 0, hbOpts{topics: []string{"t"}}))
	commit := func(version int16, member string, epoch int32) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version, req.Group, req.MemberID, req.Generation = version, "g", member, epoch
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "t"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Offset = 7
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return h.OffsetCommit(context.Background(), req).Topics[0].Partitions[0].ErrorCode
	}
	wantCode(t, "v8 commit from a consumer-protocol member", commit(8, "A", 1), kerr.UnsupportedVersion)
	wantCode(t, "commit with another epoch", commit(9, "A", 2), kerr.StaleMemberEpoch)
	wantCode(t, "commit from an unknown member", commit(9, "B", 1), kerr.UnknownMemberID)
	wantCode(t, "simple commit into a group with members", commit(9, "", -1), kerr.UnknownMemberID)
	wantCode(t, "commit with the member's epoch", commit(9, "A", 1), nil)

	fetch := func(member *string, epoch int32) *kmsg.OffsetFetchResponseGroup {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version = 9
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group, rg.MemberID, rg.MemberEpoch = "g", member, epoch
		req.Groups = append(req.Groups, rg)
		return &h.OffsetFetch(context.Background(), req).Groups[0]
	}
	a := "A"
	wantCode(t, "fetch with a stale epoch", fetch(&a, 0).ErrorCode, kerr.StaleMemberEpoch)
	if g := fetch(&a, 1); g.ErrorCode != 0 || g.Topics[0].Partitions[0].Offset != 7 {
		t.Fatalf("fetch with the member's epoch: %+v", g)
	}
	if g := fetch(nil, -1); g.ErrorCode != 0 || g.Topics[0].Partitions[0].Offset != 7 {
		t.Fatalf("fetch naming no member: %+v", g)
	}

	// Its subscribed topic's offsets cannot be deleted while it is there.
	del := kmsg.NewPtrOffsetDeleteRequest()
	del.Group = "g"
	del.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	if r := h.OffsetDelete(context.Background(), del); r.ErrorCode != 0 || r.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code {
		t.Fatalf("OffsetDelete of a subscribed topic: %v / %v, want GROUP_SUBSCRIBED_TO_TOPIC",
			kerr.ErrorForCode(r.ErrorCode), kerr.ErrorForCode(r.Topics[0].Partitions[0].ErrorCode))
	}

	// Once the member left, a simple commit is fine again.
	ok(t, h.hb("A", leaveEpoch, hbOpts{}))
	wantCode(t, "simple commit into the empty group", commit(9, "", -1), nil)
}

// A member that stops heartbeating is removed after the session timeout,
// one that does not release partitions after its rebalance timeout, and
// the others get their partitions.
func TestConsumerGroupTimeouts(t *testing.T) {
	topics := &topicList{}
	topics.set(topic("t", 2))
	h := newCGHarness(t, topics, func(c *Config) { c.ConsumerSessionTimeout = 400 * time.Millisecond })
	sub := hbOpts{topics: []string{"t"}}
	ok(t, h.hb("A", 0, sub))
	ok(t, h.hb("B", 0, sub))
	// B keeps heartbeating; A stops.
	deadline := time.Now().Add(waitFor)
	for {
		d := h.describe(t)
		if len(d.Members) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A still in the group: %+v", d.Members)
		}
		h.hb("B", d.Members[len(d.Members)-1].MemberEpoch, hbOpts{})
		time.Sleep(50 * time.Millisecond)
	}
	r := ok(t, h.hb("B", h.describe(t).Members[0].MemberEpoch, hbOpts{}))
	if got := assigned(r)["t"]; len(got) != 2 {
		t.Fatalf("B holds %v after A's session expired, want both partitions", got)
	}

	// A member that is told to release but keeps owning is removed once
	// its rebalance timeout (here 300 ms) has passed.
	bEpoch := h.memberEpoch("B")
	ok(t, h.hb("B", bEpoch, hbOpts{topics: []string{"t"}, rebalanceMs: 300, owned: map[string][]int32{"t": {0, 1}}}))
	ok(t, h.hb("C", 0, hbOpts{topics: []string{"t"}}))
	owned := map[string][]int32{"t": {0, 1}}
	deadline = time.Now().Add(waitFor)
	for {
		r := h.hb("B", bEpoch, hbOpts{owned: owned})
		if r.ErrorCode != 0 {
			break // B was removed
		}
		h.hb("C", h.memberEpoch("C"), hbOpts{})
		if time.Now().After(deadline) {
			t.Fatal("B was never removed for not releasing its partitions")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := ok(t, h.hb("C", h.memberEpoch("C"), hbOpts{topics: []string{"t"}, owned: map[string][]int32{}}))
	if got := assigned(c)["t"]; len(got) != 2 {
		t.Fatalf("C holds %v, want both", got)
	}
	if d := h.describe(t); len(d.Members) != 1 || d.Members[0].MemberID != "C" || len(d.Members[0].Assignment.TopicPartitions[0].Partitions) != 2 {
		t.Fatalf("group after B's removal: %+v", d.Members)
	}
}

func (h *cgHarness) memberEpoch(id string) int32 {
	for _, m := range h.describe(h.t).Members {
		if m.MemberID == id {
			return m.MemberEpoch
		}
	}
	return -1
}

// A static member that leaves with epoch -2 keeps its partitions until it
// comes back under a new member id, which takes them over without a new
// group epoch; another instance with the same id is refused meanwhile.
func TestConsumerGroupStaticMember(t *testing.T) {
	topics := &topicList{}
	topics.set(topic("t", 4))
	h := newCGHarness(t, topics, nil)
	ok(t, h.hb("A", 0, hbOpts{topics: []string{"t"}, instance: "i1"}))
	ok(t, h.hb("B", 0, hbOpts{topics: []string{"t"}}))
	ok(t, h.hb("A", 1, hbOpts{instance: "i1", owned: map[string][]int32{}}))
	b := ok(t, h.hb("B", 2, hbOpts{}))
	bHas := assigned(b)["t"]
	a := ok(t, h.hb("A", 2, hbOpts{instance: "i1", topics: []string{"t"}, owned: map[string][]int32{}}))
	aHas := assigned(a)["t"]
	if len(aHas) != 2 || len(bHas) != 2 {
		t.Fatalf("A has %v, B %v: want two each", aHas, bHas)
	}
	wantHB(t, h.hb("A2", 0, hbOpts{topics: []string{"t"}, instance: "i1"}), kerr.UnreleasedInstanceID)
	// A dynamic member cannot leave as a static one; a static member may
	// leave without repeating its instance id (franz-go v1.22 does so).
	wantHB(t, h.hb("B", staticLeaveEpoch, hbOpts{}), kerr.InvalidRequest)
	if r := ok(t, h.hb("A", staticLeaveEpoch, hbOpts{})); r.MemberEpoch != staticLeaveEpoch {
		t.Fatalf("static leave answered epoch %d", r.MemberEpoch)
	}
	epoch := h.describe(t).Epoch
	r := ok(t, h.hb("A2", 0, hbOpts{topics: []string{"t"}, instance: "i1"}))
	if !slices.Equal(assigned(r)["t"], aHas) || r.MemberEpoch != epoch {
		t.Fatalf("the instance came back with %v at epoch %d; want %v at %d", assigned(r), r.MemberEpoch, aHas, epoch)
	}
	if d := h.describe(t); d.Epoch != epoch || len(d.Members) != 2 {
		t.Fatalf("group at epoch %d with %d members after the instance returned; want %d and 2", d.Epoch, len(d.Members), epoch)
	}
	wantHB(t, h.hb("A", epoch, hbOpts{instance: "i1"}), kerr.UnknownMemberID)
}

// New partitions of a subscribed topic, a new topic matching a regex and
// a deleted topic each move the group to a new epoch with a new target.
func TestConsumerGroupFollowsTopics(t *testing.T) {
	topics := &topicList{}
	topics.set(topic("orders-eu", 2))
	h := newCGHarness(t, topics, nil)
	r := ok(t, h.hb("A", 0, hbOpts{regex: "orders-.*"}))
	if got := assigned(r); len(got["orders-eu"]) != 2 {
		t.Fatalf("A got %v, want orders-eu's two partitions", got)
	}
	topics.set(topic("orders-eu", 3), topic("orders-us", 1), topic("other", 5))
	r = ok(t, h.hb("A", r.MemberEpoch, hbOpts{}))
	if got := assigned(r); r.MemberEpoch != 2 || len(got["orders-eu"]) != 3 || len(got["orders-us"]) != 1 || len(got["other"]) != 0 {
		t.Fatalf("after new topics and partitions A has %v at epoch %d; want orders-eu 3, orders-us 1 at 2", got, r.MemberEpoch)
	}
	topics.set(topic("orders-us", 1), topic("other", 5))
	r = ok(t, h.hb("A", r.MemberEpoch, hbOpts{owned: map[string][]int32{"orders-us": {0}}}))
	if got := assigned(r); r.MemberEpoch != 3 || len(got["orders-eu"]) != 0 || len(got["orders-us"]) != 1 {
		t.Fatalf("after orders-eu was deleted A has %v at epoch %d", got, r.MemberEpoch)
	}
}

// Requests the coordinator cannot take get Kafka's errors, and a group
// stays of one protocol while it has members.
func TestConsumerGroupBadRequests(t *testing.T) {
	topics := &topicList{}
	topics.set(topic("t", 1))
	h := newCGHarness(t, topics, nil)
	wantHB(t, h.hb("A", 0, hbOpts{regex: "(unclosed"}), kerr.InvalidRegularExpression)
	wantHB(t, h.hb("A", 0, hbOpts{topics: []string{"t"}, assignor: "cooperative-sticky"}), kerr.UnsupportedAssignor)
	wantHB(t, h.hb("A", 0, hbOpts{}), kerr.InvalidRequest) // no subscription
	wantHB(t, h.hb("A", 0, hbOpts{topics: []string{"t"}, owned: map[string][]int32{"t": {0}}}), kerr.InvalidRequest)
	wantHB(t, h.hb("", 0, hbOpts{topics: []string{"t"}}), kerr.InvalidRequest)
	wantHB(t, h.hb("A", -3, hbOpts{}), kerr.InvalidRequest)

	ok(t, h.hb("A", 0, hbOpts{topics: []string{"t"}}))
	join := joinReq(9, "g", "", joinOpts{})
	jr := h.JoinGroup(context.Background(), join)
	wantCode(t, "classic JoinGroup to a consumer group", jr.ErrorCode, kerr.InconsistentGroupProtocol)
	ok(t, h.hb("A", leaveEpoch, hbOpts{}))

	// The empty group becomes classic, and then refuses the consumer protocol.
	jr = h.JoinGroup(context.Background(), joinReq(3, "g", "", joinOpts{}))
	wantCode(t, "classic JoinGroup to an empty consumer group", jr.ErrorCode, nil)
	wantHB(t, h.hb("B", 0, hbOpts{topics: []string{"t"}}), kerr.GroupIDNotFound)
}

// The group's state is stored whenever it changes, and a coordinator
// that loads it (a restarted broker, a promoted follower) carries on with
// the same members, epochs and assignments.
func TestConsumerGroupStoredAndLoaded(t *testing.T) {
	topics := &topicList{}
	topics.set(topic("t", 4))
	h := newCGHarness(t, topics, nil)
	sub := hbOpts{topics: []string{"t"}}
	ok(t, h.hb("A", 0, sub))
	ok(t, h.hb("B", 0, sub))
	a := ok(t, h.hb("A", 1, hbOpts{topics: []string{"t"}, owned: map[string][]int32{"t": {0, 1, 2, 3}}})) // told to revoke
	states := h.p.stored()
	if len(states) == 0 || states[len(states)-1].Consumer == nil {
		t.Fatalf("nothing stored for the consumer group: %+v", states)
	}
	last := states[len(states)-1]

	other := newCGHarness(t, topics, nil)
	other.SetActive(false)
	for _, s := range states {
		other.RestoreGroup(s)
	}
	other.SetActive(true)
	d := other.describe(t)
	if d.Epoch != 2 || len(d.Members) != 2 || d.State != "Reconciling" {
		t.Fatalf("loaded group %s at epoch %d with %d members; want Reconciling at 2 with 2", d.State, d.Epoch, len(d.Members))
	}
	// A goes on revoking where it was: still epoch 1, then 2 once released.
	keep := assigned(a)["t"]
	r := ok(t, other.hb("A", 1, hbOpts{owned: map[string][]int32{"t": keep}}))
	if r.MemberEpoch != 2 {
		t.Fatalf("A at epoch %d on the new coordinator, want 2", r.MemberEpoch)
	}
	b := ok(t, other.hb("B", 2, hbOpts{}))
	if got := assigned(b)["t"]; len(got) != 2 {
		t.Fatalf("B got %v on the new coordinator, want two partitions", got)
	}
	if last.Generation != 2 || last.ProtocolType != ConsumerProtocolType {
		t.Fatalf("stored generation %d type %q", last.Generation, last.ProtocolType)
	}
}

func TestAssignors(t *testing.T) {
	members := func(subs ...[]string) []*cmember {
		var out []*cmember
		for i, s := range subs {
			out = append(out, &cmember{id: fmt.Sprintf("m%d", i), topics: s})
		}
		return out
	}
	topics := map[string]TopicInfo{"a": topic("a", 7), "b": topic("b", 3)}
	counts := func(as map[string]partitions) []int {
		var out []int
		for i := 0; i < len(as); i++ {
			out = append(out, as[fmt.Sprintf("m%d", i)].count())
		}
		return out
	}
	check := func(name string, as map[string]partitions, ms []*cmember) {
		t.Helper()
		seen := map[tp]string{}
		for id, ps := range as {
			var m *cmember
			for _, x := range ms {
				if x.id == id {
					m = x
				}
			}
			for tid, list := range ps {
				for _, p := range list {
					k := tp{tid, p}
					if o, dup := seen[k]; dup {
						t.Fatalf("%s: partition %v given to %s and %s", name, k, o, id)
					}
					seen[k] = id
					tn := string(tid[:1])
					if !slices.Contains(m.topics, tn) {
						t.Fatalf("%s: %s got %s-%d without subscribing", name, id, tn, p)
					}
				}
			}
		}
		if len(seen) != 10 {
			t.Fatalf("%s: %d partitions assigned, want 10", name, len(seen))
		}
	}
	ms := members([]string{"a", "b"}, []string{"a", "b"}, []string{"a", "b"})
	u := assign("uniform", ms, topics, nil)
	check("uniform", u, ms)
	if c := counts(u); slices.Max(c)-slices.Min(c) > 1 {
		t.Fatalf("uniform counts %v", c)
	}
	// A fourth member: only partitions it takes move.
	ms4 := members([]string{"a", "b"}, []string{"a", "b"}, []string{"a", "b"}, []string{"a", "b"})
	u4 := assign("uniform", ms4, topics, u)
	check("uniform, one more member", u4, ms4)
	moved := 0
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("m%d", i)
		moved += u[id].count() - u[id].filter(func(t [16]byte, p int32) bool { return u4[id].has(t, p) }).count()
	}
	if moved != u4["m3"].count() || moved < 2 {
		t.Fatalf("%d partitions moved for a new member that got %d", moved, u4["m3"].count())
	}
	// Heterogeneous: m1 only reads b; the others balance a around it.
	ms = members([]string{"a"}, []string{"b"}, []string{"a", "b"})
	u = assign("uniform", ms, topics, nil)
	check("uniform heterogeneous", u, ms)
	if c := counts(u); slices.Max(c)-slices.Min(c) > 1 {
		t.Fatalf("uniform heterogeneous counts %v", c)
	}
	// Range: consecutive partitions per topic, the first members one more.
	ms = members([]string{"a", "b"}, []string{"a", "b"}, []string{"a", "b"})
	r := assign("range", ms, topics, nil)
	check("range", r, ms)
	if got := r["m0"][topicID("a")]; !slices.Equal(got, []int32{0, 1, 2}) {
		t.Fatalf("range gave m0 %v of a, want [0 1 2]", got)
	}
	if got := r["m2"][topicID("a")]; !slices.Equal(got, []int32{5, 6}) {
		t.Fatalf("range gave m2 %v of a, want [5 6]", got)
	}
}
