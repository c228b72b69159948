package sidecar

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// sendRecorder is the part of an Attach stream that brokerConn.sender uses.
type sendRecorder struct {
	linkv1.LinkService_AttachServer
	sent chan *linkv1.AttachResponse
}

func (r *sendRecorder) Send(m *linkv1.AttachResponse) error {
	r.sent <- m
	return nil
}

// A broker that reads ApplyEntries.commit_lsn gets the commit point inside
// the entries it covers, in one message; any other broker gets the
// CommitPoint message it understands.
func TestSenderPutsTheCommitPointInApplyEntries(t *testing.T) {
	for _, carries := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		c := newBrokerConn(ctx, &linkv1.BrokerHello{NodeId: 2, ApplyCarriesCommit: carries}, hclog.NewNullLogger())
		ents := []*linkv1.Entry{{Lsn: 1, Epoch: 1, Payload: []byte("a")}, {Lsn: 2, Epoch: 1, Payload: []byte("b")}}
		if err := c.apply(ctx, ents); err != nil {
			t.Fatal(err)
		}
		c.setCommit(2)
		rec := &sendRecorder{sent: make(chan *linkv1.AttachResponse, 8)}
		done := make(chan error, 1)
		go func() { done <- c.sender(rec) }()

		var commitInApply, commitPoints uint64
		var applies int
		deadline := time.After(300 * time.Millisecond)
	collect:
		for {
			select {
			case m := <-rec.sent:
				switch {
				case m.GetApply() != nil:
					applies++
					commitInApply = m.GetApply().GetCommitLsn()
				case m.GetCommit() != nil:
					commitPoints++
					if m.GetCommit().GetLsn() != 2 {
						t.Errorf("carries=%v: CommitPoint %d, want 2", carries, m.GetCommit().GetLsn())
					}
				}
			case <-deadline:
				break collect
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if applies != 1 {
			t.Fatalf("carries=%v: %d ApplyEntries sent, want 1", carries, applies)
		}
		if carries && (commitInApply != 2 || commitPoints != 0) {
			t.Errorf("broker reads commit_lsn: ApplyEntries carried %d and %d CommitPoints followed; want 2 and none", commitInApply, commitPoints)
		}
		if !carries && (commitInApply != 0 || commitPoints != 1) {
			t.Errorf("broker without commit_lsn: ApplyEntries carried %d and %d CommitPoints were sent; want 0 and one", commitInApply, commitPoints)
		}
	}
}

// An ISR shrink sets the smaller view, then the commit point it lets
// through; the broker must get them in that order, or it would check an
// acks=all batch's ISR against min.insync.replicas with the old, larger
// view when the commit point arrives and answer success.
func TestSenderSendsTheViewBeforeTheCommitPoint(t *testing.T) {
	for i := 0; i < 200; i++ { // the sender used to pick one of the two at random
		ctx, cancel := context.WithCancel(context.Background())
		c := newBrokerConn(ctx, &linkv1.BrokerHello{NodeId: 1}, hclog.NewNullLogger())
		c.setView(&linkv1.ClusterView{Role: linkv1.Role_ROLE_LEADER, LeaderId: 1, Epoch: 1, Isr: []int32{1}})
		c.setCommit(10)
		rec := &sendRecorder{sent: make(chan *linkv1.AttachResponse, 8)}
		done := make(chan error, 1)
		go func() { done <- c.sender(rec) }()
		first, second := <-rec.sent, <-rec.sent
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if first.GetClusterView() == nil || second.GetCommit().GetLsn() != 10 {
			t.Fatalf("round %d: sent %v then %v, want the view, then commit point 10", i, first, second)
		}
	}
}

// A follower announces, in its next hello, the position the sidecar keeps
// for its broker. That position must never include entries the broker does
// not hold durably, because the leader counts it as flushed.
func TestFollowerPositionIsWhatTheBrokerHolds(t *testing.T) {
	hello := &linkv1.BrokerHello{NodeId: 2, LastLsn: 105, DurableLsn: 100,
		EpochHistory: []*linkv1.EpochStart{{Epoch: 1, StartLsn: 1}, {Epoch: 2, StartLsn: 103}}}
	ents := func(from, to uint64, epoch uint32) []*linkv1.Entry {
		var out []*linkv1.Entry
		for l := from; l <= to; l++ {
			out = append(out, &linkv1.Entry{Lsn: l, Epoch: epoch})
		}
		return out
	}
	drained := func(t *testing.T, c *brokerConn) (uint64, epochHistory) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		last, h, err := c.waitDrained(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return last, h
	}

	t.Run("written but not durable is not announced", func(t *testing.T) {
		c := newBrokerConn(context.Background(), hello, hclog.NewNullLogger())
		last, h := drained(t, c)
		if last != 100 || len(h) != 1 || h.lastEpoch() != 1 {
			t.Fatalf("position %d %v, want 100 with epoch 1 only (101-105 and epoch 2 are not durable)", last, h)
		}
	})

	t.Run("a batch that never reached the queue is taken back", func(t *testing.T) {
		c := newBrokerConn(context.Background(), hello, hclog.NewNullLogger())
		for len(c.ordered) < cap(c.ordered) { // the broker is backed up
			c.ordered <- &linkv1.AttachResponse{}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the stream to the leader ended while apply waited
		if err := c.apply(ctx, ents(101, 103, 3)); err == nil {
			t.Fatal("apply into a full queue with a cancelled context succeeded")
		}
		for len(c.ordered) > 0 { // the broker answers what it had
			<-c.ordered
		}
		last, h := drained(t, c)
		if last != 100 || h.lastEpoch() != 1 {
			t.Fatalf("position %d %v after a failed apply, want 100 in epoch 1", last, h)
		}
	})

	t.Run("a refused batch ends the stream and rewinds the position", func(t *testing.T) {
		c := newBrokerConn(context.Background(), hello, hclog.NewNullLogger())
		var got error
		c.onApplyErr = func(err error) { got = err }
		if err := c.apply(context.Background(), ents(101, 110, 1)); err != nil {
			t.Fatal(err)
		}
		<-c.ordered
		if err := c.receive(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Applied{Applied: &linkv1.AppliedUpTo{
			Lsn: 104, Error: "link: WAL diverged from the leader's"}}}); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(got, ErrBroker) {
			t.Fatalf("onApplyErr got %v, want an ErrBroker", got)
		}
		if last, _ := drained(t, c); last != 104 {
			t.Fatalf("position %d after the broker refused at 104, want 104", last)
		}
	})
}

// A sidecar refuses a broker whose data belongs to another cluster, before
// anything is streamed; a broker that keeps no cluster id yet, or this
// sidecar's, is welcome.
func TestBrokerHelloOfAnotherClusterRefused(t *testing.T) {
	for _, tc := range []struct {
		cluster string
		refused bool
	}{{"", false}, {"blue", false}, {"green", true}} {
		err := validateBrokerHello(&linkv1.BrokerHello{NodeId: 3, ClusterId: tc.cluster}, 3, "blue")
		if !tc.refused {
			if err != nil {
				t.Errorf("hello keeping cluster %q refused by a sidecar of cluster blue: %v", tc.cluster, err)
			}
			continue
		}
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `"green"`) || !strings.Contains(err.Error(), `"blue"`) {
			t.Errorf("hello keeping cluster %q: %v, want FAILED_PRECONDITION naming both clusters", tc.cluster, err)
		}
	}
}
