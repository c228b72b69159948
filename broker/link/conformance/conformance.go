// Package conformance checks that a tandem.link.v1 client, the broker side
// of the link in any language, behaves as a Tandem sidecar expects.
//
// Run starts a scripted fake sidecar on a Unix socket, has the Target start
// the broker under test against that socket (a fresh broker with an empty
// WAL), and drives it through the whole protocol, checking every answer:
//
//	hello      the first message is a BrokerHello with the node id and a
//	           coherent WAL position (first <= last+1, durable <= last)
//	leader     ClusterView(leader), SubscribeCommitted, then the broker
//	           writes entries of its own (Target.Produce): they are pushed
//	           as CommittedEntries in LSN order, with no gap or overlap,
//	           durable_lsn >= the last entry, identical to a replay; a
//	           payload_crc32c, where given, is the payload's CRC-32C
//	handing    when the hello sets reads_handing_over: after a leader view
//	over       with handing_over, the checksum behind it reports the WAL's
//	           end, and the broker writes nothing more of its own
//	           (Target.TryProduce is refused) until a view without it
//	heartbeats when the hello sets reads_heartbeats (and TryProduce is
//	           set): under a leader view with fence_after_ms and
//	           heartbeat_interval_ms the broker takes writes while
//	           LinkHeartbeats of its epoch come, refuses them once none
//	           came for fence_after_ms on the open stream, and takes them
//	           again after the next one (not after one read past its
//	           fresh_until_unix_ms)
//	replay     ReplayRequest answers: chunks echo request_id, continue each
//	           other, the last has done=true; a tiny budget still returns
//	           one entry; out-of-range starts say OUT_OF_RANGE
//	checksum   ChecksumResult over the whole log equals the checksum this
//	           package computes from the entries (Checksum); a range
//	           beyond the end reports an error
//	truncate   TruncateTo(k) leaves last_lsn k and a coherent epoch history
//	apply      ApplyEntries of the leader's entries (as a follower): answered
//	           with AppliedUpTo, the WAL becomes byte-identical (checksum);
//	           entries already held are skipped; a gap, or a payload that
//	           does not match its payload_crc32c, is refused with an error
//	           and no change; a NOOP of a new epoch is appended and
//	           shows in the epoch history
//	reset      ResetTo(n) empties the log so that n is the next LSN; a replay
//	           from 1 answers COMPACTED; the next apply starts at n
//	reattach   when the sidecar ends the stream, the broker attaches again
//	           with a fresh hello that reports exactly what it holds
//
// A broker in another language is tested by a small Go test that starts
// it (see gobroker_test.go for the Go broker: a real bin/tandem-broker
// process) and calls Run; docs/link-protocol.md describes the protocol.
package conformance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// Target is the broker under test.
type Target struct {
	// NodeID is the node id the broker is configured with.
	NodeID int32
	// Start starts the broker so that it attaches to the Unix socket at
	// socketPath (it may start before the socket exists and must retry),
	// with an empty WAL. The caller stops it in a t.Cleanup.
	Start func(t testing.TB, socketPath string)
	// Produce makes the broker write at least n entries of its own (for a
	// Kafka broker: produce n records) and returns once they are durable.
	// It is called while the broker is leader of epoch 1.
	Produce func(t testing.TB, n int)
	// TryProduce, when set, makes the broker try once to write an entry
	// of its own (for a Kafka broker: produce one record with acks=1 and
	// no retries) and returns the refusal, or nil when the write
	// succeeded. The "handing over" part checks that it is refused.
	TryProduce func(t testing.TB) error
	// Timeout bounds every wait for an answer (default 15s).
	Timeout time.Duration
}

// Checksum is the link's rolling checksum over entries (what a broker
// answers to ChecksumRequest): FNV-1a 64 over, for every entry in LSN
// order, the 16 bytes lsn (8, big endian), epoch (4, big endian) and crc
// (4, big endian), where crc is the CRC-32C (Castagnoli) of lsn (8, big
// endian), epoch (4, big endian), type (1 byte) and the payload. An empty
// range gives the FNV offset basis 14695981039346656037.
func Checksum(ents []*linkv1.Entry) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, e := range ents {
		var hdr [13]byte
		binary.BigEndian.PutUint64(hdr[0:], e.GetLsn())
		binary.BigEndian.PutUint32(hdr[8:], e.GetEpoch())
		hdr[12] = byte(e.GetType())
		crc := crc32.Update(crc32.Checksum(hdr[:], castagnoli), castagnoli, e.GetPayload())
		var b [16]byte
		binary.BigEndian.PutUint64(b[0:], e.GetLsn())
		binary.BigEndian.PutUint32(b[8:], e.GetEpoch())
		binary.BigEndian.PutUint32(b[12:], crc)
		for _, c := range b {
			h ^= uint64(c)
			h *= prime
		}
	}
	return h
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fakeSidecar serves LinkService and hands every Attach stream to the
// script.
type fakeSidecar struct {
	linkv1.UnimplementedLinkServiceServer
	conns chan *conn
}

