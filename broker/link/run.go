package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tandem-io/tandem/broker/wal"
	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	"github.com/tandem-io/tandem/internal/grpcwire"
	tlog "github.com/tandem-io/tandem/internal/logging"
)

// Reconnect backoff: the first retry comes after about MinBackoff, each
// failed attempt doubles the delay up to MaxBackoff, and every delay is
// drawn at random from [d/2, d] so that restarts do not synchronise.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 2 * time.Second
)

// Run attaches to the sidecar at socketPath and keeps the link up
// (reconnecting with capped exponential backoff and jitter) until ctx is
// done; then it returns nil. While detached the broker keeps serving with
// the last cluster view it received, except that a leader whose view set
// FenceAfter stops taking writes once the link has been down that long, or
// (with HeartbeatEvery) once the sidecar has been silent that long on an
// open stream (viewGate): its sidecar's etcd lease may expire after that,
// and another node be elected.
func Run(ctx context.Context, socketPath string, b Broker, logger hclog.Logger) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if socketPath == "" {
		return errors.New("link: no sidecar socket path")
	}
	var stopping <-chan struct{} // nil: never
	if st, ok := b.(Stopper); ok {
		stopping = st.Stopping()
	}
	delay := MinBackoff
	views := &viewGate{b: b, log: logger}
	defer views.disarm()
	saidRefused := false // the first refusal is logged, whatever the attempt
	for attempt := 1; ; attempt++ {
		attached, err := attachOnce(ctx, socketPath, b, views, stopping, logger)
		if ctx.Err() != nil || closed(stopping) {
			return nil
		}
		views.arm()
		refused := refusedPairing(err)
		if attached && !refused {
			delay = MinBackoff
			attempt = 1
		}
		d := delay/2 + rand.N(delay/2+1)
		if refused {
			// A configuration error, which retrying does not fix; it is
			// retried (at the longest backoff) so that the broker attaches
			// once the operator has fixed it.
			if !saidRefused || attempt%10 == 0 {
				saidRefused = true
				logger.Error("the sidecar and this broker do not belong together; retrying until the configuration is fixed",
					"socket", socketPath, "attempt", attempt, "error", err, "retry_in", d.Round(time.Millisecond))
			}
		} else if attached {
			logger.Warn("sidecar link lost; the broker keeps serving with its last cluster view and reattaches",
				"socket", socketPath, "error", err, "retry_in", d.Round(time.Millisecond))
		} else if attempt == 1 || attempt%10 == 0 {
			logger.Warn("cannot attach to sidecar; retrying", "socket", socketPath, "attempt", attempt,
				"error", err, "retry_in", d.Round(time.Millisecond))
		} else {
			logger.Debug("cannot attach to sidecar; retrying", "socket", socketPath, "attempt", attempt,
				"error", err, "retry_in", d.Round(time.Millisecond))
		}
		delay = min(delay*2, MaxBackoff)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-stopping:
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// refusedPairing reports whether a stream ended because the broker and the
// sidecar are not configured to work together: the sidecar refused the
// hello (FAILED_PRECONDITION: another node id or cluster id), or the
// sidecar serves another cluster (ErrOtherCluster).
func refusedPairing(err error) bool {
	return errors.Is(err, ErrOtherCluster) || status.Code(err) == codes.FailedPrecondition
}

// viewGate hands the sidecar's cluster views to the broker, and fences a
// leader whose sidecar may have lost its etcd lease without being able to
// say so: the broker becomes a follower of no known leader, as its sidecar
// would make it on stepping down, so it takes no more writes and its
// Metadata names no leader, and clients look for the new one elsewhere.
// Two things fence, both after the last view's FenceAfter:
//
//   - the link broke (arm, called when a stream ends) and no new stream
//     brought a view since: the sidecar crashed or was stopped;
//   - under a view with HeartbeatEvery, neither a heartbeat nor a view came
//     on a stream that is still open: the sidecar is frozen (SIGSTOP) or
//     stuck. Its next heartbeat of the same epoch lifts that fence, since
//     the sidecar sends heartbeats only while its lease is fresh.
//
// One mutex orders the timer's view, the heartbeats and the streams'
// views, so the broker sees views one at a time (SetClusterView's
// contract).
type viewGate struct {
	b   Broker
	log hclog.Logger

	mu   sync.Mutex
	last *ClusterView // the latest view the sidecar sent (nil: none, or fenced since)
	// silenced is the view a silence fence took away while the stream
	// stayed open; a heartbeat of its epoch gives it back.
	silenced *ClusterView
	detached bool        // the stream ended (arm) and no view came since
	timer    *time.Timer // armed: the fence to come
	gen      uint64      // bumped by every view and heartbeat, so a stale timer does nothing
}

// watched reports whether the sidecar vouches for v with heartbeats.
func (v *ClusterView) watched() bool {
	return v.Role == RoleLeader && v.FenceAfter > 0 && v.HeartbeatEvery > 0
}

// set gives the broker a view from the sidecar; it restarts the silence
// fence under a view with heartbeats, and disarms it otherwise.
func (g *viewGate) set(v ClusterView) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
	g.silenced, g.detached = nil, false
	// The bound first: one left from an earlier view may have passed.
	if v.watched() {
		g.boundWrites(time.Now().Add(v.FenceAfter))
	} else {
		g.boundWrites(time.Time{})
	}
	g.b.SetClusterView(v)
	g.last = &v
	if v.watched() {
		g.startLocked(v)
	}
}

