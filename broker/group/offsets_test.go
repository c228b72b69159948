package group

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func commitReq(version int16, group, member string, gen int32, offsets map[string]map[int32]int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = version
	req.Group = group
	req.MemberID = member
	req.Generation = gen
	for _, topic := range []string{"a", "b", "c"} {
		parts, ok := offsets[topic]
		if !ok {
			continue
		}
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		for p := int32(0); p < 10; p++ {
			off, ok := parts[p]
			if !ok {
				continue
			}
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition = p
			rp.Offset = off
			rp.LeaderEpoch = 7
			rp.Metadata = strPtr(fmt.Sprintf("m%d", off))
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	return req
}

// commitCodes flattens a commit response to "topic/partition" -> code.
func commitCodes(resp *kmsg.OffsetCommitResponse) map[string]int16 {
	out := map[string]int16{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[fmt.Sprintf("%s/%d", t.Topic, p.Partition)] = p.ErrorCode
		}
	}
	return out
}

func fetchReq(version int16, group string, topics map[string][]int32) *kmsg.OffsetFetchRequest {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = version
	if version >= 8 {
		g := kmsg.NewOffsetFetchRequestGroup()
		g.Group = group
		if topics != nil {
			g.Topics = []kmsg.OffsetFetchRequestGroupTopic{}
			for t, ps := range topics {
				g.Topics = append(g.Topics, kmsg.OffsetFetchRequestGroupTopic{Topic: t, Partitions: ps})
			}
		}
		req.Groups = []kmsg.OffsetFetchRequestGroup{g}
		return req
	}
	req.Group = group
	if topics != nil {
		req.Topics = []kmsg.OffsetFetchRequestTopic{}
		for t, ps := range topics {
			req.Topics = append(req.Topics, kmsg.OffsetFetchRequestTopic{Topic: t, Partitions: ps})
		}
	}
	return req
}

type fetched struct {
	offset int64
	epoch  int32
	meta   string
	code   int16
}

// fetchMap flattens a fetch response (any version) to "topic/partition" -> result.
func fetchMap(t *testing.T, resp *kmsg.OffsetFetchResponse) map[string]fetched {
	t.Helper()
	out := map[string]fetched{}
	if resp.Version >= 8 {
		if len(resp.Groups) != 1 {
			t.Fatalf("%d groups in response", len(resp.Groups))
		}
		wantCode(t, "group", resp.Groups[0].ErrorCode, nil)
		for _, tp := range resp.Groups[0].Topics {
			for _, p := range tp.Partitions {
				out[fmt.Sprintf("%s/%d", tp.Topic, p.Partition)] = fetched{p.Offset, p.LeaderEpoch, derefOr(p.Metadata, "<nil>"), p.ErrorCode}
			}
		}
		return out
	}
	wantCode(t, "fetch", resp.ErrorCode, nil)
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			out[fmt.Sprintf("%s/%d", tp.Topic, p.Partition)] = fetched{p.Offset, p.LeaderEpoch, derefOr(p.Metadata, "<nil>"), p.ErrorCode}
		}
	}
	return out
}