// conn is one Attach stream seen from the script. Only the script's
// goroutine sends; one goroutine receives and sorts what arrives.
type conn struct {
	stream  linkv1.LinkService_AttachServer
	hello   *linkv1.BrokerHello
	replies chan *linkv1.AttachRequest // everything but CommittedEntries and CommitApplied
	end     chan error                 // ends the stream with this error
	done    chan struct{}              // closed when the receiver stops

	mu            sync.Mutex
	committed     []*linkv1.Entry // every pushed entry, in order
	pushErr       error           // first violation of the push rules
	pushed        chan struct{}   // closed and replaced on every push
	commitApplied uint64          // last CommitApplied the broker sent
}

func (f *fakeSidecar) Attach(stream linkv1.LinkService_AttachServer) error {
	c := &conn{
		stream:  stream,
		replies: make(chan *linkv1.AttachRequest, 1024),
		end:     make(chan error, 1),
		done:    make(chan struct{}),
		pushed:  make(chan struct{}),
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	c.replies <- first
	go c.receive()
	select {
	case f.conns <- c:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	select {
	case err := <-c.end:
		return err
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

func (c *conn) receive() {
	defer close(c.done)
	for {
		m, err := c.stream.Recv()
		if err != nil {
			return
		}
		if ca := m.GetCommitApplied(); ca != nil {
			// A notification, not an answer: the commit point the broker
			// serves now. It must never exceed what the broker holds.
			c.mu.Lock()
			if ca.GetLsn() < c.commitApplied && c.pushErr == nil {
				c.pushErr = fmt.Errorf("CommitApplied went back from %d to %d", c.commitApplied, ca.GetLsn())
			}
			c.commitApplied = ca.GetLsn()
			c.mu.Unlock()
			continue
		}
		ce := m.GetCommitted()
		if ce == nil {
			select {
			case c.replies <- m:
			default: // the script is not reading: it will time out and report
			}
			continue
		}
		c.mu.Lock()
		ents := ce.GetEntries()
		switch {
		case c.pushErr != nil:
		case len(ents) == 0:
			c.pushErr = errors.New("CommittedEntries with no entries")
		case ce.GetDurableLsn() < ents[len(ents)-1].GetLsn():
			c.pushErr = fmt.Errorf("CommittedEntries up to LSN %d says durable_lsn %d (must be >= the last entry)",
				ents[len(ents)-1].GetLsn(), ce.GetDurableLsn())
		}
		for _, e := range ents {
			want := uint64(0)
			if n := len(c.committed); n > 0 {
				want = c.committed[n-1].GetLsn() + 1
			}
			if c.pushErr == nil && want != 0 && e.GetLsn() != want {
				c.pushErr = fmt.Errorf("CommittedEntries: LSN %d follows %d (gap or overlap)", e.GetLsn(), want-1)
			}
			c.committed = append(c.committed, e)
		}
		close(c.pushed)
		c.pushed = make(chan struct{})
		c.mu.Unlock()
	}
}

// script drives one broker.
type script struct {
	t       *testing.T
	tg      Target
	srv     *fakeSidecar
	c       *conn
	nextID  uint64
	timeout time.Duration
}

func (s *script) send(m *linkv1.AttachResponse) {
	s.t.Helper()
	if err := s.c.stream.Send(m); err != nil {
		s.t.Fatalf("sending %T to the broker: %v", m.GetPayload(), err)
	}
}

// reply waits for the next answer that is not a push.
func (s *script) reply(what string) *linkv1.AttachRequest {
	s.t.Helper()
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case m := <-s.c.replies:
		return m
	case <-s.c.done:
		s.t.Fatalf("the broker closed the stream while the sidecar waited for %s", what)
	case <-t.C:
		s.t.Fatalf("no %s from the broker within %s", what, s.timeout)
	}
	return nil
}

// Run runs the conformance script against tg. Each part is a subtest;
// the script stops at the first part that fails, since later parts build on
// the earlier ones.
func Run(t *testing.T, tg Target) {
	if tg.Timeout == 0 {
		tg.Timeout = 15 * time.Second
	}
	dir, err := os.MkdirTemp("", "tlc") // short: Unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sidecar.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &fakeSidecar{conns: make(chan *conn, 4)}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(68<<20), grpc.MaxSendMsgSize(68<<20))
	linkv1.RegisterLinkServiceServer(gs, srv)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	s := &script{t: t, tg: tg, srv: srv, timeout: tg.Timeout}
	tg.Start(t, sock)
	var log []*linkv1.Entry // the broker's entries as produced (epoch 1)
	parts := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"hello", func(t *testing.T) { s.t = t; s.partHello() }},
		{"leader pushes committed entries", func(t *testing.T) { s.t = t; log = s.partLeader() }},
		{"handing over", func(t *testing.T) { s.t = t; s.partHandingOver(log) }},
		{"heartbeats", func(t *testing.T) { s.t = t; log = s.partHeartbeats(log) }},
		{"replay", func(t *testing.T) { s.t = t; s.partReplay(log) }},
		{"checksum", func(t *testing.T) { s.t = t; s.partChecksum(log) }},
		{"truncate and apply as follower", func(t *testing.T) { s.t = t; s.partFollower(log) }},
		{"reset", func(t *testing.T) { s.t = t; s.partReset(log) }},
		{"reattach after the sidecar ends the stream", func(t *testing.T) { s.t = t; s.partReattach() }},
	}
	for _, p := range parts {
		if !t.Run(p.name, p.fn) {
			t.Fatalf("stopping: part %q failed and later parts depend on it", p.name)
		}
	}
	if s.c != nil {
		s.c.end <- nil
	}
}

// accept waits for the broker's next Attach stream and checks its hello.
func (s *script) accept() *linkv1.BrokerHello {
	s.t.Helper()
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case s.c = <-s.srv.conns:
	case <-t.C:
		s.t.Fatalf("the broker did not attach to the sidecar socket within %s", s.timeout)
	}
	m := s.reply("BrokerHello")
	h := m.GetHello()
	if h == nil {
		s.t.Fatalf("the first message on Attach is %T, want BrokerHello", m.GetPayload())
	}
	s.c.hello = h
	switch {
	case h.GetNodeId() != s.tg.NodeID:
		s.t.Fatalf("hello: node_id %d, want %d", h.GetNodeId(), s.tg.NodeID)
	case h.GetFirstLsn() == 0 || h.GetFirstLsn() > h.GetLastLsn()+1:
		s.t.Fatalf("hello: first_lsn %d with last_lsn %d (want 1 <= first <= last+1)", h.GetFirstLsn(), h.GetLastLsn())
	case h.GetDurableLsn() > h.GetLastLsn():
		s.t.Fatalf("hello: durable_lsn %d beyond last_lsn %d", h.GetDurableLsn(), h.GetLastLsn())
	}
	checkHistory(s.t, "hello", h.GetEpochHistory(), h.GetFirstLsn(), h.GetLastLsn())
	return h
}