// boundWrites tells a broker that implements WritesBounder when its fence
// is due (zero: none is).
func (g *viewGate) boundWrites(t time.Time) {
	if wb, ok := g.b.(WritesBounder); ok {
		wb.SetWritesUntil(t)
	}
}

// heartbeat records the sidecar's heartbeat for epoch, which vouches for
// the leadership until `until` (zero: no bound): it restarts the silence
// fence, or lifts it when it took the writes away. A heartbeat read after
// its bound was held up on the way (both processes frozen, say) and
// counts for nothing.
func (g *viewGate) heartbeat(epoch uint32, until time.Time) {
	if !until.IsZero() && !time.Now().Before(until) {
		g.log.Debug("ignoring a sidecar heartbeat that arrived after the lease it vouched for went stale", "epoch", epoch,
			"fresh_until", until)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if v := g.silenced; v != nil && v.Epoch == epoch {
		g.silenced = nil
		g.log.Info("the sidecar is heard from again and still leads; taking writes again", "epoch", epoch)
		g.boundWrites(time.Now().Add(v.FenceAfter))
		g.b.SetClusterView(*v)
		g.last = v
	}
	if v := g.last; v != nil && v.watched() && v.Epoch == epoch && !g.detached {
		g.stopLocked()
		g.startLocked(*v)
	}
}

// arm starts the fence when the link has broken while the broker led under
// a view with FenceAfter (once per break: a new view disarms it). A silence
// fence already under way goes on: it is due sooner.
func (g *viewGate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.silenced, g.detached = nil, true // a new stream starts with a view
	v := g.last
	if g.timer != nil || v == nil || v.Role != RoleLeader || v.FenceAfter <= 0 {
		return
	}
	g.startLocked(*v)
}

// startLocked starts the fence for v, due in v.FenceAfter.
func (g *viewGate) startLocked(v ClusterView) {
	gen := g.gen
	g.boundWrites(time.Now().Add(v.FenceAfter))
	g.timer = time.AfterFunc(v.FenceAfter, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.gen != gen {
			return // a view or heartbeat came meanwhile
		}
		g.timer = nil
		g.last = nil
		if g.detached {
			g.log.Warn("the sidecar has been gone for a while and this broker led; taking no more writes, since another node may be elected by now (they resume when the sidecar is back)",
				"gone_for", v.FenceAfter, "epoch", v.Epoch)
		} else {
			g.silenced = &v
			g.log.Warn("the sidecar has sent no heartbeat for a while and this broker led: it is frozen or stuck, and another node may be elected by now; taking no more writes (they resume when it is heard from again)",
				"silent_for", v.FenceAfter, "epoch", v.Epoch)
		}
		g.b.SetClusterView(ClusterView{Role: RoleFollower, LeaderID: -1, Epoch: v.Epoch, Brokers: v.Brokers})
	})
}

// disarm stops a pending fence (Run returns).
func (g *viewGate) disarm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
}

func (g *viewGate) stopLocked() {
	g.gen++
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
}