// Offsets committed at every version are persisted with the right values,
// then read back at every version.
func TestOffsetCommitFetchRoundTrip(t *testing.T) {
	for cv := int16(0); cv <= Versions[8][1]; cv++ {
		t.Run(fmt.Sprintf("commit v%d", cv), func(t *testing.T) {
			h := newHarness(t, nil)
			group := "g"
			member, gen := "", int32(-1)
			if cv >= 1 {
				ids, g := h.stableGroup(group, 1, 5, 3)
				member, gen = ids[0], g
			}
			resp := h.OffsetCommit(t.Context(), commitReq(cv, group, member, gen, map[string]map[int32]int64{
				"a": {0: 10, 1: 11}, "b": {3: 30},
			}))
			if resp.Version != cv {
				t.Fatalf("response version %d", resp.Version)
			}
			for k, code := range commitCodes(resp) {
				if code != 0 {
					t.Fatalf("%s: %v", k, kerr.ErrorForCode(code))
				}
			}
			calls := h.p.snapshot()
			if len(calls) != 1 || calls[0].group != group || len(calls[0].offsets) != 3 {
				t.Fatalf("persist calls: %+v", calls)
			}
			wantEpoch := int32(-1)
			if cv >= 6 {
				wantEpoch = 7
			}
			for i, want := range []struct {
				topic string
				part  int32
				off   int64
			}{{"a", 0, 10}, {"a", 1, 11}, {"b", 3, 30}} {
				got := calls[0].offsets[i]
				if got.Topic != want.topic || got.Partition != want.part || got.Offset != want.off ||
					got.LeaderEpoch != wantEpoch || got.Metadata != fmt.Sprintf("m%d", want.off) || got.CommitTimeMs <= 0 {
					t.Fatalf("persisted offset %d: %+v", i, got)
				}
			}

			for fv := int16(0); fv <= Versions[9][1]; fv++ {
				got := fetchMap(t, h.OffsetFetch(t.Context(), fetchReq(fv, group, map[string][]int32{"a": {0, 1, 2}, "zzz": {0}})))
				want := map[string]fetched{
					"a/0": {10, wantEpoch, "m10", 0}, "a/1": {11, wantEpoch, "m11", 0},
					"a/2": {-1, -1, "", 0}, "zzz/0": {-1, -1, "", 0},
				}
				if fv < 5 {
					for k, v := range want {
						v.epoch = 0 // not in the response before v5
						want[k] = v
					}
					for k, v := range got {
						v.epoch = 0
						got[k] = v
					}
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("fetch v%d: %+v, want %+v", fv, got, want)
				}
				if fv >= 2 {
					all := fetchMap(t, h.OffsetFetch(t.Context(), fetchReq(fv, group, nil)))
					if len(all) != 3 || all["b/3"].offset != 30 {
						t.Fatalf("fetch all v%d: %+v", fv, all)
					}
				}
			}
		})
	}
}

// An unknown group fetches -1 everywhere; null topics give no topics.
func TestOffsetFetchUnknownGroup(t *testing.T) {
	h := newHarness(t, nil)
	for _, v := range []int16{1, 5, 8} {
		got := fetchMap(t, h.OffsetFetch(t.Context(), fetchReq(v, "nope", map[string][]int32{"t": {0, 1}})))
		if len(got) != 2 || got["t/0"].offset != -1 || got["t/1"].offset != -1 {
			t.Fatalf("v%d: %+v", v, got)
		}
		if v >= 2 {
			if all := fetchMap(t, h.OffsetFetch(t.Context(), fetchReq(v, "nope", nil))); len(all) != 0 {
				t.Fatalf("v%d null topics: %+v", v, all)
			}
		}
	}
}

// OffsetFetch v8 answers several groups at once.
func TestOffsetFetchV8MultipleGroups(t *testing.T) {
	h := newHarness(t, nil)
	h.Restore("g1", []Offset{{Topic: "t", Partition: 0, Offset: 1, LeaderEpoch: 3, Metadata: "x"}})
	h.Restore("g2", []Offset{{Topic: "t", Partition: 0, Offset: 2, LeaderEpoch: -1}})
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	for _, g := range []string{"g1", "g2", "g3"} {
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = g
		req.Groups = append(req.Groups, rg) // null topics: all
	}
	resp := h.OffsetFetch(t.Context(), req)
	if len(resp.Groups) != 3 {
		t.Fatalf("%d groups", len(resp.Groups))
	}
	if p := resp.Groups[0].Topics[0].Partitions[0]; p.Offset != 1 || p.LeaderEpoch != 3 || *p.Metadata != "x" {
		t.Fatalf("g1: %+v", p)
	}
	if p := resp.Groups[1].Topics[0].Partitions[0]; p.Offset != 2 {
		t.Fatalf("g2: %+v", p)
	}
	if len(resp.Groups[2].Topics) != 0 || resp.Groups[2].ErrorCode != 0 {
		t.Fatalf("g3: %+v", resp.Groups[2])
	}
}

