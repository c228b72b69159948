package group

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitFor = 10 * time.Second

// memPersister is the in-memory Persister: it records every call and fails
// with err when set.
type memPersister struct {
	mu      sync.Mutex
	calls   []persistCall
	err     error
	gate    chan struct{} // when set, each call waits for a value (or ctx)
	entered chan struct{} // when set, each call signals here first
}

type persistCall struct {
	group   string
	offsets []Offset
}

func (p *memPersister) CommitOffsets(ctx context.Context, group string, offsets []Offset) error {
	p.mu.Lock()
	gate, entered := p.gate, p.entered
	p.mu.Unlock()
	if err := passGate(ctx, gate, entered); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.calls = append(p.calls, persistCall{group: group, offsets: append([]Offset(nil), offsets...)})
	return nil
}

// passGate signals entered and waits for gate, when they are set, or ctx.
func passGate(ctx context.Context, gate, entered chan struct{}) error {
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (p *memPersister) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

func (p *memPersister) snapshot() []persistCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]persistCall(nil), p.calls...)
}

// testLogWriter routes log lines to t.Log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

type harness struct {
	*Coordinator
	t *testing.T
	p *memPersister
}

// newHarness starts a coordinator with test-friendly timeouts; mod may change
// the config. It is closed when the test ends.
func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	p := &memPersister{}
	cfg := Config{
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "group", Level: hclog.Debug, Output: testLogWriter{t},
		}),
		Persister:         p,
		MinSessionTimeout: time.Millisecond,
		MaxSessionTimeout: time.Minute,
	}
	if mod != nil {
		mod(&cfg)
	}
	c := New(cfg)
	t.Cleanup(func() { _ = c.Close() })
	return &harness{Coordinator: c, t: t, p: p}
}

// eventually polls fn until it returns true or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv waits for one value from ch, failing the test after waitFor.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("timed out waiting for a response")
	}
	var zero T
	return zero
}

// notReady asserts that nothing arrived on ch yet.
func notReady[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected early response: %+v", v)
	default:
	}
}

type joinOpts struct {
	session, rebalance time.Duration
	protocols          []string // default "range"
	protocolType       string   // default "consumer"
	instanceID         *string
}

func joinReq(version int16, group, memberID string, o joinOpts) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = version
	req.Group = group
	req.MemberID = memberID
	if o.session == 0 {
		o.session = 10 * time.Second
	}
	if o.rebalance == 0 {
		o.rebalance = 10 * time.Second
	}
	req.SessionTimeoutMillis = int32(o.session.Milliseconds())
	req.RebalanceTimeoutMillis = int32(o.rebalance.Milliseconds())
	req.InstanceID = o.instanceID
	req.ProtocolType = o.protocolType
	if req.ProtocolType == "" {
		req.ProtocolType = "consumer"
	}
	if len(o.protocols) == 0 {
		o.protocols = []string{"range"}
	}
	for _, name := range o.protocols {
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name = name
		p.Metadata = []byte("meta-" + name)
		req.Protocols = append(req.Protocols, p)
	}
	return req
}

// joinAsync sends a JoinGroup in the background.
func (h *harness) joinAsync(req *kmsg.JoinGroupRequest) <-chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	ctx := h.t.Context()
	go func() { ch <- h.JoinGroup(ctx, req) }()
	return ch
}

// syncAsync sends a SyncGroup in the background.
func (h *harness) syncAsync(req *kmsg.SyncGroupRequest) <-chan *kmsg.SyncGroupResponse {
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	ctx := h.t.Context()
	go func() { ch <- h.SyncGroup(ctx, req) }()
	return ch
}

// joinNew joins a new member: on v4+ it first collects the member id from
// MEMBER_ID_REQUIRED. It returns the channel of the real join.
func (h *harness) joinNew(version int16, group string, o joinOpts) <-chan *kmsg.JoinGroupResponse {
	h.t.Helper()
	memberID := ""
	if version >= 4 && o.instanceID == nil {
		resp := h.JoinGroup(h.t.Context(), joinReq(version, group, "", o))
		if resp.ErrorCode != kerr.MemberIDRequired.Code || resp.MemberID == "" {
			h.t.Fatalf("first join v%d: error %v member %q, want MEMBER_ID_REQUIRED with an id",
				version, kerr.ErrorForCode(resp.ErrorCode), resp.MemberID)
		}
		memberID = resp.MemberID
	}
	return h.joinAsync(joinReq(version, group, memberID, o))
}

