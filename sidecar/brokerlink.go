package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// Errors of the broker link.
var (
	ErrNotLinked = errors.New("sidecar: broker not attached")
	ErrBroker    = errors.New("sidecar: broker reported an error")
)

// brokerConn is one attached broker (one Attach stream), seen from the
// sidecar. Requests to the broker go through ordered (a queue served by the
// stream's single sender goroutine); the commit point and the cluster view
// are "latest value" signals that never block the caller.
type brokerConn struct {
	log   hclog.Logger
	hello *linkv1.BrokerHello
	ctx   context.Context
	stop  context.CancelCauseFunc

	ordered chan *linkv1.AttachResponse // served by the sender goroutine

	commit    atomic.Uint64
	commitSig chan struct{} // cap 1
	// served is the highest commit point the broker said it serves (its
	// hello, then every AppliedUpTo and ChecksumResult), lowered by
	// truncations and wipes:
	// what this node's WAL is known to have committed (follower.go).
	served  atomic.Uint64
	view    atomic.Pointer[linkv1.ClusterView]
	viewSig chan struct{} // cap 1
	// mayWrite: the broker may be taking writes as far as the sidecar
	// knows. It was handed a leader view that takes writes (stored, even
	// if not sent yet), and no view that stops them has been confirmed
	// since (fenceAt). A link that ends while it is set leaves the broker
	// writing until its detached-link fence (fence_after_ms). viewMu
	// orders storing a view against clearing mayWrite.
	viewMu   sync.Mutex
	mayWrite atomic.Bool
	// clusterID is this sidecar's cluster id, sent in every view (set
	// before the sender starts).
	clusterID string
	// storage is the broker's latest StorageState (nil: none received, so
	// its appends work as far as the sidecar knows).
	storage atomic.Pointer[linkv1.StorageState]
	// stopping is set when the broker said it stops on purpose
	// (BrokerStopping); onStopping is called once then (set before the
	// receiver starts).
	stopping   atomic.Pointer[brokerStop]
	onStopping func(*brokerStop)
	// beatEvery and vouch (set before the sender starts): every beatEvery
	// the sender sends a LinkHeartbeat for the last leader view it sent,
	// when that view asks for them and vouch says until when the
	// leadership holds (ok false: it may not hold now). 0: no heartbeats.
	beatEvery time.Duration
	vouch     func() (until time.Time, ok bool)

	nextID atomic.Uint64

	mu        sync.Mutex
	replays   map[uint64]chan *linkv1.ReplayResult
	checksums map[uint64]chan *linkv1.ChecksumResult
	lastLSN   uint64       // broker WAL end as far as the sidecar knows (follower)
	history   epochHistory // broker WAL epoch history (follower)
	// posGen is bumped by every change of lastLSN and history, so that an
	// apply whose message never reached the queue can take its own change
	// back only when nothing else moved them meanwhile.
	posGen    uint64
	pending   int // ApplyEntries sent and not answered
	drained   chan struct{}
	applyErr  error
	onApplied func(lsn uint64) // called with each AppliedUpTo (follower)
	// onApplyErr is called when the broker refuses entries (follower): the
	// stream to the leader must end and resume from the broker's real
	// position, even if no further entries come to notice the error.
	onApplyErr func(error)
	onCommit   func(*linkv1.CommittedEntries)
	// onCommitApplied is called when the broker reports the commit point
	// it now serves (leader: followers are sent no more than that).
	onCommitApplied func(lsn uint64)
	// Callers waiting for TruncatedTo / ResetDone, oldest first: the broker
	// answers these requests in order.
	truncWaiters []chan *linkv1.TruncatedTo
	resetWaiters []chan *linkv1.ResetDone
}

// linkChunkBytes is the chunk size the broker's link uses for replays
// (link.ChunkBytes; the sidecar does not import the broker).
const linkChunkBytes = 1 << 20