// A Persister error is answered with an error code on every partition and
// nothing is stored.
func TestOffsetCommitPersistError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want *kerr.Error
	}{
		{"plain error", errors.New("disk on fire"), kerr.CoordinatorNotAvailable},
		{"not leader", fmt.Errorf("broker: %w", kerr.NotLeaderForPartition), kerr.NotCoordinator},
		{"not enough replicas", kerr.NotEnoughReplicas, kerr.CoordinatorNotAvailable},
		{"too large", kerr.MessageTooLarge, kerr.InvalidCommitOffsetSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.Restore("g", []Offset{{Topic: "a", Partition: 0, Offset: 1, LeaderEpoch: -1}})
			h.p.setErr(tc.err)
			resp := h.OffsetCommit(t.Context(), commitReq(2, "g", "", -1, map[string]map[int32]int64{"a": {0: 5, 1: 6}}))
			for k, code := range commitCodes(resp) {
				if code != tc.want.Code {
					t.Fatalf("%s: %v, want %v", k, kerr.ErrorForCode(code), tc.want)
				}
			}
			if got := h.Offsets("g"); len(got) != 1 || got[0].Offset != 1 {
				t.Fatalf("offsets after failed commit: %+v", got)
			}
			// Nothing stored for a new group either.
			h.OffsetCommit(t.Context(), commitReq(2, "new", "", -1, map[string]map[int32]int64{"a": {0: 5}}))
			if got := h.Offsets("new"); got != nil {
				t.Fatalf("new group has offsets %+v", got)
			}
			if h.state("new") != "Dead" {
				t.Fatalf("new group exists after failed commit: %s", h.state("new"))
			}
		})
	}
}

// Generation and member checks on commit, as Kafka's classic groups.
func TestOffsetCommitMembershipChecks(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.PartitionExists = func(topic string, _ int32) bool { return topic != "c" }
	})
	ids, gen := h.stableGroup("g", 2, 5, 3)
	// "rebalancing": a group in CompletingRebalance (the leader has not synced).
	rj := recv(t, h.joinNew(5, "rebalancing", joinOpts{}))
	wantCode(t, "join", rj.ErrorCode, nil)
	// "preparing": a group in PreparingRebalance (member 2 has not rejoined).
	pids, pgen := h.stableGroup("preparing", 2, 5, 3)
	h.joinAsync(joinReq(5, "preparing", pids[0], joinOpts{}))
	eventually(t, waitFor, "PreparingRebalance", func() bool { return h.state("preparing") == "PreparingRebalance" })

	long := make([]byte, 5000)
	for i := range long {
		long[i] = 'x'
	}
	for _, tc := range []struct {
		name   string
		group  string
		member string
		gen    int32
		mod    func(*kmsg.OffsetCommitRequest)
		want   *kerr.Error
	}{
		{"member of stable group", "g", ids[1], gen, nil, nil},
		{"illegal generation", "g", ids[1], gen - 1, nil, kerr.IllegalGeneration},
		{"unknown member", "g", "ghost", gen, nil, kerr.UnknownMemberID},
		{"simple commit to active group", "g", "", -1, nil, kerr.UnknownMemberID},
		{"generation on unknown group", "nope", "m", 3, nil, kerr.IllegalGeneration},
		{"simple commit to new group", "simple", "", -1, nil, nil},
		{"completing rebalance", "rebalancing", rj.MemberID, rj.Generation, nil, kerr.RebalanceInProgress},
		{"preparing rebalance is allowed", "preparing", pids[1], pgen, nil, nil},
		{"metadata too large", "simple", "", -1, func(r *kmsg.OffsetCommitRequest) {
			r.Topics[0].Partitions[0].Metadata = strPtr(string(long))
		}, kerr.OffsetMetadataTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := commitReq(5, tc.group, tc.member, tc.gen, map[string]map[int32]int64{"a": {0: 42}})
			if tc.mod != nil {
				tc.mod(req)
			}
			codes := commitCodes(h.OffsetCommit(t.Context(), req))
			want := int16(0)
			if tc.want != nil {
				want = tc.want.Code
			}
			if codes["a/0"] != want {
				t.Fatalf("a/0: %v, want %v", kerr.ErrorForCode(codes["a/0"]), tc.want)
			}
		})
	}
	t.Run("unknown partition", func(t *testing.T) {
		codes := commitCodes(h.OffsetCommit(t.Context(), commitReq(5, "simple", "", -1, map[string]map[int32]int64{"a": {0: 1}, "c": {0: 1}})))
		if codes["a/0"] != 0 || codes["c/0"] != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("codes %v", codes)
		}
	})
}

