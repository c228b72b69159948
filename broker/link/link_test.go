package link_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/wal"
	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// walBroker is a link.Broker over a real WAL with no Kafka state.
type walBroker struct {
	w       *wal.Log
	mu      sync.Mutex
	view    link.ClusterView
	commit  uint64
	lastSet uint64    // the argument of the latest SetCommitLSN
	until   time.Time // the argument of the latest SetWritesUntil
}

func (b *walBroker) NodeID() int32               { return 7 }
func (b *walBroker) Advertised() (string, int32) { return "kafka-7", 9092 }
func (b *walBroker) Rack() string                { return "rack-a" }
func (b *walBroker) WAL() *wal.Log               { return b.w }
func (b *walBroker) TruncateAfter(lsn uint64) error {
	return b.w.Truncate(lsn)
}
func (b *walBroker) ResetTo(next uint64) error { return b.w.Reset(next) }
func (b *walBroker) ApplyEntries(ents []wal.Entry) error {
	for _, e := range ents {
		if _, err := b.w.AppendEntry(e); err != nil {
			return err
		}
	}
	return b.w.WaitDurable(context.Background(), ents[len(ents)-1].LSN)
}
func (b *walBroker) SetClusterView(v link.ClusterView) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.view = v
}
func (b *walBroker) SetCommitLSN(lsn uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.commit = max(b.commit, lsn)
	b.lastSet = lsn
}
func (b *walBroker) SetWritesUntil(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.until = t
}
func (b *walBroker) writesUntil() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.until
}
func (b *walBroker) state() (link.ClusterView, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.view, b.commit
}

func (b *walBroker) append(t *testing.T, n, size int) {
	t.Helper()
	var last uint64
	for i := 0; i < n; i++ {
		pos, err := b.w.Append(1, wal.TypeRecordBatch, make([]byte, size))
		if err != nil {
			t.Fatal(err)
		}
		last = pos.LSN
	}
	if err := b.w.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
}

// sidecarDriver plays the sidecar's side of the link: each Attach stream is
// handed to the test, which sends and receives on it directly.
type sidecarDriver struct {
	linkv1.UnimplementedLinkServiceServer
	streams chan linkv1.LinkService_AttachServer
}

func (d *sidecarDriver) Attach(s linkv1.LinkService_AttachServer) error {
	d.streams <- s
	<-s.Context().Done()
	return nil
}

type harness struct {
	t      *testing.T
	socket string
	b      *walBroker
	srv    *grpc.Server
	drv    *sidecarDriver
	stop   context.CancelFunc
	done   chan struct{}
}

// newHarness opens a WAL, runs setup on the broker (before it attaches),
// serves the driver on a socket and starts link.Run.
func newHarness(t *testing.T, segmentBytes int64, setup func(b *walBroker)) *harness {
	return newHarnessWith(t, wal.Options{Sync: wal.SyncNone, SegmentBytes: segmentBytes}, setup, nil)
}

// newHarnessWith is newHarness with the WAL's options (a WAL in a temp
// dir unless opts.Dir is set), and wrap (when set) choosing what link.Run
// gets as the broker.
func newHarnessWith(t *testing.T, opts wal.Options, setup func(b *walBroker), wrap func(b *walBroker) link.Broker) *harness {
	dir := t.TempDir()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(dir, "wal")
	}
	w, err := wal.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, socket: filepath.Join(dir, "s.sock"), b: &walBroker{w: w}}
	if setup != nil {
		setup(h.b)
	}
	var broker link.Broker = h.b
	if wrap != nil {
		broker = wrap(h.b)
	}
	h.serve()
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan struct{})
	log := hclog.New(&hclog.LoggerOptions{Name: "link", Level: hclog.Debug, Output: testWriter{t}})
	go func() {
		defer close(h.done)
		link.Run(ctx, h.socket, broker, log)
	}()
	t.Cleanup(func() {
		h.stop()
		h.srv.Stop()
		<-h.done
		w.Close()
	})
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

func (h *harness) serve() {
	ln, err := net.Listen("unix", h.socket)
	if err != nil {
		h.t.Fatal(err)
	}
	h.drv = &sidecarDriver{streams: make(chan linkv1.LinkService_AttachServer, 1)}
	h.srv = grpc.NewServer()
	linkv1.RegisterLinkServiceServer(h.srv, h.drv)
	go h.srv.Serve(ln)
}

// attach waits for the broker's stream and its hello.
func (h *harness) attach() (linkv1.LinkService_AttachServer, *linkv1.BrokerHello) {
	h.t.Helper()
	select {
	case s := <-h.drv.streams:
		m := h.recv(s)
		if m.GetHello() == nil {
			h.t.Fatalf("first message %T, want hello", m.GetPayload())
		}
		return s, m.GetHello()
	case <-time.After(10 * time.Second):
		h.t.Fatal("the broker did not attach")
	}
	return nil, nil
}