// raiseServed records that the broker serves the commit point lsn.
func (c *brokerConn) raiseServed(lsn uint64) {
	for v := c.served.Load(); lsn > v && !c.served.CompareAndSwap(v, lsn); v = c.served.Load() {
	}
}

// lowerServed caps the served commit point at lsn (the WAL's new end).
func (c *brokerConn) lowerServed(lsn uint64) {
	for v := c.served.Load(); v > lsn && !c.served.CompareAndSwap(v, lsn); v = c.served.Load() {
	}
}

func newBrokerConn(ctx context.Context, hello *linkv1.BrokerHello, log hclog.Logger) *brokerConn {
	c, stop := context.WithCancelCause(ctx)
	bc := &brokerConn{
		log:       log,
		hello:     hello,
		ctx:       c,
		stop:      stop,
		ordered:   make(chan *linkv1.AttachResponse, 256),
		commitSig: make(chan struct{}, 1),
		viewSig:   make(chan struct{}, 1),
		replays:   map[uint64]chan *linkv1.ReplayResult{},
		checksums: map[uint64]chan *linkv1.ChecksumResult{},
		// A follower announces what its broker holds durably: entries it
		// has written but not yet fsynced are not flushed, and the leader
		// counts the announced position as flushed. The broker skips the
		// entries it already holds when they come again.
		lastLSN: hello.GetDurableLsn(),
		history: epochHistory(hello.GetEpochHistory()).clone().truncate(hello.GetDurableLsn()),
	}
	bc.served.Store(min(hello.GetCommitLsn(), hello.GetDurableLsn()))
	return bc
}

// sender is the only goroutine that calls stream.Send.
func (c *brokerConn) sender(stream linkv1.LinkService_AttachServer) error {
	var lastCommit uint64
	var lastView *linkv1.ClusterView
	carries := c.hello.GetApplyCarriesCommit()
	// withCommit gives an ApplyEntries the commit point when it is new.
	withCommit := func(m *linkv1.AttachResponse) {
		if a := m.GetApply(); a != nil && carries {
			if lsn := c.commit.Load(); lsn != lastCommit {
				a.CommitLsn, lastCommit = lsn, lsn
			}
		}
	}
	var beat <-chan time.Time
	if c.beatEvery > 0 && c.vouch != nil && c.hello.GetReadsHeartbeats() {
		t := time.NewTicker(c.beatEvery)
		defer t.Stop()
		beat = t.C
	}
	prefer := carries
	for {
		var m *linkv1.AttachResponse
		if prefer {
			// A follower's commit point usually arrives with the entries
			// it covers: a queued message goes first, so that the next
			// ApplyEntries takes it along instead of a CommitPoint of its
			// own (one message to the broker instead of two). Every other
			// round is a fair select, so a cluster view is never held up
			// by a stream of entries.
			select {
			case m = <-c.ordered:
			default:
			}
		}
		if m != nil {
			prefer = false
			withCommit(m)
			if err := stream.Send(m); err != nil {
				return fmt.Errorf("sidecar: sending to broker: %w", err)
			}
			continue
		}
		prefer = carries
		// newView is the latest view, when it differs from the last sent.
		newView := func() *linkv1.AttachResponse {
			v := c.view.Load()
			if v == nil || proto.Equal(v, lastView) {
				return nil
			}
			lastView = v
			return &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_ClusterView{ClusterView: v}}
		}
		select {
		case <-c.ctx.Done():
			return nil
		case <-c.viewSig:
			if m = newView(); m == nil {
				continue
			}
		case <-c.commitSig:
			lsn := c.commit.Load()
			if lsn == lastCommit {
				continue
			}
			// A view set before this commit point goes first. The leader
			// sets the smaller ISR of a shrink before the commit point the
			// shrink lets through, and the broker checks an acks=all
			// batch's ISR against min.insync.replicas when its commit
			// point arrives: with the old view it would answer success
			// for a batch fewer replicas hold than the topic requires.
			select {
			case <-c.viewSig:
				if v := newView(); v != nil {
					if err := stream.Send(v); err != nil {
						return fmt.Errorf("sidecar: sending to broker: %w", err)
					}
				}
			default:
			}
			lastCommit = lsn
			m = &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Commit{Commit: &linkv1.CommitPoint{Lsn: lsn}}}
		case m = <-c.ordered:
			withCommit(m)
		case <-beat:
			// A newer view goes instead (a view vouches too): a heartbeat
			// must not vouch for a leader view already replaced.
			if m = newView(); m != nil {
				break
			}
			v := lastView
			if v.GetRole() != linkv1.Role_ROLE_LEADER || v.GetHeartbeatIntervalMs() == 0 {
				continue
			}
			until, ok := c.vouch()
			if !ok {
				continue
			}
			m = &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Heartbeat{Heartbeat: &linkv1.LinkHeartbeat{
				Epoch: v.GetEpoch(), FreshUntilUnixMs: uint64(until.UnixMilli())}}}
		}
		if err := stream.Send(m); err != nil {
			return fmt.Errorf("sidecar: sending to broker: %w", err)
		}
	}
}