// checkHistory: epochs and start LSNs strictly increase, and the last
// start is at most last+1.
func checkHistory(t *testing.T, where string, hist []*linkv1.EpochStart, first, last uint64) {
	t.Helper()
	for i, es := range hist {
		if i > 0 && (es.GetEpoch() <= hist[i-1].GetEpoch() || es.GetStartLsn() <= hist[i-1].GetStartLsn()) {
			t.Fatalf("%s: epoch history %v is not strictly increasing", where, hist)
		}
		if es.GetStartLsn() > last+1 {
			t.Fatalf("%s: epoch %d starts at LSN %d, beyond the log's end %d", where, es.GetEpoch(), es.GetStartLsn(), last)
		}
	}
	if last >= first && len(hist) == 0 {
		t.Fatalf("%s: the log holds LSNs %d..%d but the epoch history is empty", where, first, last)
	}
}

func (s *script) partHello() {
	h := s.accept()
	if h.GetLastLsn() != 0 {
		s.t.Fatalf("hello: last_lsn %d; the conformance run needs a broker with an empty WAL", h.GetLastLsn())
	}
	if h.GetAdvertisedHost() == "" || h.GetAdvertisedPort() <= 0 {
		s.t.Errorf("hello: advertised address %q:%d is not set", h.GetAdvertisedHost(), h.GetAdvertisedPort())
	}
}

func (s *script) view(role linkv1.Role, epoch uint32) {
	s.viewWith(role, epoch, nil)
}