func (h *harness) recv(s linkv1.LinkService_AttachServer) *linkv1.AttachRequest {
	h.t.Helper()
	type res struct {
		m   *linkv1.AttachRequest
		err error
	}
	ch := make(chan res, 1)
	go func() {
		for {
			m, err := s.Recv()
			if err == nil && m.GetCommitApplied() != nil {
				continue // a notification; the tests wait for answers
			}
			ch <- res{m, err}
			return
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			h.t.Fatalf("recv: %v", r.err)
		}
		return r.m
	case <-time.After(10 * time.Second):
		h.t.Fatal("nothing received from the broker")
	}
	return nil
}

func (h *harness) send(s linkv1.LinkService_AttachServer, m *linkv1.AttachResponse) {
	h.t.Helper()
	if err := s.Send(m); err != nil {
		h.t.Fatal(err)
	}
}

func view(role linkv1.Role) *linkv1.AttachResponse {
	return &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_ClusterView{ClusterView: &linkv1.ClusterView{
		Role: role, LeaderId: 7, Epoch: 1, Isr: []int32{7},
		Brokers: []*linkv1.BrokerInfo{{NodeId: 7, Host: "kafka-7", Port: 9092}}}}}
}

func TestHelloViewCommitAndPush(t *testing.T) {
	h := newHarness(t, 0, func(b *walBroker) { b.append(t, 10, 100) })
	s, hello := h.attach()
	if hello.GetNodeId() != 7 || hello.GetAdvertisedHost() != "kafka-7" || hello.GetRack() != "rack-a" ||
		hello.GetFirstLsn() != 1 || hello.GetLastLsn() != 10 || hello.GetDurableLsn() != 10 ||
		len(hello.GetEpochHistory()) != 1 || hello.GetEpochHistory()[0].GetEpoch() != 1 {
		t.Fatalf("hello = %v", hello)
	}
	h.send(s, view(linkv1.Role_ROLE_LEADER))
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Commit{Commit: &linkv1.CommitPoint{Lsn: 8}}})
	testutil.Eventually(t, 5*time.Second, func() bool {
		v, c := h.b.state()
		return v.Role == link.RoleLeader && v.LeaderID == 7 && len(v.Brokers) == 1 && c == 8
	})
	// A commit point beyond the WAL is clamped to what it holds.
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Commit{Commit: &linkv1.CommitPoint{Lsn: 50}}})
	testutil.Eventually(t, 5*time.Second, func() bool { _, c := h.b.state(); return c == 10 })

	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Subscribe{Subscribe: &linkv1.SubscribeCommitted{FromLsn: 5}}})
	next := uint64(5)
	want := uint64(10)
	for next <= want {
		ce := h.recv(s).GetCommitted()
		if ce == nil {
			t.Fatal("expected committed entries")
		}
		for _, e := range ce.GetEntries() {
			if e.GetLsn() != next {
				t.Fatalf("pushed LSN %d, want %d", e.GetLsn(), next)
			}
			if e.PayloadCrc32C == nil || e.GetPayloadCrc32C() != crc32.Checksum(e.GetPayload(), crc32.MakeTable(crc32.Castagnoli)) {
				t.Fatalf("pushed LSN %d with payload_crc32c %v, not its payload's CRC-32C", e.GetLsn(), e.PayloadCrc32C)
			}
			next++
		}
		if next > want && want == 10 {
			h.b.append(t, 3, 100) // pushed as soon as durable
			want = 13
		}
	}
}