// receive dispatches one message from the broker.
func (c *brokerConn) receive(m *linkv1.AttachRequest) error {
	switch p := m.GetPayload().(type) {
	case *linkv1.AttachRequest_Committed:
		if f := c.onCommit; f != nil {
			f(p.Committed)
		}
	case *linkv1.AttachRequest_CommitApplied:
		if f := c.onCommitApplied; f != nil {
			f(p.CommitApplied.GetLsn())
		}
	case *linkv1.AttachRequest_Storage:
		st := p.Storage
		if st.GetError() != "" {
			c.log.Error("the broker cannot write its WAL: this node is not ready; under etcd failover it does not stand for election, and leading it resigns after one lease TTL",
				"error", st.GetError(), "failing_since", time.UnixMilli(st.GetFailingSinceUnixMs()).UTC().Format(time.RFC3339Nano))
		} else if c.storage.Load().GetError() != "" {
			c.log.Info("the broker writes its WAL again")
		}
		c.storage.Store(st)
	case *linkv1.AttachRequest_ReplayResult:
		c.mu.Lock()
		ch := c.replays[p.ReplayResult.GetRequestId()]
		c.mu.Unlock()
		if ch == nil {
			if id := p.ReplayResult.GetRequestId(); id == 0 || id > c.nextID.Load() {
				return fmt.Errorf("%w: replay result for unknown request %d", errBadBrokerMessage, id)
			}
			// A replay whose caller gave up (its follower's stream ended):
			// the rest of its answer has nowhere to go. The link and the
			// other followers carry on.
			return nil
		}
		select {
		case ch <- p.ReplayResult:
		default:
			// The channel holds every chunk the request can produce, so
			// this only happens when the broker sends more than asked.
			return fmt.Errorf("%w: more replay chunks than requested for request %d", errBadBrokerMessage, p.ReplayResult.GetRequestId())
		}
	case *linkv1.AttachRequest_ChecksumResult:
		c.raiseServed(p.ChecksumResult.GetCommitLsn())
		c.mu.Lock()
		ch := c.checksums[p.ChecksumResult.GetRequestId()]
		delete(c.checksums, p.ChecksumResult.GetRequestId())
		c.mu.Unlock()
		if ch != nil {
			ch <- p.ChecksumResult // buffered 1
		}
	case *linkv1.AttachRequest_Applied:
		a := p.Applied
		c.raiseServed(a.GetCommitLsn())
		c.mu.Lock()
		if c.pending > 0 {
			c.pending--
		}
		if a.GetError() != "" && c.applyErr == nil {
			c.applyErr = fmt.Errorf("%w: applying entries: %s (WAL ends at %d)", ErrBroker, a.GetError(), a.GetLsn())
		}
		var onErr func(error)
		if a.GetError() != "" {
			c.lastLSN = a.GetLsn()
			if h := a.GetEpochHistory(); len(h) > 0 {
				c.history = epochHistory(h).clone().truncate(a.GetLsn())
			} else {
				c.history = c.history.truncate(a.GetLsn())
			}
			c.posGen++
			onErr = c.onApplyErr
		}
		if c.pending == 0 && c.drained != nil {
			close(c.drained)
			c.drained = nil
		}
		f := c.onApplied
		c.mu.Unlock()
		if onErr != nil {
			onErr(fmt.Errorf("%w: applying entries: %s (WAL ends at %d)", ErrBroker, a.GetError(), a.GetLsn()))
		}
		if f != nil && a.GetError() == "" {
			f(a.GetLsn())
		}
	case *linkv1.AttachRequest_Truncated:
		c.mu.Lock()
		if len(c.truncWaiters) == 0 {
			c.mu.Unlock()
			return fmt.Errorf("%w: unexpected TruncatedTo", errBadBrokerMessage)
		}
		w := c.truncWaiters[0]
		c.truncWaiters = c.truncWaiters[1:]
		c.lowerServed(p.Truncated.GetLastLsn())
		c.lastLSN = p.Truncated.GetLastLsn()
		c.history = epochHistory(p.Truncated.GetEpochHistory()).clone()
		c.posGen++
		c.mu.Unlock()
		w <- p.Truncated // buffered 1: never blocks, even if the caller gave up
	case *linkv1.AttachRequest_ResetDone:
		c.mu.Lock()
		if len(c.resetWaiters) == 0 {
			c.mu.Unlock()
			return fmt.Errorf("%w: unexpected ResetDone", errBadBrokerMessage)
		}
		w := c.resetWaiters[0]
		c.resetWaiters = c.resetWaiters[1:]
		if n := p.ResetDone.GetNextLsn(); n > 0 {
			c.lastLSN = n - 1
			c.lowerServed(n - 1)
		}
		c.history = nil
		c.posGen++
		c.mu.Unlock()
		w <- p.ResetDone
	case *linkv1.AttachRequest_Stopping:
		st := &brokerStop{lastLSN: p.Stopping.GetLastLsn(), reason: p.Stopping.GetReason(), at: time.Now()}
		if !c.stopping.CompareAndSwap(nil, st) {
			return nil // said twice: the first one counts
		}
		if f := c.onStopping; f != nil {
			f(st)
		} else {
			c.stop(errBrokerStopping)
		}
	case *linkv1.AttachRequest_Hello:
		return fmt.Errorf("%w: second hello on one stream", errBadBrokerMessage)
	default:
		return fmt.Errorf("%w: unknown payload %T", errBadBrokerMessage, m.GetPayload())
	}
	return nil
}