// viewWith sends a view that edit may change first.
func (s *script) viewWith(role linkv1.Role, epoch uint32, edit func(*linkv1.ClusterView)) {
	h := s.c.hello
	self := &linkv1.BrokerInfo{NodeId: s.tg.NodeID, Host: h.GetAdvertisedHost(), Port: h.GetAdvertisedPort(), Rack: h.GetRack()}
	leader := s.tg.NodeID
	if role == linkv1.Role_ROLE_FOLLOWER {
		leader = s.tg.NodeID + 1 // some other node
	}
	v := &linkv1.ClusterView{
		Role: role, LeaderId: leader, Epoch: epoch, Brokers: []*linkv1.BrokerInfo{self}, Isr: []int32{s.tg.NodeID},
	}
	if edit != nil {
		edit(v)
	}
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_ClusterView{ClusterView: v}})
}

// partHandingOver checks ClusterView.handing_over (a leader's sidecar
// that stops hands the leadership over): the broker applies the view
// before it answers the checksum request behind it, whose last_lsn is
// then the WAL's final end, and it appends nothing of its own until a
// view without the flag.
func (s *script) partHandingOver(log []*linkv1.Entry) {
	if !s.c.hello.GetReadsHandingOver() {
		s.t.Log("the broker's hello does not set reads_handing_over: nothing to check")
		return
	}
	last := log[len(log)-1].GetLsn()
	s.viewWith(linkv1.Role_ROLE_LEADER, 1, func(v *linkv1.ClusterView) { v.HandingOver = true })
	if r := s.checksum(1, last); r.GetLastLsn() != last || r.GetError() != "" {
		s.t.Fatalf("checksum after the handing-over view: last_lsn %d (error %q), want %d", r.GetLastLsn(), r.GetError(), last)
	}
	if s.tg.TryProduce != nil {
		if err := s.tg.TryProduce(s.t); err == nil {
			s.t.Fatal("the broker took a write after a handing-over view")
		} else {
			s.t.Logf("a write after the handing-over view was refused: %v", err)
		}
		if r := s.checksum(1, last); r.GetLastLsn() != last {
			s.t.Fatalf("the WAL grew to LSN %d after a handing-over view (it ended at %d)", r.GetLastLsn(), last)
		}
	}
	s.view(linkv1.Role_ROLE_LEADER, 1) // lifted: later parts expect the log as produced
}

// partHeartbeats checks LinkHeartbeat (a frozen or stuck leader's sidecar
// stops vouching for the leadership): see the package comment. The writes
// it makes are pushed as the leader's, and it returns the log with them.
func (s *script) partHeartbeats(log []*linkv1.Entry) []*linkv1.Entry {
	if !s.c.hello.GetReadsHeartbeats() || s.tg.TryProduce == nil {
		s.t.Log("the broker's hello does not set reads_heartbeats, or Target.TryProduce is not set: nothing to check")
		return log
	}
	const fence, every = time.Second, 100 * time.Millisecond
	last := log[len(log)-1].GetLsn()
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Subscribe{Subscribe: &linkv1.SubscribeCommitted{FromLsn: last + 1}}})
	s.viewWith(linkv1.Role_ROLE_LEADER, 1, func(v *linkv1.ClusterView) {
		v.FenceAfterMs, v.HeartbeatIntervalMs = uint32(fence/time.Millisecond), uint32(every/time.Millisecond)
	})
	stop := s.heartbeats(1, every)
	time.Sleep(2 * fence)
	err := s.tg.TryProduce(s.t)
	stop()
	if err != nil {
		s.t.Fatalf("a write %v after a leader view with fence_after_ms %d, with a heartbeat of its epoch every %v, was refused: %v",
			2*fence, fence/time.Millisecond, every, err)
	}
	// Silence on the open stream.
	time.Sleep(2 * fence)
	if err := s.tg.TryProduce(s.t); err == nil {
		s.t.Fatalf("the broker took a write with no heartbeat for %v (fence_after_ms %d)", 2*fence, fence/time.Millisecond)
	} else {
		s.t.Logf("a write with the sidecar silent was refused: %v", err)
	}
	// A heartbeat whose lease went stale before it was read lifts nothing
	// (the checksum's answer comes after the broker handled the heartbeat
	// sent before it); the next fresh one lifts the fence.
	stale := uint64(time.Now().Add(-time.Second).UnixMilli())
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Heartbeat{Heartbeat: &linkv1.LinkHeartbeat{Epoch: 1, FreshUntilUnixMs: stale}}})
	s.checksum(1, 1)
	if err := s.tg.TryProduce(s.t); err == nil {
		s.t.Fatal("the broker took a write after a heartbeat whose fresh_until_unix_ms had passed when it arrived")
	}
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Heartbeat{Heartbeat: &linkv1.LinkHeartbeat{Epoch: 1}}})
	s.checksum(1, 1)
	stop = s.heartbeats(1, every)
	err = s.tg.TryProduce(s.t)
	stop()
	if err != nil {
		s.t.Fatalf("a write after the sidecar's heartbeats came again was refused: %v", err)
	}
	s.view(linkv1.Role_ROLE_LEADER, 1) // no heartbeats: later parts expect no fence

	r, now := s.replay(1, 64<<20)
	if r.GetStatus() != linkv1.ReplayStatus_REPLAY_STATUS_OK || !r.GetEndOfLog() || len(now) < len(log)+2 {
		s.t.Fatalf("replay of the whole log: status %v end_of_log %v with %d entries (%s); want at least %d",
			r.GetStatus(), r.GetEndOfLog(), len(now), r.GetError(), len(log)+2)
	}
	for i, e := range log {
		if !proto.Equal(e, now[i]) {
			s.t.Fatalf("entry %d changed", e.GetLsn())
		}
	}
	s.waitPushed(now[len(now)-1].GetLsn())
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Subscribe{Subscribe: &linkv1.SubscribeCommitted{FromLsn: 0}}})
	return now
}