func TestReplayInChunks(t *testing.T) {
	h := newHarness(t, 256<<10, func(b *walBroker) { b.append(t, 3000, 1000) }) // ~3 MB in 12 segments
	s, _ := h.attach()
	h.send(s, view(linkv1.Role_ROLE_LEADER))

	replay := func(id, from, maxBytes uint64) (ents []*linkv1.Entry, results []*linkv1.ReplayResult) {
		h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Replay{Replay: &linkv1.ReplayRequest{
			RequestId: id, FromLsn: from, MaxBytes: maxBytes}}})
		for {
			r := h.recv(s).GetReplayResult()
			if r == nil || r.GetRequestId() != id {
				t.Fatalf("expected replay result %d, got %v", id, r)
			}
			results = append(results, r)
			ents = append(ents, r.GetEntries()...)
			if r.GetDone() {
				return ents, results
			}
		}
	}
	tests := []struct {
		name               string
		from, maxBytes     uint64
		wantStatus         linkv1.ReplayStatus
		wantFirst, wantLen uint64
		wantEOL            bool
	}{
		{"default budget", 1, 0, linkv1.ReplayStatus_REPLAY_STATUS_OK, 1, 1049, false},
		{"big budget in chunks", 1, 2500 << 10, linkv1.ReplayStatus_REPLAY_STATUS_OK, 1, 2560, false},
		{"continues a cached reader", 1050, 0, linkv1.ReplayStatus_REPLAY_STATUS_OK, 1050, 1049, false},
		{"to the end", 2990, 1 << 20, linkv1.ReplayStatus_REPLAY_STATUS_OK, 2990, 11, true},
		{"at the end", 3001, 0, linkv1.ReplayStatus_REPLAY_STATUS_OK, 0, 0, true},
		{"at least one entry", 100, 1, linkv1.ReplayStatus_REPLAY_STATUS_OK, 100, 1, false},
		{"beyond the end", 3002, 0, linkv1.ReplayStatus_REPLAY_STATUS_OUT_OF_RANGE, 0, 0, false},
		{"lsn zero", 0, 0, linkv1.ReplayStatus_REPLAY_STATUS_OUT_OF_RANGE, 0, 0, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ents, results := replay(uint64(i+1), tt.from, tt.maxBytes)
			last := results[len(results)-1]
			if last.GetStatus() != tt.wantStatus || uint64(len(ents)) != tt.wantLen || last.GetEndOfLog() != tt.wantEOL {
				t.Fatalf("status %v, %d entries, eol %v; want %v, %d, %v (%s)", last.GetStatus(), len(ents), last.GetEndOfLog(),
					tt.wantStatus, tt.wantLen, tt.wantEOL, last.GetError())
			}
			for j, e := range ents {
				if e.GetLsn() != tt.wantFirst+uint64(j) || len(e.GetPayload()) != 1000 {
					t.Fatalf("entry %d has LSN %d (%d bytes)", j, e.GetLsn(), len(e.GetPayload()))
				}
			}
			for _, r := range results {
				size := 0
				for _, e := range r.GetEntries() {
					size += len(e.GetPayload())
				}
				if size > link.ChunkBytes+1000 {
					t.Errorf("chunk of %d bytes", size)
				}
			}
		})
	}
	// Retention deleted the oldest segments: the replay says where the WAL starts.
	if _, err := h.b.w.DeleteSegmentsBefore(1000); err != nil {
		t.Fatal(err)
	}
	first := h.b.w.FirstLSN()
	if first == 1 {
		t.Fatal("no segment deleted")
	}
	_, results := replay(100, 1, 0)
	if r := results[0]; r.GetStatus() != linkv1.ReplayStatus_REPLAY_STATUS_COMPACTED || r.GetFirstLsn() != first {
		t.Fatalf("replay of a deleted LSN: %v", r)
	}
}

// A replay answer does not queue behind pushed entries already waiting to
// go: a leader broker taking writes at full speed keeps its push queue
// full, and a follower catching up through replays waited behind all of it
// for every chunk (so it caught up slower the more the leader was written
// to). Nor do pushed entries, which an in-sync follower needs, wait for a
// long replay: the two take turns.
func TestReplayAnswersAndPushesTakeTurns(t *testing.T) {
	const entries = 60
	h := newHarness(t, 0, func(b *walBroker) { b.append(t, entries, link.ChunkBytes) }) // one entry per message
	s, _ := h.attach()
	h.send(s, view(linkv1.Role_ROLE_LEADER))
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Subscribe{Subscribe: &linkv1.SubscribeCommitted{FromLsn: 1}}})
	// Not reading: the pusher fills the stream's window and its queue.
	time.Sleep(time.Second)
	next := uint64(1) // the next pushed LSN expected
	pushed := func(m *linkv1.AttachRequest) {
		t.Helper()
		if m.GetCommitted() == nil {
			t.Fatalf("got %T, want pushed entries", m.GetPayload())
		}
		for _, e := range m.GetCommitted().GetEntries() {
			if e.GetLsn() != next {
				t.Fatalf("pushed LSN %d, want %d", e.GetLsn(), next)
			}
			next++
		}
	}

	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Replay{Replay: &linkv1.ReplayRequest{
		RequestId: 1, FromLsn: 1, MaxBytes: 1}}})
	pushedBefore := 0
	for {
		m := h.recv(s)
		if r := m.GetReplayResult(); r != nil {
			if r.GetStatus() != linkv1.ReplayStatus_REPLAY_STATUS_OK || len(r.GetEntries()) != 1 || r.GetEntries()[0].GetLsn() != 1 {
				t.Fatalf("replay answer %v", r)
			}
			break
		}
		pushed(m)
		pushedBefore++
	}
	t.Logf("%d pushed messages arrived before the replay answer", pushedBefore)
	// What had already left the queue for the transport may come first;
	// the queue's 8 waiting messages must not.
	if pushedBefore >= 8 {
		t.Fatalf("%d pushed messages arrived before the replay answer: it waited behind the push queue", pushedBefore)
	}

	// A replay of 16 chunks while pushes wait: no long run of chunks.
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Replay{Replay: &linkv1.ReplayRequest{
		RequestId: 2, FromLsn: 1, MaxBytes: 16 * link.ChunkBytes}}})
	run, longest, chunks := 0, 0, 0
	for done := false; !done; {
		m := h.recv(s)
		if r := m.GetReplayResult(); r != nil {
			chunks++
			run++
			longest = max(longest, run)
			done = r.GetDone()
			continue
		}
		pushed(m)
		run = 0
	}
	t.Logf("replay of %d chunks: at most %d in a row while pushes waited (pushed up to LSN %d)", chunks, longest, next-1)
	if next > entries {
		t.Fatal("the push ran out before the replay ended: the test shows nothing")
	}
	if longest > 3 {
		t.Fatalf("%d replay chunks in a row went ahead of waiting pushed entries", longest)
	}
	// The push goes on where it was: every entry once, in order.
	for next <= entries {
		pushed(h.recv(s))
	}
}