var errBadBrokerMessage = errors.New("sidecar: bad message from broker")

// errBrokerStopping ends the link of a broker that stops on purpose, once
// the sidecar has handed its leadership over (or had nothing to hand).
var errBrokerStopping = errors.New("sidecar: the broker is stopping")

// brokerStop is a broker's BrokerStopping: its WAL ends at lastLSN. A
// leader's sidecar that stops while its broker runs on fences the broker
// with a handing-over view and records the same (bySidecar,
// Sidecar.handOverOnClose), so that one handover serves both.
type brokerStop struct {
	lastLSN   uint64
	reason    string
	at        time.Time // when it arrived
	bySidecar bool      // this sidecar stops, not the broker
}

// what says who stops, for log lines.
func (st *brokerStop) what() string {
	if st.bySidecar {
		return "the sidecar is stopping"
	}
	return "the broker is stopping"
}

// stoppingState is the broker's BrokerStopping (nil: it did not say it
// stops).
func (c *brokerConn) stoppingState() *brokerStop { return c.stopping.Load() }

func (c *brokerConn) enqueue(ctx context.Context, m *linkv1.AttachResponse) error {
	select {
	case c.ordered <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return fmt.Errorf("%w: %v", ErrNotLinked, context.Cause(c.ctx))
	}
}