// closed reports whether ch is closed (false for a nil channel).
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// attachOnce runs one Attach stream until it fails. attached reports
// whether the sidecar answered at all (which resets the backoff).
func attachOnce(ctx context.Context, socketPath string, b Broker, views *viewGate, stopping <-chan struct{}, logger hclog.Logger) (attached bool, err error) {
	glog := tlog.GRPC(logger.Named("grpc"))
	conn, err := grpc.NewClient("unix:"+socketPath, append(grpcwire.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithChainStreamInterceptor(logging.StreamClientInterceptor(glog,
			logging.WithLogOnEvents(logging.FinishCall))),
	)...)
	if err != nil {
		return false, fmt.Errorf("link: dialing %s: %w", socketPath, err)
	}
	defer conn.Close()

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := linkv1.NewLinkServiceClient(conn).Attach(sctx)
	if err != nil {
		return false, fmt.Errorf("link: opening Attach stream on %s: %w", socketPath, err)
	}
	s := &session{
		b:        b,
		w:        b.WAL(),
		log:      logger,
		stream:   stream,
		ctx:      sctx,
		cancel:   cancel,
		stopping: stopping,
		views:    views,
		out:      make(chan *linkv1.AttachRequest, outQueue),
		reply:    make(chan *linkv1.AttachRequest, replyQueue),
		ops:      make(chan *linkv1.AttachResponse, 64),
		acks:     make(chan pendingAck, 64),
		reads:    make(chan *linkv1.AttachResponse, 64),
	}
	err = s.run()
	return s.attached.Load(), err
}

// outQueue bounds the messages waiting for the sender goroutine. Pushed
// entries come in messages of about ChunkBytes (1 MiB), so this is also
// about how many MiB of WAL a broker holds in memory for a sidecar that
// reads slower than the broker writes; a handful keeps the stream busy.
const outQueue = 8

// replyQueue bounds the replay and checksum answers waiting for the sender
// goroutine, which does not queue them behind out's messages (sender): a
// follower catching up waits for each replay answer, and behind a full out
// queue of pushed entries (a leader taking writes at full speed) that wait
// was outQueue chunks long, every chunk; catching up then went slower the
// further behind a follower fell. A replay's chunks keep their order among
// themselves, and nothing on the sidecar orders them against pushes.
const replyQueue = 2

// session is one Attach stream.
type session struct {
	b      Broker
	w      *wal.Log
	log    hclog.Logger
	stream linkv1.LinkService_AttachClient
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	out   chan *linkv1.AttachRequest  // to the sender goroutine
	reply chan *linkv1.AttachRequest  // to the sender goroutine, in turns with out (readsWorker's answers)
	ops   chan *linkv1.AttachResponse // apply, truncate, reset, commit: in order
	acks  chan pendingAck             // AppliedUpTo replies waiting for durability, in order
	reads chan *linkv1.AttachResponse // replay and checksum requests

	attached atomic.Bool // the sidecar sent something
	follower atomic.Bool // the latest ClusterView says this broker follows
	// leading: the latest ClusterView says this broker leads, and the
	// sidecar reads BrokerStopping (stopWatcher).
	leading  atomic.Bool
	stopping <-chan struct{} // closed when the broker stops on purpose (Stopper); nil: never
	views    *viewGate       // the broker's cluster views go through it (Run's fence)
	walGen   atomic.Uint64   // bumped by truncate and reset: cached readers are stale

	commitMu      sync.Mutex
	commitWanted  uint64 // latest commit point from the sidecar
	commitApplied uint64 // last one handed to the broker
	commitCap     uint64 // no commit point above it (a refused divergence); 0: none

	// Owned by the receiver goroutine.
	pushCancel context.CancelFunc
	pushDone   chan struct{}
	storageOn  bool // storageWatcher runs (the sidecar reads StorageState)
}

func (s *session) goFunc(fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil {
			s.cancel(err)
		}
	}()
}

func (s *session) run() error {
	host, port := s.b.Advertised()
	hello := &linkv1.BrokerHello{
		NodeId:         s.b.NodeID(),
		AdvertisedHost: host,
		AdvertisedPort: port,
		FirstLsn:       s.w.FirstLSN(),
		LastLsn:        s.w.LastLSN(),
		DurableLsn:     s.w.DurableLSN(),
		EpochHistory:   EpochsToProto(s.w.EpochHistory()),
		// opsWorker takes the commit point from ApplyEntries too.
		ApplyCarriesCommit: true,
		// SetClusterView honours ClusterView.handing_over.
		ReadsHandingOver: true,
		// viewGate watches LinkHeartbeat.
		ReadsHeartbeats: true,
	}
	if r, ok := s.b.(Racker); ok {
		hello.Rack = r.Rack()
	}
	if k, ok := s.b.(ClusterKeeper); ok {
		hello.ClusterId = k.KeptClusterID()
	}
	if c, ok := s.b.(Committer); ok {
		hello.CommitLsn = min(c.CommitLSN(), hello.DurableLsn)
	}
	s.log.Info("attaching to sidecar", "node_id", hello.NodeId, "first_lsn", hello.FirstLsn,
		"last_lsn", hello.LastLsn, "durable_lsn", hello.DurableLsn, "commit_lsn", hello.CommitLsn)
	s.goFunc(func() error { return s.sender(hello) })
	s.goFunc(s.opsWorker)
	s.goFunc(s.acker)
	s.goFunc(s.readsWorker)
	s.goFunc(s.receiver)
	if s.stopping != nil {
		s.goFunc(s.stopWatcher)
	}
	<-s.ctx.Done()
	s.wg.Wait()
	if s.pushDone != nil {
		<-s.pushDone
	}
	return context.Cause(s.ctx)
}