func syncReq(version int16, group, memberID string, gen int32, assign map[string]string) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = version
	req.Group = group
	req.MemberID = memberID
	req.Generation = gen
	for m, a := range assign {
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID = m
		ga.MemberAssignment = []byte(a)
		req.GroupAssignment = append(req.GroupAssignment, ga)
	}
	return req
}

func (h *harness) heartbeat(version int16, group, memberID string, gen int32) int16 {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = version
	req.Group = group
	req.MemberID = memberID
	req.Generation = gen
	resp := h.Heartbeat(h.t.Context(), req)
	if resp.Version != version {
		h.t.Fatalf("heartbeat response version %d, want %d", resp.Version, version)
	}
	return resp.ErrorCode
}

func (h *harness) state(group string) string {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	return h.DescribeGroups(h.t.Context(), req).Groups[0].State
}

func wantCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	wantCode := int16(0)
	if want != nil {
		wantCode = want.Code
	}
	if got != wantCode {
		t.Fatalf("%s: error %v, want %v", what, kerr.ErrorForCode(got), kerr.ErrorForCode(wantCode))
	}
}

// waitState waits until group is in state.
func (h *harness) waitState(group, state string) {
	h.t.Helper()
	eventually(h.t, waitFor, group+" in state "+state, func() bool { return h.state(group) == state })
}

// grow adds one new member to a group whose current members are ids (all
// in CompletingRebalance or Stable), rejoining them as clients do, and
// returns the join answers, the new member's last.
func (h *harness) grow(group string, ids []string, jv int16, o joinOpts) []*kmsg.JoinGroupResponse {
	h.t.Helper()
	newCh := h.joinNew(jv, group, o)
	if len(ids) > 0 {
		h.waitState(group, "PreparingRebalance")
	}
	var chans []<-chan *kmsg.JoinGroupResponse
	for _, id := range ids {
		chans = append(chans, h.joinAsync(joinReq(jv, group, id, o)))
	}
	chans = append(chans, newCh)
	var out []*kmsg.JoinGroupResponse
	for _, ch := range chans {
		r := recv(h.t, ch)
		wantCode(h.t, "join", r.ErrorCode, nil)
		out = append(out, r)
	}
	return out
}

// stableGroup brings a group of n members to Stable at the given
// JoinGroup/SyncGroup versions and returns the member ids (leader first) and
// the generation.
func (h *harness) stableGroup(group string, n int, jv, sv int16) ([]string, int32) {
	h.t.Helper()
	var ids []string
	var resps []*kmsg.JoinGroupResponse
	for i := 0; i < n; i++ {
		resps = h.grow(group, ids, jv, joinOpts{})
		ids = append(ids, resps[len(resps)-1].MemberID)
	}
	leader, gen := resps[0].LeaderID, resps[0].Generation
	for _, r := range resps {
		if r.Generation != gen || r.LeaderID != leader {
			h.t.Fatalf("members disagree: generation %d/%d leader %q/%q", r.Generation, gen, r.LeaderID, leader)
		}
	}
	ordered := []string{leader}
	for _, id := range ids {
		if id != leader {
			ordered = append(ordered, id)
		}
	}
	assign := map[string]string{}
	for _, id := range ordered {
		assign[id] = "assign-" + id
	}
	var syncs []<-chan *kmsg.SyncGroupResponse
	for _, id := range ordered[1:] {
		syncs = append(syncs, h.syncAsync(syncReq(sv, group, id, gen, nil)))
	}
	lr := h.SyncGroup(h.t.Context(), syncReq(sv, group, leader, gen, assign))
	wantCode(h.t, "leader sync", lr.ErrorCode, nil)
	for i, ch := range syncs {
		r := recv(h.t, ch)
		wantCode(h.t, "follower sync", r.ErrorCode, nil)
		if string(r.MemberAssignment) != "assign-"+ordered[i+1] {
			h.t.Fatalf("follower assignment %q, want %q", r.MemberAssignment, "assign-"+ordered[i+1])
		}
	}
	return ordered, gen
}