// storageFailure returns the broker's WAL write error and since when it
// fails, or "" while its appends work.
func (c *brokerConn) storageFailure() (string, time.Time) {
	st := c.storage.Load()
	if st.GetError() == "" {
		return "", time.Time{}
	}
	return st.GetError(), time.UnixMilli(st.GetFailingSinceUnixMs())
}

// firstLSN is the oldest LSN in the broker's WAL as the broker last said:
// in its hello, or in a StorageState after retention deleted segments.
func (c *brokerConn) firstLSN() uint64 {
	return max(c.hello.GetFirstLsn(), c.storage.Load().GetFirstLsn())
}

// storeView records v as the broker's latest cluster view. Every view
// this sidecar sends says that it reads StorageState and BrokerStopping,
// and names this sidecar's cluster.
func (c *brokerConn) storeView(v *linkv1.ClusterView) {
	v.ReadsStorageState = true
	v.ReadsBrokerStopping = true
	v.ClusterId = c.clusterID
	if !c.hello.GetReadsHeartbeats() || c.beatEvery == 0 {
		v.HeartbeatIntervalMs = 0 // none will come
	}
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	if takesWrites(v) {
		c.mayWrite.Store(true)
	}
	c.view.Store(v)
}

// confirmedView records that the broker applied v (fenceAt): when v takes
// no writes and no other view was stored since, the broker takes none.
func (c *brokerConn) confirmedView(v *linkv1.ClusterView) {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	if !takesWrites(v) && c.view.Load() == v {
		c.mayWrite.Store(false)
	}
}

// takesWrites reports whether a broker under view v appends produced
// records: it leads, and is not handing the leadership over.
func takesWrites(v *linkv1.ClusterView) bool {
	return v.GetRole() == linkv1.Role_ROLE_LEADER && !v.GetHandingOver()
}

// setView makes v the broker's cluster view (sent once, latest wins).
func (c *brokerConn) setView(v *linkv1.ClusterView) {
	c.storeView(v)
	select {
	case c.viewSig <- struct{}{}:
	default:
	}
}

// setCommit makes lsn the broker's commit point (latest wins).
func (c *brokerConn) setCommit(lsn uint64) {
	c.commit.Store(lsn)
	select {
	case c.commitSig <- struct{}{}:
	default:
	}
}

// subscribe asks the leader broker to push durable entries from `from`.
func (c *brokerConn) subscribe(ctx context.Context, from uint64) error {
	return c.enqueue(ctx, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Subscribe{
		Subscribe: &linkv1.SubscribeCommitted{FromLsn: from}}})
}

// replayStatusError is a replay the broker could not serve.
type replayStatusError struct {
	Status   linkv1.ReplayStatus
	FirstLSN uint64
	Msg      string
}

func (e *replayStatusError) Error() string {
	return fmt.Sprintf("sidecar: broker replay: %s: %s", e.Status, e.Msg)
}

// replay reads entries from `from` on, about maxBytes of payload, from the
// leader broker's WAL.
func (c *brokerConn) replay(ctx context.Context, from uint64, maxBytes int) ([]*linkv1.Entry, error) {
	id := c.nextID.Add(1)
	// Room for every chunk of the answer, so that the receiver never
	// blocks even if this caller gives up.
	ch := make(chan *linkv1.ReplayResult, maxBytes/linkChunkBytes+4)
	c.mu.Lock()
	c.replays[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.replays, id)
		c.mu.Unlock()
	}()
	if err := c.enqueue(ctx, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Replay{Replay: &linkv1.ReplayRequest{
		RequestId: id, FromLsn: from, MaxBytes: uint64(maxBytes)}}}); err != nil {
		return nil, err
	}
	var out []*linkv1.Entry
	next := from
	for {
		select {
		case r := <-ch:
			if r.GetStatus() != linkv1.ReplayStatus_REPLAY_STATUS_OK {
				return nil, &replayStatusError{Status: r.GetStatus(), FirstLSN: r.GetFirstLsn(), Msg: r.GetError()}
			}
			for _, e := range r.GetEntries() {
				if e.GetLsn() != next {
					return nil, fmt.Errorf("%w: replay from %d returned LSN %d where %d was expected",
						errBadBrokerMessage, from, e.GetLsn(), next)
				}
				next++
				out = append(out, e)
			}
			if r.GetDone() {
				return out, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrNotLinked, context.Cause(c.ctx))
		}
	}
}