// send queues m for the sender goroutine.
func (s *session) send(m *linkv1.AttachRequest) error { return s.queueOut(s.out, m) }

// sendReply queues a replay or checksum answer, which the sender does not
// queue behind out's messages.
func (s *session) sendReply(m *linkv1.AttachRequest) error { return s.queueOut(s.reply, m) }

func (s *session) queueOut(ch chan<- *linkv1.AttachRequest, m *linkv1.AttachRequest) error {
	select {
	case ch <- m:
		return nil
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
}

func (s *session) sender(hello *linkv1.BrokerHello) error {
	if err := s.stream.Send(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Hello{Hello: hello}}); err != nil {
		return fmt.Errorf("link: sending hello: %w", err)
	}
	// Answers and out's messages take turns when both are waiting: an answer
	// waits for at most one pushed chunk, and pushed entries (which an
	// in-sync follower and acks=all producers wait for) for at most one
	// chunk of a replay.
	replyTurn := true
	for {
		first, second := s.reply, s.out
		if !replyTurn {
			first, second = s.out, s.reply
		}
		var m *linkv1.AttachRequest
		var fromReply bool
		select {
		case m = <-first:
			fromReply = replyTurn
		default:
			select {
			case m = <-first:
				fromReply = replyTurn
			case m = <-second:
				fromReply = !replyTurn
			case <-s.ctx.Done():
				return nil
			}
		}
		replyTurn = !fromReply
		if err := s.stream.Send(m); err != nil {
			return fmt.Errorf("link: sending to sidecar: %w", err)
		}
	}
}

// checkCluster keeps the cluster id of a view (ClusterKeeper) the first
// time one comes, and refuses a view of another cluster than the kept one.
func (s *session) checkCluster(id string) error {
	k, ok := s.b.(ClusterKeeper)
	if id == "" || !ok {
		return nil // an older sidecar, or a broker that keeps none
	}
	switch kept := k.KeptClusterID(); kept {
	case id:
		return nil
	case "":
		if err := k.KeepClusterID(id); err != nil {
			return fmt.Errorf("link: keeping the cluster id %q: %w", id, err)
		}
		s.log.Info("this broker's data now belongs to the sidecar's cluster", "cluster_id", id)
		return nil
	default:
		return fmt.Errorf("%w: the sidecar serves cluster %q, but this broker's data directory belongs to cluster %q; check the sidecar's --cluster-id and the broker's --data-dir",
			ErrOtherCluster, id, kept)
	}
}

func (s *session) receiver() error {
	defer s.stopPush()
	for {
		m, err := s.stream.Recv()
		if err == io.EOF {
			return errors.New("link: sidecar closed the stream")
		}
		if err != nil {
			return fmt.Errorf("link: receiving from sidecar: %w", err)
		}
		if !s.attached.Swap(true) {
			s.log.Info("attached to sidecar")
		}
		switch p := m.GetPayload().(type) {
		case *linkv1.AttachResponse_ClusterView:
			if err := s.checkCluster(p.ClusterView.GetClusterId()); err != nil {
				return err
			}
			v := ViewFromProto(p.ClusterView)
			s.log.Debug("cluster view from sidecar", "role", v.Role, "leader_id", v.LeaderID, "epoch", v.Epoch,
				"brokers", len(v.Brokers), "isr", v.ISR)
			s.views.set(v)
			s.follower.Store(v.Role == RoleFollower)
			s.leading.Store(v.Role == RoleLeader && p.ClusterView.GetReadsBrokerStopping())
			if p.ClusterView.GetReadsStorageState() && !s.storageOn {
				s.storageOn = true
				s.goFunc(s.storageWatcher)
			}
		case *linkv1.AttachResponse_Heartbeat:
			var until time.Time
			if ms := p.Heartbeat.GetFreshUntilUnixMs(); ms > 0 {
				until = time.UnixMilli(int64(ms))
			}
			s.views.heartbeat(p.Heartbeat.GetEpoch(), until)
		case *linkv1.AttachResponse_Subscribe:
			s.stopPush()
			if from := p.Subscribe.GetFromLsn(); from > 0 {
				s.startPush(from)
			}
		case *linkv1.AttachResponse_Replay, *linkv1.AttachResponse_Checksum:
			if err := s.queue(s.reads, m); err != nil {
				return err
			}
		case *linkv1.AttachResponse_Apply, *linkv1.AttachResponse_TruncateTo, *linkv1.AttachResponse_ResetTo,
			*linkv1.AttachResponse_Commit:
			if err := s.queue(s.ops, m); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unknown payload %T", ErrBadMessage, m.GetPayload())
		}
	}
}