func TestFollowerApplyTruncateResetChecksum(t *testing.T) {
	h := newHarness(t, 0, nil)
	s, _ := h.attach()
	h.send(s, view(linkv1.Role_ROLE_FOLLOWER))
	applyEpoch := func(from, to uint64, epoch uint32) *linkv1.AppliedUpTo {
		var ents []*linkv1.Entry
		for l := from; l <= to; l++ {
			ents = append(ents, &linkv1.Entry{Lsn: l, Epoch: epoch, Type: linkv1.EntryType_ENTRY_TYPE_RECORD_BATCH, Payload: []byte(fmt.Sprint(l))})
		}
		h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: ents}}})
		a := h.recv(s).GetApplied()
		if a == nil {
			t.Fatal("expected AppliedUpTo")
		}
		return a
	}
	apply := func(from, to uint64) *linkv1.AppliedUpTo { return applyEpoch(from, to, 1) }
	tests := []struct {
		name     string
		from, to uint64
		epoch    uint32
		wantLSN  uint64
		wantErr  bool
	}{
		{"first batch", 1, 5, 1, 5, false},
		{"overlap is skipped, not applied twice", 3, 8, 1, 8, false},
		{"all known: answered with the batch's end, not the WAL's", 2, 6, 1, 6, false},
		{"gap refused", 10, 12, 1, 8, true},
		// The leader has LSN 7 onwards in epoch 2 where this WAL has epoch
		// 1: the logs diverged, and skipping 7-8 would keep the wrong ones.
		{"known LSNs in another epoch refused", 7, 9, 2, 8, true},
	}
	for _, tt := range tests {
		a := applyEpoch(tt.from, tt.to, tt.epoch)
		if a.GetLsn() != tt.wantLSN || (a.GetError() != "") != tt.wantErr {
			t.Fatalf("%s: applied %v, want LSN %d error %v", tt.name, a, tt.wantLSN, tt.wantErr)
		}
	}
	// A payload that does not match the checksum it came with is refused
	// and nothing of it is written; the intact entry is taken after it.
	damaged := &linkv1.Entry{Lsn: 9, Epoch: 1, Type: linkv1.EntryType_ENTRY_TYPE_RECORD_BATCH, Payload: []byte("9"),
		PayloadCrc32C: proto.Uint32(crc32.Checksum([]byte("8"), crc32.MakeTable(crc32.Castagnoli)))}
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: []*linkv1.Entry{damaged}}}})
	if a := h.recv(s).GetApplied(); a.GetLsn() != 8 || !strings.Contains(a.GetError(), "does not match its checksum") {
		t.Fatalf("damaged entry 9: applied %v, want LSN 8 and a checksum error", a)
	}
	if got := h.b.w.LastLSN(); got != 8 {
		t.Fatalf("WAL ends at %d, want 8", got)
	}
	damaged.PayloadCrc32C = proto.Uint32(crc32.Checksum([]byte("9"), crc32.MakeTable(crc32.Castagnoli)))
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: []*linkv1.Entry{damaged}}}})
	if a := h.recv(s).GetApplied(); a.GetLsn() != 9 || a.GetError() != "" {
		t.Fatalf("intact entry 9: applied %v", a)
	}
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_TruncateTo{TruncateTo: &linkv1.TruncateTo{Lsn: 8}}})
	if tr := h.recv(s).GetTruncated(); tr.GetLastLsn() != 8 || tr.GetError() != "" {
		t.Fatalf("truncated = %v", tr)
	}

	want, err := h.b.w.Checksum(2, 6)
	if err != nil {
		t.Fatal(err)
	}
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Checksum{Checksum: &linkv1.ChecksumRequest{RequestId: 9, FromLsn: 2, ToLsn: 6}}})
	if c := h.recv(s).GetChecksumResult(); c.GetRequestId() != 9 || c.GetChecksum() != want || c.GetError() != "" || c.GetLastLsn() != 8 {
		t.Fatalf("checksum result %v, want %x", c, want)
	}
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Checksum{Checksum: &linkv1.ChecksumRequest{RequestId: 10, FromLsn: 2, ToLsn: 60}}})
	if c := h.recv(s).GetChecksumResult(); c.GetError() == "" {
		t.Fatalf("checksum beyond the end: %v", c)
	}

	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_TruncateTo{TruncateTo: &linkv1.TruncateTo{Lsn: 4}}})
	if tr := h.recv(s).GetTruncated(); tr.GetLastLsn() != 4 || tr.GetError() != "" || len(tr.GetEpochHistory()) != 1 {
		t.Fatalf("truncated = %v", tr)
	}
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_ResetTo{ResetTo: &linkv1.ResetTo{NextLsn: 100}}})
	if rd := h.recv(s).GetResetDone(); rd.GetNextLsn() != 100 || rd.GetError() != "" {
		t.Fatalf("reset = %v", rd)
	}
	if a := apply(100, 101); a.GetLsn() != 101 || a.GetError() != "" {
		t.Fatalf("apply after reset: %v", a)
	}
}

