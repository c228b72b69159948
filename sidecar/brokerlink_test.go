package sidecar

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

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