// errStopping ends a session when the broker stops and the sidecar need not
// hear of it (the broker follows, or the sidecar does not read
// BrokerStopping).
var errStopping = errors.New("link: the broker is stopping")

// stopWatcher is the link's side of a controlled shutdown (Stopper). When
// the broker stops while it leads, it tells the sidecar where the WAL ends
// and leaves the stream open: the pusher goes on sending the last durable
// entries, commit points keep reaching acks=all producers still waiting,
// and the session ends when the sidecar ends the stream (after handing the
// leadership over). Otherwise it ends the session at once.
func (s *session) stopWatcher() error {
	select {
	case <-s.stopping:
	case <-s.ctx.Done():
		return nil
	}
	if !s.leading.Load() {
		return errStopping
	}
	// The broker appends nothing once stopping is closed (package broker
	// fences its writes first), so this is the WAL's final end.
	last := s.w.LastLSN()
	s.log.Info("telling the sidecar that the broker is stopping (with etcd failover it hands the leadership over; a static leader's writes stop until the broker is back)", "last_lsn", last)
	m := &linkv1.BrokerStopping{Reason: "the broker is shutting down", LastLsn: last}
	s.send(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Stopping{Stopping: m}}) // fails only when the session ends anyway
	return nil
}

// storageWatcher tells the sidecar whether the WAL takes writes, and where
// it starts: at once when appends are failing, then at every change
// (wal.Log.WriteState), which includes retention deleting segments.
func (s *session) storageWatcher() error {
	st, changed := s.w.WriteState()
	report := st.Err != nil
	for {
		if report {
			m := &linkv1.StorageState{FirstLsn: st.FirstLSN}
			if st.Err != nil {
				m.Error, m.FailingSinceUnixMs = st.Err.Error(), st.Since.UnixMilli()
			}
			if err := s.send(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Storage{Storage: m}}); err != nil {
				return nil // the session is ending
			}
		}
		select {
		case <-changed:
		case <-s.ctx.Done():
			return nil
		}
		st, changed = s.w.WriteState()
		report = true
	}
}

func (s *session) queue(ch chan *linkv1.AttachResponse, m *linkv1.AttachResponse) error {
	select {
	case ch <- m:
		return nil
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
}

// startPush starts the goroutine that pushes durable entries from `from`.
func (s *session) startPush(from uint64) {
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.pushCancel, s.pushDone = cancel, done
	s.log.Info("pushing committed entries to sidecar", "from_lsn", from)
	go func() {
		defer close(done)
		if err := s.push(ctx, from); err != nil && ctx.Err() == nil {
			s.cancel(err)
		}
	}()
}

// stopPush stops the pusher and waits for it, so that two pushers never
// interleave their entries.
func (s *session) stopPush() {
	if s.pushCancel != nil {
		s.pushCancel()
		<-s.pushDone
		s.pushCancel, s.pushDone = nil, nil
	}
}

// push tails the WAL from `from` and sends every durable entry, in order,
// in messages of about ChunkBytes.
func (s *session) push(ctx context.Context, from uint64) error {
	r, err := s.w.NewReader(from)
	if err != nil {
		return fmt.Errorf("link: cannot push from LSN %d: %w", from, err)
	}
	defer r.Close()
	var batch []*linkv1.Entry
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		m := &linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Committed{Committed: &linkv1.CommittedEntries{
			Entries: batch, DurableLsn: s.w.DurableLSN(),
		}}}
		batch, size = nil, 0
		select {
		case s.out <- m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		durable := s.w.Durable() // before reading: no wake-up is missed
		for {
			e, _, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("link: reading WAL to push (after LSN %d): %w", from, err)
			}
			from = e.LSN + 1
			batch = append(batch, EntryToProto(e))
			size += len(e.Payload)
			if size >= ChunkBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		select {
		case <-durable:
		case <-ctx.Done():
			return nil
		}
	}
}