// appendingBroker appends without waiting for durability (link.Appender),
// like the real broker: the link waits for the WAL itself.
type appendingBroker struct{ *walBroker }

func (b appendingBroker) AppendEntries(ents []wal.Entry) error {
	for _, e := range ents {
		if _, err := b.w.AppendEntry(e); err != nil {
			return err
		}
	}
	return nil
}

// With a broker that appends without waiting, many ApplyEntries in flight
// are answered in order, each only once its entries are durable, and a
// TruncateTo sent behind them is answered after all of them.
func TestFollowerPipelinedApply(t *testing.T) {
	h := newHarnessWith(t, wal.Options{Sync: wal.SyncEveryBatch}, nil, func(b *walBroker) link.Broker { return appendingBroker{b} })
	s, _ := h.attach()
	h.send(s, view(linkv1.Role_ROLE_FOLLOWER))
	const msgs, per = 40, 5
	lsn := uint64(0)
	for m := 0; m < msgs; m++ {
		var ents []*linkv1.Entry
		for i := 0; i < per; i++ {
			lsn++
			ents = append(ents, &linkv1.Entry{Lsn: lsn, Epoch: 1, Type: linkv1.EntryType_ENTRY_TYPE_RECORD_BATCH, Payload: bytes.Repeat([]byte{byte(lsn)}, 4096)})
		}
		h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: ents}}})
	}
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_TruncateTo{TruncateTo: &linkv1.TruncateTo{Lsn: 7}}})
	for m := 1; m <= msgs; m++ {
		msg := h.recv(s)
		a := msg.GetApplied()
		if a == nil {
			t.Fatalf("reply %d: %T before every AppliedUpTo", m, msg.GetPayload())
		}
		if want := uint64(m * per); a.GetLsn() != want || a.GetError() != "" {
			t.Fatalf("reply %d: applied %v, want LSN %d in order", m, a, want)
		}
		if d := h.b.w.DurableLSN(); d < a.GetLsn() && h.b.w.LastLSN() >= a.GetLsn() {
			t.Fatalf("reply %d: applied up to %d reported while only %d is durable", m, a.GetLsn(), d)
		}
	}
	if tr := h.recv(s).GetTruncated(); tr.GetLastLsn() != 7 || tr.GetError() != "" {
		t.Fatalf("truncated = %v, want last LSN 7", tr)
	}
}

func TestReattachAfterSidecarRestart(t *testing.T) {
	h := newHarness(t, 0, nil)
	s, hello := h.attach()
	if hello.GetLastLsn() != 0 {
		t.Fatalf("hello = %v", hello)
	}
	h.send(s, view(linkv1.Role_ROLE_LEADER))
	testutil.Eventually(t, 5*time.Second, func() bool { v, _ := h.b.state(); return v.Role == link.RoleLeader })

	// The sidecar goes away; the broker keeps its view and keeps writing.
	h.srv.Stop()
	h.b.append(t, 4, 10)
	if v, _ := h.b.state(); v.Role != link.RoleLeader {
		t.Fatalf("view lost while detached: %+v", v)
	}
	h.serve()
	_, hello = h.attach()
	if hello.GetLastLsn() != 4 || hello.GetDurableLsn() != 4 {
		t.Fatalf("hello after re-attach = %v, want the WAL's new end 4", hello)
	}
}