// checksum asks the broker for a WAL checksum over [from, to].
func (c *brokerConn) checksum(ctx context.Context, from, to uint64) (*linkv1.ChecksumResult, error) {
	id := c.nextID.Add(1)
	ch := make(chan *linkv1.ChecksumResult, 1)
	c.mu.Lock()
	c.checksums[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.checksums, id)
		c.mu.Unlock()
	}()
	if err := c.enqueue(ctx, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Checksum{Checksum: &linkv1.ChecksumRequest{
		RequestId: id, FromLsn: from, ToLsn: to}}}); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrNotLinked, context.Cause(c.ctx))
	}
}

// apply hands entries to the follower broker without waiting; the broker's
// AppliedUpTo answers arrive through onApplied.
func (c *brokerConn) apply(ctx context.Context, ents []*linkv1.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	c.mu.Lock()
	if c.applyErr != nil {
		err := c.applyErr
		c.mu.Unlock()
		return err
	}
	c.pending++
	prevLast, prevHist := c.lastLSN, c.history
	for _, e := range ents {
		c.history = c.history.observe(e.GetEpoch(), e.GetLsn())
	}
	c.lastLSN = ents[len(ents)-1].GetLsn()
	c.posGen++
	gen := c.posGen
	c.mu.Unlock()
	err := c.enqueue(ctx, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: ents}}})
	if err != nil {
		// The broker never gets these entries: the position announced in
		// the next hello must not include them.
		c.mu.Lock()
		c.pending--
		if c.posGen == gen {
			c.lastLSN, c.history = prevLast, prevHist
			c.posGen++
		}
		if c.pending == 0 && c.drained != nil {
			close(c.drained)
			c.drained = nil
		}
		c.mu.Unlock()
	}
	return err
}

// waitDrained waits until every ApplyEntries sent has been answered, and
// returns the broker's WAL end and epoch history at that point.
func (c *brokerConn) waitDrained(ctx context.Context) (uint64, epochHistory, error) {
	for {
		c.mu.Lock()
		if c.pending == 0 {
			last, h, err := c.lastLSN, c.history.clone(), c.applyErr
			c.applyErr = nil
			c.mu.Unlock()
			if err != nil {
				c.log.Warn("the broker refused entries; resuming from its reported position", "error", err, "last_lsn", last)
			}
			return last, h, nil
		}
		if c.drained == nil {
			c.drained = make(chan struct{})
		}
		ch := c.drained
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-c.ctx.Done():
			return 0, nil, fmt.Errorf("%w: %v", ErrNotLinked, context.Cause(c.ctx))
		}
	}
}

// truncate makes the broker drop every entry after lsn.
func (c *brokerConn) truncate(ctx context.Context, lsn uint64) error {
	w := make(chan *linkv1.TruncatedTo, 1)
	c.mu.Lock()
	c.truncWaiters = append(c.truncWaiters, w)
	c.mu.Unlock()
	if err := c.enqueue(ctx, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_TruncateTo{TruncateTo: &linkv1.TruncateTo{Lsn: lsn}}}); err != nil {
		c.dropWaiter(func() {
			c.truncWaiters = slices.DeleteFunc(c.truncWaiters, func(x chan *linkv1.TruncatedTo) bool { return x == w })
		})
		return err
	}
	select {
	case r := <-w:
		if r.GetError() != "" {
			return fmt.Errorf("%w: truncating after LSN %d: %s", ErrBroker, lsn, r.GetError())
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return fmt.Errorf("%w: %v", ErrNotLinked, context.Cause(c.ctx))
	}
}