// heartbeats sends a LinkHeartbeat of epoch at once and then every
// interval until the returned function is called; the script sends
// nothing else meanwhile.
func (s *script) heartbeats(epoch uint32, every time.Duration) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			m := &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Heartbeat{Heartbeat: &linkv1.LinkHeartbeat{Epoch: epoch}}}
			if s.c.stream.Send(m) != nil {
				return
			}
			select {
			case <-t.C:
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// replay sends a ReplayRequest and collects the chunks.
func (s *script) replay(from, maxBytes uint64) (*linkv1.ReplayResult, []*linkv1.Entry) {
	s.t.Helper()
	s.nextID++
	id := s.nextID
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Replay{Replay: &linkv1.ReplayRequest{
		RequestId: id, FromLsn: from, MaxBytes: maxBytes}}})
	var ents []*linkv1.Entry
	for {
		m := s.reply(fmt.Sprintf("ReplayResult for request %d", id))
		r := m.GetReplayResult()
		if r == nil {
			s.t.Fatalf("answer to ReplayRequest %d is %T", id, m.GetPayload())
		}
		if r.GetRequestId() != id {
			s.t.Fatalf("ReplayResult request_id %d, want %d", r.GetRequestId(), id)
		}
		if r.GetStatus() != linkv1.ReplayStatus_REPLAY_STATUS_OK && len(r.GetEntries()) > 0 {
			s.t.Fatalf("ReplayResult with status %v carries %d entries", r.GetStatus(), len(r.GetEntries()))
		}
		for _, e := range r.GetEntries() {
			want := from + uint64(len(ents))
			if e.GetLsn() != want {
				s.t.Fatalf("replay from %d: entry LSN %d where %d was expected", from, e.GetLsn(), want)
			}
			ents = append(ents, e)
		}
		if r.GetDone() {
			return r, ents
		}
		if r.GetStatus() != linkv1.ReplayStatus_REPLAY_STATUS_OK {
			s.t.Fatalf("ReplayResult with status %v is not marked done", r.GetStatus())
		}
	}
}

// waitPushed waits until the broker pushed every entry up to lsn.
func (s *script) waitPushed(lsn uint64) []*linkv1.Entry {
	s.t.Helper()
	deadline := time.NewTimer(s.timeout)
	defer deadline.Stop()
	for {
		s.c.mu.Lock()
		ents, err, sig := s.c.committed, s.c.pushErr, s.c.pushed
		s.c.mu.Unlock()
		if err != nil {
			s.t.Fatal(err)
		}
		if n := len(ents); n > 0 && ents[n-1].GetLsn() >= lsn {
			return ents
		}
		select {
		case <-sig:
		case <-deadline.C:
			got := uint64(0)
			if n := len(ents); n > 0 {
				got = ents[n-1].GetLsn()
			}
			s.t.Fatalf("the broker pushed committed entries up to LSN %d within %s, want %d", got, s.timeout, lsn)
		}
	}
}