// A leader whose view set fence_after_ms (a sidecar under etcd failover)
// stops leading once its link has been down that long: it becomes a
// follower of no known leader. A view on a new stream before then keeps it
// leading, and so does a view without the field, however long the sidecar
// is gone.
func TestDetachedLeaderFence(t *testing.T) {
	h := newHarness(t, 0, nil)
	s, _ := h.attach()
	fenced := view(linkv1.Role_ROLE_LEADER)
	fenced.GetClusterView().FenceAfterMs = 300
	h.send(s, fenced)
	testutil.Eventually(t, 5*time.Second, func() bool { v, _ := h.b.state(); return v.Role == link.RoleLeader })

	// The sidecar comes back within the bound: the broker still leads.
	h.srv.Stop()
	h.serve()
	s, _ = h.attach()
	h.send(s, fenced)
	time.Sleep(600 * time.Millisecond) // twice the bound since the link broke
	if v, _ := h.b.state(); v.Role != link.RoleLeader {
		t.Fatalf("the broker stopped leading although its sidecar was back within the bound: %+v", v)
	}

	// The sidecar stays away: the broker stops leading after the bound.
	h.srv.Stop()
	broke := time.Now()
	testutil.Eventually(t, 5*time.Second, func() bool { v, _ := h.b.state(); return v.Role == link.RoleFollower })
	t.Logf("the broker stopped leading %v after the link broke (bound 300ms)", time.Since(broke).Round(time.Millisecond))
	if v, _ := h.b.state(); v.LeaderID != -1 || v.Epoch != 1 || len(v.Brokers) != 1 {
		t.Fatalf("view after the fence: %+v, want a follower of no known leader in epoch 1 that keeps the brokers", v)
	}

	// Without the field (a static leader) the broker leads on.
	h.serve()
	s, _ = h.attach()
	h.send(s, view(linkv1.Role_ROLE_LEADER))
	testutil.Eventually(t, 5*time.Second, func() bool { v, _ := h.b.state(); return v.Role == link.RoleLeader })
	h.srv.Stop()
	time.Sleep(600 * time.Millisecond)
	if v, _ := h.b.state(); v.Role != link.RoleLeader {
		t.Fatalf("a leader without fence_after_ms stopped leading while detached: %+v", v)
	}
}

// A leader whose sidecar stops talking while the stream stays open (a
// frozen or stuck sidecar) stops taking writes after fence_after_ms
// without a heartbeat of its view's epoch, and takes them again on the
// next one.
func TestSilentSidecarFence(t *testing.T) {
	h := newHarness(t, 0, nil)
	s, hello := h.attach()
	if !hello.GetReadsHeartbeats() {
		t.Fatal("hello does not say that the broker reads heartbeats")
	}
	leads := func() bool { v, _ := h.b.state(); return v.Role == link.RoleLeader }
	watched := view(linkv1.Role_ROLE_LEADER)
	watched.GetClusterView().FenceAfterMs = 300
	watched.GetClusterView().HeartbeatIntervalMs = 50
	h.send(s, watched)
	testutil.Eventually(t, 5*time.Second, leads)

	beat := func(epoch uint32, d time.Duration) {
		t.Helper()
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Heartbeat{Heartbeat: &linkv1.LinkHeartbeat{Epoch: epoch}}})
		}
	}
	// Heartbeats keep the broker leading well past the bound.
	beat(1, 900*time.Millisecond)
	if !leads() {
		t.Fatal("the broker stopped leading although its sidecar sent heartbeats")
	}
	// Heartbeats of another epoch do not vouch for this view.
	beat(2, 600*time.Millisecond)
	if leads() {
		t.Fatal("heartbeats of epoch 2 kept a leader of epoch 1 taking writes")
	}
	if v, _ := h.b.state(); v.LeaderID != -1 || v.Epoch != 1 || len(v.Brokers) != 1 {
		t.Fatalf("view after the fence: %+v, want a follower of no known leader in epoch 1 that keeps the brokers", v)
	}
	// The sidecar is heard from again: the broker leads again.
	beat(1, 10*time.Millisecond)
	testutil.Eventually(t, 5*time.Second, leads)

	// Silence alone, on a stream that stays open.
	time.Sleep(600 * time.Millisecond)
	if leads() {
		t.Fatal("the broker kept leading with a silent sidecar")
	}
	// A heartbeat read after the lease it vouched for went stale (held up
	// while both processes were frozen) lifts nothing; a fresh one does.
	stale := uint64(time.Now().Add(-time.Second).UnixMilli())
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Heartbeat{Heartbeat: &linkv1.LinkHeartbeat{Epoch: 1, FreshUntilUnixMs: stale}}})
	time.Sleep(200 * time.Millisecond)
	if leads() {
		t.Fatal("a heartbeat whose lease went stale before it arrived gave the broker its writes back")
	}
	fresh := uint64(time.Now().Add(10 * time.Second).UnixMilli())
	h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Heartbeat{Heartbeat: &linkv1.LinkHeartbeat{Epoch: 1, FreshUntilUnixMs: fresh}}})
	testutil.Eventually(t, 5*time.Second, leads)
	time.Sleep(600 * time.Millisecond)
	if leads() {
		t.Fatal("the broker kept leading with a silent sidecar")
	}
	// A new view lifts the fence too, and an older sidecar's view (no
	// heartbeat interval) is never fenced for silence.
	old := view(linkv1.Role_ROLE_LEADER)
	old.GetClusterView().FenceAfterMs = 300
	h.send(s, old)
	testutil.Eventually(t, 5*time.Second, leads)
	time.Sleep(600 * time.Millisecond)
	if !leads() {
		t.Fatal("a leader whose sidecar sends no heartbeats was fenced on an open stream")
	}
}