// reset makes the broker wipe its WAL so that its next entry is next.
func (c *brokerConn) reset(ctx context.Context, next uint64) error {
	w := make(chan *linkv1.ResetDone, 1)
	c.mu.Lock()
	c.resetWaiters = append(c.resetWaiters, w)
	c.mu.Unlock()
	if err := c.enqueue(ctx, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_ResetTo{ResetTo: &linkv1.ResetTo{NextLsn: next}}}); err != nil {
		c.dropWaiter(func() {
			c.resetWaiters = slices.DeleteFunc(c.resetWaiters, func(x chan *linkv1.ResetDone) bool { return x == w })
		})
		return err
	}
	select {
	case r := <-w:
		if r.GetError() != "" {
			return fmt.Errorf("%w: resetting to LSN %d: %s", ErrBroker, next, r.GetError())
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return fmt.Errorf("%w: %v", ErrNotLinked, context.Cause(c.ctx))
	}
}

// dropWaiter runs fn under c.mu (a request that was never sent).
func (c *brokerConn) dropWaiter(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn()
}

// linkServer implements tandem.link.v1.LinkService for the sidecar.
type linkServer struct {
	linkv1.UnimplementedLinkServiceServer
	s *Sidecar
}

// helloTimeout bounds the wait for the broker's first message.
const helloTimeout = 10 * time.Second