func (s *script) partLeader() []*linkv1.Entry {
	s.view(linkv1.Role_ROLE_LEADER, 1)
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Subscribe{Subscribe: &linkv1.SubscribeCommitted{FromLsn: 1}}})
	// A commit point that keeps up with the pushes lets acks=all produces
	// complete, as a sidecar with no followers would.
	stopCommit := make(chan struct{})
	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		var sent uint64
		for {
			s.c.mu.Lock()
			sig := s.c.pushed
			var last uint64
			if n := len(s.c.committed); n > 0 {
				last = s.c.committed[n-1].GetLsn()
			}
			s.c.mu.Unlock()
			if last > sent {
				// The script's goroutine does not send while Produce runs.
				if s.c.stream.Send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Commit{Commit: &linkv1.CommitPoint{Lsn: last}}}) != nil {
					return
				}
				sent = last
			}
			select {
			case <-sig:
			case <-stopCommit:
				return
			}
		}
	}()
	s.tg.Produce(s.t, 5)
	close(stopCommit)
	<-commitDone

	r, log := s.replay(1, 64<<20)
	if r.GetStatus() != linkv1.ReplayStatus_REPLAY_STATUS_OK || !r.GetEndOfLog() {
		s.t.Fatalf("replay of the whole log: status %v end_of_log %v (%s)", r.GetStatus(), r.GetEndOfLog(), r.GetError())
	}
	if len(log) < 5 {
		s.t.Fatalf("after producing 5 records the WAL holds %d entries", len(log))
	}
	for _, e := range log {
		if e.GetEpoch() != 1 {
			s.t.Fatalf("entry %d written as leader of epoch 1 has epoch %d", e.GetLsn(), e.GetEpoch())
		}
		if e.GetType() == linkv1.EntryType_ENTRY_TYPE_UNSPECIFIED {
			s.t.Fatalf("entry %d has type 0", e.GetLsn())
		}
		if e.PayloadCrc32C != nil && e.GetPayloadCrc32C() != crc32.Checksum(e.GetPayload(), castagnoli) {
			s.t.Fatalf("entry %d: payload_crc32c %08x, its payload's CRC-32C is %08x", e.GetLsn(), e.GetPayloadCrc32C(), crc32.Checksum(e.GetPayload(), castagnoli))
		}
	}
	last := log[len(log)-1].GetLsn()
	pushed := s.waitPushed(last)
	for i, e := range log {
		if !proto.Equal(e, pushed[i]) {
			s.t.Fatalf("pushed entry %d differs from the replayed one", e.GetLsn())
		}
	}
	if r.GetDurableLsn() < last || r.GetFirstLsn() != 1 {
		s.t.Fatalf("ReplayResult: first_lsn %d durable_lsn %d, want 1 and >= %d", r.GetFirstLsn(), r.GetDurableLsn(), last)
	}
	// Stop pushing: nothing more may arrive after the broker answers the
	// next request (the broker handles requests of one kind in order, so
	// probe with a replay).
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Subscribe{Subscribe: &linkv1.SubscribeCommitted{FromLsn: 0}}})
	return log
}

func (s *script) partReplay(log []*linkv1.Entry) {
	last := log[len(log)-1].GetLsn()
	tests := []struct {
		name     string
		from     uint64
		maxBytes uint64
		status   linkv1.ReplayStatus
		minEnts  int
	}{
		{"from the middle", last/2 + 1, 0, linkv1.ReplayStatus_REPLAY_STATUS_OK, int(last - last/2)},
		{"a 1-byte budget still returns one entry", 2, 1, linkv1.ReplayStatus_REPLAY_STATUS_OK, 1},
		{"at the end: nothing, end of log", last + 1, 0, linkv1.ReplayStatus_REPLAY_STATUS_OK, 0},
		{"beyond the end", last + 2, 0, linkv1.ReplayStatus_REPLAY_STATUS_OUT_OF_RANGE, 0},
		{"from LSN 0", 0, 0, linkv1.ReplayStatus_REPLAY_STATUS_OUT_OF_RANGE, 0},
	}
	for _, tc := range tests {
		r, ents := s.replay(tc.from, tc.maxBytes)
		if r.GetStatus() != tc.status || len(ents) < tc.minEnts {
			s.t.Fatalf("%s: replay from %d: status %v with %d entries, want %v with at least %d",
				tc.name, tc.from, r.GetStatus(), len(ents), tc.status, tc.minEnts)
		}
		for _, e := range ents {
			if !proto.Equal(e, log[e.GetLsn()-1]) {
				s.t.Fatalf("%s: replayed entry %d differs from the first replay", tc.name, e.GetLsn())
			}
		}
	}
	s.c.mu.Lock()
	n := len(s.c.committed)
	s.c.mu.Unlock()
	if uint64(n) != last {
		s.t.Fatalf("the broker pushed %d entries after SubscribeCommitted{0} (log ends at %d)", n, last)
	}
}