// Restore applies offsets without persisting; DeleteTopic drops them.
func TestRestoreAndDeleteTopic(t *testing.T) {
	h := newHarness(t, nil)
	h.Restore("g", []Offset{
		{Topic: "a", Partition: 0, Offset: 1, LeaderEpoch: 2, Metadata: "one"},
		{Topic: "b", Partition: 1, Offset: 5, LeaderEpoch: -1},
	})
	h.Restore("g", []Offset{{Topic: "a", Partition: 0, Offset: 3, LeaderEpoch: 2, Metadata: "three"}}) // later WAL entry wins
	h.Restore("other", []Offset{{Topic: "a", Partition: 0, Offset: 100, LeaderEpoch: -1}})
	if calls := h.p.snapshot(); len(calls) != 0 {
		t.Fatalf("Restore persisted: %+v", calls)
	}
	got := fetchMap(t, h.OffsetFetch(t.Context(), fetchReq(7, "g", nil)))
	want := map[string]fetched{"a/0": {3, 2, "three", 0}, "b/1": {5, -1, "", 0}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after restore: %+v, want %+v", got, want)
	}
	h.DeleteTopic("a")
	got = fetchMap(t, h.OffsetFetch(t.Context(), fetchReq(7, "g", nil)))
	if len(got) != 1 || got["b/1"].offset != 5 {
		t.Fatalf("after delete: %+v", got)
	}
	if h.state("other") != "Dead" {
		t.Fatalf("group with only offsets of the deleted topic: %s, want it gone", h.state("other"))
	}
}

// Close makes offset APIs answer COORDINATOR_NOT_AVAILABLE.
func TestOffsetsAfterClose(t *testing.T) {
	h := newHarness(t, nil)
	h.Restore("g", []Offset{{Topic: "a", Partition: 0, Offset: 1, LeaderEpoch: -1}})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	codes := commitCodes(h.OffsetCommit(t.Context(), commitReq(2, "g", "", -1, map[string]map[int32]int64{"a": {0: 5}})))
	if codes["a/0"] != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("commit after close: %v", kerr.ErrorForCode(codes["a/0"]))
	}
	wantCode(t, "fetch v3", h.OffsetFetch(t.Context(), fetchReq(3, "g", map[string][]int32{"a": {0}})).ErrorCode, kerr.CoordinatorNotAvailable)
	r1 := h.OffsetFetch(t.Context(), fetchReq(1, "g", map[string][]int32{"a": {0}}))
	wantCode(t, "fetch v1 partition", r1.Topics[0].Partitions[0].ErrorCode, kerr.CoordinatorNotAvailable)
	r8 := h.OffsetFetch(t.Context(), fetchReq(8, "g", nil))
	wantCode(t, "fetch v8 group", r8.Groups[0].ErrorCode, kerr.CoordinatorNotAvailable)
}

// Commits of one group are persisted one at a time, in order; a commit that
// waits for the group's commit lock gives up when its context ends.
func TestOffsetCommitsSerializedPerGroup(t *testing.T) {
	h := newHarness(t, nil)
	gate, entered := make(chan struct{}), make(chan struct{}, 4)
	h.p.mu.Lock()
	h.p.gate, h.p.entered = gate, entered
	h.p.mu.Unlock()

	first := make(chan *kmsg.OffsetCommitResponse, 1)
	go func() {
		first <- h.OffsetCommit(t.Context(), commitReq(2, "g", "", -1, map[string]map[int32]int64{"a": {0: 1}}))
	}()
	recv(t, entered) // the first commit is inside the Persister

	// Another group is not held up.
	other := make(chan *kmsg.OffsetCommitResponse, 1)
	go func() {
		other <- h.OffsetCommit(t.Context(), commitReq(2, "other", "", -1, map[string]map[int32]int64{"a": {0: 7}}))
	}()
	recv(t, entered)

	// A second commit of g waits for the first; its context ends first.
	ctx, cancel := context.WithCancel(t.Context())
	second := make(chan *kmsg.OffsetCommitResponse, 1)
	go func() {
		second <- h.OffsetCommit(ctx, commitReq(2, "g", "", -1, map[string]map[int32]int64{"a": {0: 2}}))
	}()
	notReady(t, entered)
	cancel()
	if codes := commitCodes(recv(t, second)); codes["a/0"] != kerr.RequestTimedOut.Code {
		t.Fatalf("cancelled waiting commit: %v", kerr.ErrorForCode(codes["a/0"]))
	}
	gate <- struct{}{}
	gate <- struct{}{}
	for _, ch := range []chan *kmsg.OffsetCommitResponse{first, other} {
		if codes := commitCodes(recv(t, ch)); codes["a/0"] != 0 {
			t.Fatalf("commit: %v", kerr.ErrorForCode(codes["a/0"]))
		}
	}
	if got := h.Offsets("g"); len(got) != 1 || got[0].Offset != 1 {
		t.Fatalf("offsets of g: %+v", got)
	}
	all := h.AllOffsets()
	if len(all) != 2 || all["other"][0].Offset != 7 || all["g"][0].Offset != 1 {
		t.Fatalf("AllOffsets: %+v", all)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.commitLocks) != 0 {
		t.Fatalf("%d commit locks left", len(h.commitLocks))
	}
}