// The link tells a broker that implements WritesBounder when the fence of
// its leader view is due, at the moment the fence's timer is set, and
// every heartbeat moves it on; the bound passes when the fence comes. A
// view that is not fenced for silence (a follower's, an older sidecar's)
// lifts it. A broker resumed after a freeze of the whole pair refuses
// writes from that bound before the overdue timer runs (package broker's
// TestWritesBound).
func TestFenceBoundsBrokerWrites(t *testing.T) {
	h := newHarness(t, 0, nil)
	s, _ := h.attach()
	watched := view(linkv1.Role_ROLE_LEADER)
	watched.GetClusterView().FenceAfterMs = 300
	watched.GetClusterView().HeartbeatIntervalMs = 50
	before := time.Now()
	h.send(s, watched)
	testutil.Eventually(t, 5*time.Second, func() bool { v, _ := h.b.state(); return v.Role == link.RoleLeader })
	first := h.b.writesUntil()
	if first.Before(before.Add(300*time.Millisecond)) || first.After(time.Now().Add(300*time.Millisecond)) {
		t.Fatalf("bound under a leader view fenced after 300 ms: %v, %v after the view was sent", first, first.Sub(before))
	}
	for end := time.Now().Add(400 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Heartbeat{Heartbeat: &linkv1.LinkHeartbeat{Epoch: 1}}})
	}
	moved := h.b.writesUntil()
	if !moved.After(first.Add(300 * time.Millisecond)) {
		t.Fatalf("after 400 ms of heartbeats the bound moved from %v to %v", first, moved)
	}
	// Silence: the fence comes, and the bound has passed by then.
	testutil.Eventually(t, 5*time.Second, func() bool { v, _ := h.b.state(); return v.Role != link.RoleLeader })
	if u := h.b.writesUntil(); u.After(time.Now()) {
		t.Fatalf("fenced, but the bound is still %v ahead", time.Until(u))
	}
	// An older sidecar's leader view lifts the bound.
	old := view(linkv1.Role_ROLE_LEADER)
	old.GetClusterView().FenceAfterMs = 300
	h.send(s, old)
	testutil.Eventually(t, 5*time.Second, func() bool { v, _ := h.b.state(); return v.Role == link.RoleLeader })
	if u := h.b.writesUntil(); !u.IsZero() {
		t.Fatalf("a view without heartbeats left the bound at %v", u)
	}
}

// A follower's sidecar may send the commit point inside ApplyEntries (the
// broker says so in its hello): it is served once the entries are durable,
// and a commit point above them waits for them.
func TestApplyCarriesCommit(t *testing.T) {
	h := newHarness(t, 0, nil)
	s, hello := h.attach()
	if !hello.GetApplyCarriesCommit() {
		t.Fatal("hello does not offer apply_carries_commit")
	}
	h.send(s, view(linkv1.Role_ROLE_FOLLOWER))
	apply := func(from, to, commit uint64) {
		var ents []*linkv1.Entry
		for l := from; l <= to; l++ {
			ents = append(ents, &linkv1.Entry{Lsn: l, Epoch: 1, Type: linkv1.EntryType_ENTRY_TYPE_RECORD_BATCH, Payload: []byte(fmt.Sprint(l))})
		}
		h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: ents, CommitLsn: commit}}})
		if a := h.recv(s).GetApplied(); a.GetLsn() != to || a.GetError() != "" {
			t.Fatalf("applied %v, want LSN %d", a, to)
		}
	}
	apply(1, 5, 3)
	testutil.Eventually(t, 5*time.Second, func() bool { _, c := h.b.state(); return c == 3 })
	// The leader's commit point is ahead of what this follower holds: it
	// is served up to the follower's durable end, then further as more
	// entries arrive, with no CommitPoint message in between.
	apply(6, 8, 12)
	testutil.Eventually(t, 5*time.Second, func() bool { _, c := h.b.state(); return c == 8 })
	apply(9, 12, 0)
	testutil.Eventually(t, 5*time.Second, func() bool { _, c := h.b.state(); return c == 12 })
}