// checksum asks for the checksum of [from, to].
func (s *script) checksum(from, to uint64) *linkv1.ChecksumResult {
	s.t.Helper()
	s.nextID++
	id := s.nextID
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Checksum{Checksum: &linkv1.ChecksumRequest{
		RequestId: id, FromLsn: from, ToLsn: to}}})
	m := s.reply(fmt.Sprintf("ChecksumResult for request %d", id))
	r := m.GetChecksumResult()
	if r == nil || r.GetRequestId() != id {
		s.t.Fatalf("answer to ChecksumRequest %d: %v", id, m)
	}
	return r
}

func (s *script) partChecksum(log []*linkv1.Entry) {
	last := log[len(log)-1].GetLsn()
	r := s.checksum(1, last)
	if r.GetError() != "" || r.GetChecksum() != Checksum(log) || r.GetFirstLsn() != 1 || r.GetLastLsn() != last {
		s.t.Fatalf("checksum of [1, %d]: %016x (error %q, first %d, last %d), want %016x, first 1, last %d",
			last, r.GetChecksum(), r.GetError(), r.GetFirstLsn(), r.GetLastLsn(), Checksum(log), last)
	}
	if r := s.checksum(2, 3); r.GetChecksum() != Checksum(log[1:3]) {
		s.t.Fatalf("checksum of [2, 3]: %016x, want %016x", r.GetChecksum(), Checksum(log[1:3]))
	}
	if r := s.checksum(1, last+5); r.GetError() == "" {
		s.t.Fatalf("checksum of [1, %d] beyond the log's end %d reported no error", last+5, last)
	}
}

// applied sends ApplyEntries and returns the AppliedUpTo answer.
func (s *script) applied(ents []*linkv1.Entry) *linkv1.AppliedUpTo {
	s.t.Helper()
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: ents}}})
	m := s.reply("AppliedUpTo")
	a := m.GetApplied()
	if a == nil {
		s.t.Fatalf("answer to ApplyEntries is %T, want AppliedUpTo", m.GetPayload())
	}
	return a
}

func (s *script) truncate(lsn uint64) *linkv1.TruncatedTo {
	s.t.Helper()
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_TruncateTo{TruncateTo: &linkv1.TruncateTo{Lsn: lsn}}})
	m := s.reply("TruncatedTo")
	tr := m.GetTruncated()
	if tr == nil {
		s.t.Fatalf("answer to TruncateTo is %T, want TruncatedTo", m.GetPayload())
	}
	return tr
}

func noop(lsn uint64, epoch uint32) *linkv1.Entry {
	return &linkv1.Entry{Lsn: lsn, Epoch: epoch, Type: linkv1.EntryType_ENTRY_TYPE_NOOP}
}