func TestDeleteGroups(t *testing.T) {
	h := newHarness(t, nil)
	h.stableGroup("active", 1, 5, 3)
	h.Restore("idle", []Offset{
		{Topic: "a", Partition: 0, Offset: 1, LeaderEpoch: -1},
		{Topic: "b", Partition: 2, Offset: 3, LeaderEpoch: -1},
	})
	for _, v := range []int16{0, 2} {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Version = v
		req.Groups = []string{"active", "missing", ""}
		resp := h.DeleteGroups(t.Context(), req)
		if resp.Version != v || len(resp.Groups) != 3 {
			t.Fatalf("v%d response: %+v", v, resp)
		}
		wantCode(t, "active", resp.Groups[0].ErrorCode, kerr.NonEmptyGroup)
		wantCode(t, "missing", resp.Groups[1].ErrorCode, kerr.GroupIDNotFound)
		wantCode(t, "empty id", resp.Groups[2].ErrorCode, kerr.InvalidGroupID)
	}

	h.p.setErr(errors.New("disk full"))
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Groups = []string{"idle"}
	wantCode(t, "delete with failing persister", h.DeleteGroups(t.Context(), req).Groups[0].ErrorCode, kerr.CoordinatorNotAvailable)
	if len(h.Offsets("idle")) != 2 {
		t.Fatalf("offsets deleted although not persisted")
	}
	h.p.setErr(nil)
	wantCode(t, "delete", h.DeleteGroups(t.Context(), req).Groups[0].ErrorCode, nil)
	if h.state("idle") != "Dead" || h.Offsets("idle") != nil {
		t.Fatalf("idle group still there: %s %+v", h.state("idle"), h.Offsets("idle"))
	}
	calls := h.p.snapshot()
	if len(calls) != 1 || calls[0].group != "idle" || len(calls[0].offsets) != 2 ||
		calls[0].offsets[0].Offset != -1 || calls[0].offsets[1].Offset != -1 {
		t.Fatalf("persisted tombstones: %+v", calls)
	}

	// Replaying the WAL (commits, then tombstones) on another node ends with no group.
	other := newHarness(t, nil)
	other.Restore("idle", []Offset{{Topic: "a", Partition: 0, Offset: 1, LeaderEpoch: -1}, {Topic: "b", Partition: 2, Offset: 3, LeaderEpoch: -1}})
	other.Restore(calls[0].group, calls[0].offsets)
	if other.state("idle") != "Dead" {
		t.Fatalf("replayed deletion: state %s", other.state("idle"))
	}
}