// Attach serves one broker. Only one broker may be attached at a time.
func (ls *linkServer) Attach(stream linkv1.LinkService_AttachServer) error {
	s := ls.s
	first, err := recvWithTimeout(stream.Context(), stream.Recv, helloTimeout)
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		s.log.Error("broker did not start with a hello; closing the link", "got", fmt.Sprintf("%T", first.GetPayload()))
		return status.Error(codes.InvalidArgument, "tandem.link.v1: the first message must be a BrokerHello")
	}
	if err := validateBrokerHello(hello, s.cfg.NodeID, s.cfg.ClusterID); err != nil {
		s.noteBrokerRefused(err)
		return err
	}
	c := newBrokerConn(stream.Context(), hello, s.log.Named("broker-link"))
	c.clusterID = s.cfg.ClusterID
	c.onStopping = func(st *brokerStop) { s.brokerStopping(c, st) }
	c.beatEvery, c.vouch = time.Duration(s.heartbeatIntervalMs())*time.Millisecond, s.leaseFreshUntil
	if err := s.attachBroker(c); err != nil {
		return err
	}
	defer s.detachBroker(c)

	// The handler returns when the link ends for any reason (broker gone,
	// bad message, sidecar shutdown); returning unblocks the receiver.
	stopOnShutdown := context.AfterFunc(s.ctx, func() { c.stop(errors.New("sidecar: shutting down")) })
	defer stopOnShutdown()
	go func() {
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				c.stop(errors.New("sidecar: broker closed the link"))
				return
			}
			if err != nil {
				c.stop(err)
				return
			}
			if err := c.receive(m); err != nil {
				c.stop(err)
				return
			}
		}
	}()
	sendErr := c.sender(stream)
	if sendErr != nil {
		c.stop(sendErr)
	}
	<-c.ctx.Done()
	if err := context.Cause(c.ctx); errors.Is(err, errBadBrokerMessage) {
		s.log.Error("closing the broker link", "error", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// brokerRefusal is the last broker hello the sidecar refused.
type brokerRefusal struct {
	msg    string
	at     time.Time
	logged time.Time // when it was last logged
}

// refusalLogEvery bounds how often the same refusal is logged: a refused
// broker tries again every second or two until its configuration is fixed.
const refusalLogEvery = time.Minute

// noteBrokerRefused records and logs a refused hello; readiness (and so
// tandemctl status) names it while no broker is attached.
func (s *Sidecar) noteBrokerRefused(err error) {
	now := time.Now()
	r := &brokerRefusal{msg: status.Convert(err).Message(), at: now, logged: now}
	if last := s.brokerRefused.Load(); last != nil && last.msg == r.msg && now.Sub(last.logged) < refusalLogEvery {
		r.logged = last.logged
	} else {
		s.log.Error("refusing broker", "error", err)
	}
	s.brokerRefused.Store(r)
}

// recentBrokerRefusal returns the last refused hello's message, when one
// was refused lately (a refused broker retries at least every few
// seconds), or "".
func (s *Sidecar) recentBrokerRefusal() string {
	r := s.brokerRefused.Load()
	if r == nil || time.Since(r.at) > 10*time.Second {
		return ""
	}
	return r.msg
}

// validateBrokerHello checks a broker's hello.
func validateBrokerHello(h *linkv1.BrokerHello, nodeID int32, clusterID string) error {
	if h.GetNodeId() != nodeID {
		return status.Errorf(codes.FailedPrecondition,
			"tandem.link.v1: broker has node id %d but this sidecar serves node %d (check --node-id on both)", h.GetNodeId(), nodeID)
	}
	if id := h.GetClusterId(); id != "" && id != clusterID {
		// Accepted, it would follow this cluster's leader, which would
		// truncate or overwrite the other cluster's data to match its own.
		return status.Errorf(codes.FailedPrecondition,
			"tandem.link.v1: the broker's data directory belongs to cluster %q, but this sidecar serves cluster %q; refusing it so that none of that data is truncated or overwritten (check --cluster-id, and that the broker's --data-dir is this node's)",
			id, clusterID)
	}
	if h.GetLastLsn() > 0 && h.GetFirstLsn() > h.GetLastLsn()+1 {
		return status.Errorf(codes.InvalidArgument, "tandem.link.v1: hello has first LSN %d after last LSN %d", h.GetFirstLsn(), h.GetLastLsn())
	}
	if h.GetDurableLsn() > h.GetLastLsn() {
		return status.Errorf(codes.InvalidArgument, "tandem.link.v1: hello has durable LSN %d after last LSN %d", h.GetDurableLsn(), h.GetLastLsn())
	}
	return validateHistory(h.GetEpochHistory(), h.GetLastLsn())
}

// maxEpochHistory bounds the epoch history a peer may send.
const maxEpochHistory = 1 << 20

// validateHistory checks that an epoch history has ascending epochs with
// non-decreasing starts, none after last+1 (a new leader records its
// epoch's start before writing its first entry).
func validateHistory(h []*linkv1.EpochStart, last uint64) error {
	if len(h) > maxEpochHistory {
		return status.Errorf(codes.InvalidArgument, "epoch history has %d lines (at most %d)", len(h), maxEpochHistory)
	}
	for i, es := range h {
		if es == nil || es.GetStartLsn() == 0 {
			return status.Errorf(codes.InvalidArgument, "epoch history line %d has no start LSN", i)
		}
		if i > 0 && (es.GetEpoch() <= h[i-1].GetEpoch() || es.GetStartLsn() < h[i-1].GetStartLsn()) {
			return status.Errorf(codes.InvalidArgument, "epoch history is not ascending at line %d", i)
		}
		if es.GetStartLsn() > last+1 {
			return status.Errorf(codes.InvalidArgument, "epoch %d starts at LSN %d, after the log's end %d", es.GetEpoch(), es.GetStartLsn(), last)
		}
	}
	return nil
}

// recvWithTimeout waits for the first message of a stream for at most d.
func recvWithTimeout[T any](ctx context.Context, recv func() (T, error), d time.Duration) (T, error) {
	type res struct {
		m   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := recv()
		ch <- res{m, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-t.C:
		var zero T
		return zero, status.Errorf(codes.DeadlineExceeded, "no hello within %s", d)
	case <-ctx.Done():
		var zero T
		return zero, status.FromContextError(ctx.Err()).Err()
	}
}