func (s *script) partFollower(log []*linkv1.Entry) {
	last := log[len(log)-1].GetLsn()
	s.view(linkv1.Role_ROLE_FOLLOWER, 1)
	k := last / 2
	tr := s.truncate(k)
	if tr.GetError() != "" || tr.GetLastLsn() != k {
		s.t.Fatalf("TruncateTo %d: last_lsn %d, error %q", k, tr.GetLastLsn(), tr.GetError())
	}
	checkHistory(s.t, "TruncatedTo", tr.GetEpochHistory(), 1, k)
	if r := s.checksum(1, k); r.GetChecksum() != Checksum(log[:k]) {
		s.t.Fatalf("after truncating to %d the checksum of [1, %d] changed", k, k)
	}

	// The leader's entries come back in two batches.
	mid := k + (last-k)/2
	if a := s.applied(log[k:mid]); a.GetError() != "" || a.GetLsn() != mid {
		s.t.Fatalf("ApplyEntries %d..%d: AppliedUpTo %d, error %q", k+1, mid, a.GetLsn(), a.GetError())
	}
	if a := s.applied(log[mid:]); a.GetError() != "" || a.GetLsn() != last {
		s.t.Fatalf("ApplyEntries %d..%d: AppliedUpTo %d, error %q", mid+1, last, a.GetLsn(), a.GetError())
	}
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Commit{Commit: &linkv1.CommitPoint{Lsn: last}}})
	if r := s.checksum(1, last); r.GetChecksum() != Checksum(log) {
		s.t.Fatalf("after re-applying, the checksum of [1, %d] is %016x, want %016x: entries were not stored unchanged",
			last, r.GetChecksum(), Checksum(log))
	}
	// Entries it already holds are skipped, not applied twice.
	if a := s.applied(log[last-2:]); a.GetError() != "" || a.GetLsn() != last {
		s.t.Fatalf("re-sending entries %d..%d: AppliedUpTo %d, error %q (want %d, no error)", last-1, last, a.GetLsn(), a.GetError(), last)
	}
	// A gap is refused and changes nothing.
	if a := s.applied([]*linkv1.Entry{noop(last+2, 1)}); a.GetError() == "" || a.GetLsn() != last {
		s.t.Fatalf("entry %d after %d (a gap): AppliedUpTo %d, error %q (want %d and an error)", last+2, last, a.GetLsn(), a.GetError(), last)
	}
	// An entry whose payload does not match its payload_crc32c was
	// damaged on the way: refused, and nothing of it is written.
	damaged := noop(last+1, 2)
	damaged.Payload = []byte("bytes the sender's checksum does not cover")
	damaged.PayloadCrc32C = proto.Uint32(crc32.Checksum([]byte("bytes the sender read"), castagnoli))
	if a := s.applied([]*linkv1.Entry{damaged}); a.GetError() == "" || a.GetLsn() != last {
		s.t.Fatalf("entry %d with a payload that does not match its payload_crc32c: AppliedUpTo %d, error %q (want %d and an error)",
			last+1, a.GetLsn(), a.GetError(), last)
	}
	// A new epoch starts with a NOOP entry.
	if a := s.applied([]*linkv1.Entry{noop(last+1, 2)}); a.GetError() != "" || a.GetLsn() != last+1 {
		s.t.Fatalf("NOOP of epoch 2 at %d: AppliedUpTo %d, error %q", last+1, a.GetLsn(), a.GetError())
	}
	tr = s.truncate(last + 1) // keeps everything: reports the epoch history
	hist := tr.GetEpochHistory()
	if tr.GetError() != "" || tr.GetLastLsn() != last+1 || len(hist) == 0 ||
		hist[len(hist)-1].GetEpoch() != 2 || hist[len(hist)-1].GetStartLsn() != last+1 {
		s.t.Fatalf("after a NOOP of epoch 2 at %d: TruncatedTo last_lsn %d, history %v, error %q", last+1, tr.GetLastLsn(), hist, tr.GetError())
	}
	if r := s.checksum(1, last+1); r.GetChecksum() != Checksum(append(append([]*linkv1.Entry{}, log...), noop(last+1, 2))) {
		s.t.Fatalf("checksum including the NOOP differs from the expected one")
	}
}

func (s *script) partReset(log []*linkv1.Entry) {
	next := log[len(log)-1].GetLsn() + 10
	s.send(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_ResetTo{ResetTo: &linkv1.ResetTo{NextLsn: next}}})
	m := s.reply("ResetDone")
	d := m.GetResetDone()
	if d == nil || d.GetError() != "" || d.GetNextLsn() != next {
		s.t.Fatalf("answer to ResetTo %d: %v, want ResetDone next_lsn %d", next, m, next)
	}
	r, _ := s.replay(1, 0)
	if r.GetStatus() != linkv1.ReplayStatus_REPLAY_STATUS_COMPACTED || r.GetFirstLsn() != next {
		s.t.Fatalf("replay from 1 after ResetTo %d: status %v first_lsn %d, want COMPACTED and %d", next, r.GetStatus(), r.GetFirstLsn(), next)
	}
	if a := s.applied([]*linkv1.Entry{noop(next, 3)}); a.GetError() != "" || a.GetLsn() != next {
		s.t.Fatalf("first entry after the reset (LSN %d): AppliedUpTo %d, error %q", next, a.GetLsn(), a.GetError())
	}
}

func (s *script) partReattach() {
	old := s.c
	old.end <- errors.New("conformance: the sidecar ends the stream")
	<-old.done
	h := s.accept()
	// The broker holds exactly the one NOOP after the reset.
	hist := h.GetEpochHistory()
	if h.GetFirstLsn() != h.GetLastLsn() || h.GetDurableLsn() != h.GetLastLsn() || len(hist) == 0 || hist[len(hist)-1].GetEpoch() != 3 {
		s.t.Fatalf("hello after reattaching: first %d last %d durable %d history %v; want one durable entry of epoch 3",
			h.GetFirstLsn(), h.GetLastLsn(), h.GetDurableLsn(), hist)
	}
}