// The commit points a follower's broker serves after a divergence: none
// above an entry it refused as diverged (its own entries there are not the
// leader's) until the sidecar has the log truncated, and after a
// truncation below a commit point already served, the new leader's lower
// commit points are served again.
func TestCommitPointAroundDivergence(t *testing.T) {
	h := newHarness(t, 0, nil)
	s, _ := h.attach()
	h.send(s, view(linkv1.Role_ROLE_FOLLOWER))
	apply := func(from, to uint64, epoch uint32) *linkv1.AppliedUpTo {
		t.Helper()
		var ents []*linkv1.Entry
		for l := from; l <= to; l++ {
			ents = append(ents, &linkv1.Entry{Lsn: l, Epoch: epoch, Type: linkv1.EntryType_ENTRY_TYPE_RECORD_BATCH, Payload: fmt.Append(nil, l)})
		}
		h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: ents}}})
		return h.recv(s).GetApplied()
	}
	commit := func(lsn, want uint64) {
		t.Helper()
		h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Commit{Commit: &linkv1.CommitPoint{Lsn: lsn}}})
		testutil.Eventually(t, 5*time.Second, func() error {
			h.b.mu.Lock()
			defer h.b.mu.Unlock()
			if h.b.lastSet != want {
				return fmt.Errorf("commit point %d sent, the broker serves %d, want %d", lsn, h.b.lastSet, want)
			}
			return nil
		})
	}
	truncate := func(lsn uint64) {
		t.Helper()
		h.send(s, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_TruncateTo{TruncateTo: &linkv1.TruncateTo{Lsn: lsn}}})
		if tr := h.recv(s).GetTruncated(); tr.GetError() != "" || tr.GetLastLsn() != lsn {
			t.Fatalf("truncated = %v", tr)
		}
	}

	if a := apply(1, 5, 1); a.GetLsn() != 5 || a.GetError() != "" {
		t.Fatalf("apply 1-5: %v", a)
	}
	// The leader has 4 onwards in epoch 2: this WAL's 4 and 5 are not its.
	a := apply(4, 6, 2)
	if a.GetError() == "" || len(a.GetEpochHistory()) != 1 {
		t.Fatalf("diverged batch answered %v, want an error with the WAL's own epoch history", a)
	}
	commit(5, 3)
	truncate(3)
	if a := apply(4, 6, 2); a.GetLsn() != 6 || a.GetError() != "" {
		t.Fatalf("apply 4-6 after the truncation: %v", a)
	}
	commit(6, 6)
	// Another failover cuts the log below what was served: the next
	// leader's commit point 4 is served, not held back by the old 6.
	truncate(2)
	if a := apply(3, 4, 3); a.GetLsn() != 4 || a.GetError() != "" {
		t.Fatalf("apply 3-4 in epoch 3: %v", a)
	}
	commit(4, 4)
}

// Every entry type the WAL knows is named in link.proto's EntryType, with
// the same number, and the proto names none the WAL does not know: the
// proto is the contract a broker in another language implements.
func TestEntryTypesMatchProto(t *testing.T) {
	for n := 1; n < 256; n++ {
		name, inProto := linkv1.EntryType_name[int32(n)]
		walName := wal.EntryType(n).String()
		inWAL := !strings.HasPrefix(walName, "EntryType(")
		if inProto != inWAL {
			t.Errorf("entry type %d: WAL %q, link.proto %q", n, walName, name)
		}
	}
}

// keepingBroker keeps a cluster id in memory (link.ClusterKeeper).
type keepingBroker struct {
	*walBroker
	mu   sync.Mutex
	kept string
}

func (b *keepingBroker) KeptClusterID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kept
}

func (b *keepingBroker) KeepClusterID(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kept = id
	return nil
}

func clusterView(role linkv1.Role, cluster string) *linkv1.AttachResponse {
	m := view(role)
	m.GetClusterView().ClusterId = cluster
	return m
}

// A broker keeps the cluster id of the first view that names one and says
// it in its hellos; a view of another cluster ends the stream unapplied.
func TestBrokerKeepsItsClusterAndRefusesAnother(t *testing.T) {
	var kb *keepingBroker
	h := newHarnessWith(t, wal.Options{Sync: wal.SyncNone}, nil, func(b *walBroker) link.Broker {
		kb = &keepingBroker{walBroker: b}
		return kb
	})
	s, hello := h.attach()
	if hello.GetClusterId() != "" {
		t.Fatalf("hello of a broker that keeps no cluster yet names cluster %q", hello.GetClusterId())
	}
	h.send(s, clusterView(linkv1.Role_ROLE_LEADER, "blue"))
	testutil.Eventually(t, 5*time.Second, func() bool { v, _ := h.b.state(); return v.Role == link.RoleLeader })
	if got := kb.KeptClusterID(); got != "blue" {
		t.Fatalf("kept cluster %q after the first view, want blue", got)
	}

	// A sidecar of another cluster: the broker ends the stream and applies
	// nothing of it.
	h.srv.Stop()
	h.serve()
	s, hello = h.attach()
	if hello.GetClusterId() != "blue" {
		t.Fatalf("hello names cluster %q, want the kept blue", hello.GetClusterId())
	}
	h.send(s, clusterView(linkv1.Role_ROLE_FOLLOWER, "green"))
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the broker kept the stream of a sidecar of another cluster open")
	}
	if v, _ := h.b.state(); v.Role != link.RoleLeader {
		t.Fatalf("the broker applied a view of another cluster: %+v", v)
	}
	if got := kb.KeptClusterID(); got != "blue" {
		t.Fatalf("kept cluster %q after a view of another cluster, want blue", got)
	}
	// It tries again (the operator may fix the sidecar), saying the same.
	_, hello = h.attach()
	if hello.GetClusterId() != "blue" {
		t.Fatalf("hello after the refusal names cluster %q, want blue", hello.GetClusterId())
	}
}