func TestOffsetDelete(t *testing.T) {
	h := newHarness(t, nil)
	h.Restore("idle", []Offset{
		{Topic: "a", Partition: 0, Offset: 1, LeaderEpoch: -1},
		{Topic: "a", Partition: 1, Offset: 2, LeaderEpoch: -1},
	})
	del := func(group string, topic string, parts ...int32) *kmsg.OffsetDeleteResponse {
		req := kmsg.NewPtrOffsetDeleteRequest()
		req.Group = group
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = topic
		for _, p := range parts {
			rt.Partitions = append(rt.Partitions, kmsg.OffsetDeleteRequestTopicPartition{Partition: p})
		}
		req.Topics = append(req.Topics, rt)
		return h.OffsetDelete(t.Context(), req)
	}
	wantCode(t, "unknown group", del("missing", "a", 0).ErrorCode, kerr.GroupIDNotFound)
	resp := del("idle", "a", 0, 7)
	wantCode(t, "delete", resp.ErrorCode, nil)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 2 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("response %+v", resp)
	}
	if got := h.Offsets("idle"); len(got) != 1 || got[0].Partition != 1 {
		t.Fatalf("offsets left: %+v", got)
	}

	// A group whose members subscribe to the topic keeps its offsets.
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"a"}
	req := joinReq(3, "busy", "", joinOpts{})
	req.Protocols[0].Metadata = meta.AppendTo(nil)
	r := h.JoinGroup(t.Context(), req)
	wantCode(t, "join", r.ErrorCode, nil)
	h.Restore("busy", []Offset{{Topic: "a", Partition: 0, Offset: 5, LeaderEpoch: -1}, {Topic: "b", Partition: 0, Offset: 6, LeaderEpoch: -1}})
	resp = del("busy", "a", 0)
	if resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code {
		t.Fatalf("subscribed topic: %+v", resp)
	}
	resp = del("busy", "b", 0)
	if resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("unsubscribed topic: %+v", resp)
	}
	if got := h.Offsets("busy"); len(got) != 1 || got[0].Topic != "a" {
		t.Fatalf("busy offsets: %+v", got)
	}
}

// A Persister that does not finish (the broker's commit point stopped
// moving) holds OffsetCommit, DeleteGroups and OffsetDelete for
// Config.CommitTimeout at most; they answer COORDINATOR_NOT_AVAILABLE, as
// does a commit queued behind one of them, and nothing is applied.
func TestCommitTimeout(t *testing.T) {
	tombstoned := []Offset{{Topic: "a", Partition: 0, Offset: 5, LeaderEpoch: -1}}
	for _, tc := range []struct {
		name string
		run  func(h *harness, ctx context.Context) int16
	}{
		{"OffsetCommit", func(h *harness, ctx context.Context) int16 {
			return commitCodes(h.OffsetCommit(ctx, commitReq(2, "g", "", -1, map[string]map[int32]int64{"a": {0: 9}})))["a/0"]
		}},
		{"DeleteGroups", func(h *harness, ctx context.Context) int16 {
			req := kmsg.NewPtrDeleteGroupsRequest()
			req.Groups = []string{"g"}
			return h.DeleteGroups(ctx, req).Groups[0].ErrorCode
		}},
		{"OffsetDelete", func(h *harness, ctx context.Context) int16 {
			req := kmsg.NewPtrOffsetDeleteRequest()
			req.Group = "g"
			req.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "a", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
			return h.OffsetDelete(ctx, req).ErrorCode
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.CommitTimeout = 50 * time.Millisecond })
			h.Restore("g", tombstoned)
			entered := make(chan struct{}, 2)
			h.p.mu.Lock()
			h.p.gate, h.p.entered = make(chan struct{}), entered // never opened
			h.p.mu.Unlock()

			// The request's own context would wait far longer.
			ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
			defer cancel()
			stuck := make(chan int16, 1)
			go func() { stuck <- tc.run(h, ctx) }()
			recv(t, entered)
			queued := make(chan int16, 1)
			go func() {
				queued <- commitCodes(h.OffsetCommit(ctx, commitReq(2, "g", "", -1, map[string]map[int32]int64{"a": {0: 7}})))["a/0"]
			}()
			wantCode(t, tc.name, recv(t, stuck), kerr.CoordinatorNotAvailable)
			// The queued commit either timed out waiting for the lock, or
			// got it and then timed out in the Persister.
			wantCode(t, "commit queued behind it", recv(t, queued), kerr.CoordinatorNotAvailable)
			if got := h.Offsets("g"); !reflect.DeepEqual(got, tombstoned) {
				t.Fatalf("offsets after timed-out writes: %+v", got)
			}
		})
	}
}
