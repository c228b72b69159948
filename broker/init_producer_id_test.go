package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

func initProducerID(ctx context.Context, cl *kgo.Client, pid int64, epoch int16) (*kmsg.InitProducerIDResponse, error) {
	req := kmsg.NewPtrInitProducerIDRequest()
	req.ProducerID, req.ProducerEpoch = pid, epoch
	return req.RequestWith(ctx, cl)
}

// createTopicErr creates a one-partition topic; it may run in any goroutine.
func createTopicErr(t *testing.T, cl *kgo.Client, name string) error {
	ct := kmsg.NewPtrCreateTopicsRequest()
	tt := kmsg.NewCreateTopicsRequestTopic()
	tt.Topic, tt.NumPartitions, tt.ReplicationFactor = name, 1, -1
	ct.Topics = append(ct.Topics, tt)
	resp, err := ct.RequestWith(t.Context(), cl)
	if err == nil && resp.Topics[0].ErrorCode != 0 {
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
	}
	return err
}

// KIP-360 epoch bumps: presenting the current epoch bumps it; presenting
// the epoch before it retries the last bump and gets the same answer (the
// first one was lost), also after a restart and after producing with the
// new epoch; an older epoch is refused.
func TestInitProducerIDBumpRetry(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBroker(t, dir)
	cl := newClient(t, addr)
	if err := createTopicErr(t, cl, "bumps"); err != nil {
		t.Fatal(err)
	}
	first, err := initProducerID(t.Context(), cl, -1, -1)
	if err != nil || first.ErrorCode != 0 || first.ProducerEpoch != 0 {
		t.Fatalf("InitProducerId: %v %+v", err, first)
	}
	pid := first.ProducerID
	for _, step := range []struct {
		what      string
		epoch     int16 // presented
		want      int16 // epoch answered, with NONE
		wantErr   *kerr.Error
		restart   bool // restart the broker first
		produceAt int16
	}{
		{what: "bump", epoch: 0, want: 1},
		{what: "retried bump", epoch: 0, want: 1},
		{what: "bump again", epoch: 1, want: 2},
		{what: "retried bump again", epoch: 1, want: 2},
		{what: "retry of an older bump", epoch: 0, wantErr: kerr.InvalidProducerEpoch},
		{what: "retried bump after a restart", epoch: 1, want: 2, restart: true},
		{what: "retried bump after producing with its epoch", epoch: 1, want: 2, produceAt: 2},
		{what: "bump after the retries", epoch: 2, want: 3},
	} {
		if step.restart {
			cl.Close()
			b.Close()
			b, addr = startBroker(t, dir)
			cl = newClient(t, addr)
		}
		if step.produceAt > 0 {
			if r := rawProduce(t, cl, "bumps", pid, step.produceAt, 0, 1); r.ErrorCode != 0 {
				t.Fatalf("%s: produce: %v", step.what, kerr.ErrorForCode(r.ErrorCode))
			}
		}
		resp, err := initProducerID(t.Context(), cl, pid, step.epoch)
		if err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		if step.wantErr != nil {
			if resp.ErrorCode != step.wantErr.Code {
				t.Fatalf("%s: %v, want %v", step.what, kerr.ErrorForCode(resp.ErrorCode), step.wantErr)
			}
			continue
		}
		if resp.ErrorCode != 0 || resp.ProducerID != pid || resp.ProducerEpoch != step.want {
			t.Fatalf("%s from epoch %d: %v id %d epoch %d, want id %d epoch %d", step.what, step.epoch,
				kerr.ErrorForCode(resp.ErrorCode), resp.ProducerID, resp.ProducerEpoch, pid, step.want)
		}
	}
	if r := rawProduce(t, cl, "bumps", pid, 3, 0, 1); r.ErrorCode != 0 {
		t.Fatalf("produce with the last epoch: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := rawProduce(t, cl, "bumps", pid, 2, 1, 1); r.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("produce with a fenced epoch: %v", kerr.ErrorForCode(r.ErrorCode))
	}
}

// A bump whose answer never reached the producer (the commit point stalled,
// the connection went away, the broker answered REQUEST_TIMED_OUT) has
// already fenced the old epoch. Retrying it gets the new epoch, and the
// producer goes on with it.
func TestInitProducerIDBumpAnswerLost(t *testing.T) {
	b, addr := stalledLeader(t, nil)
	cl := newClient(t, addr)
	var pid int64
	whileCommitting(t, b, func() error {
		if err := createTopicErr(t, cl, "lost"); err != nil {
			return err
		}
		resp, err := initProducerID(t.Context(), cl, -1, -1)
		if err == nil && resp.ErrorCode != 0 {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err != nil {
			return fmt.Errorf("InitProducerId: %w", err)
		}
		pid = resp.ProducerID
		return nil
	})

	// The bump waits for a commit point that does not move; its client
	// goes away, and the answer with it.
	gone := newClient(t, addr)
	answered := make(chan error, 1)
	go func() {
		_, err := initProducerID(t.Context(), gone, pid, 0)
		answered <- err
	}()
	testutil.Eventually(t, 20*time.Second, func() bool {
		b.appendMu.Lock()
		defer b.appendMu.Unlock()
		return b.pidEpochs[pid] == 1
	})
	gone.Close()
	if err := <-answered; err == nil {
		t.Fatal("the lost bump was answered")
	}

	whileCommitting(t, b, func() error {
		resp, err := initProducerID(t.Context(), cl, pid, 0)
		if err != nil {
			return err
		}
		if resp.ErrorCode != 0 || resp.ProducerID != pid || resp.ProducerEpoch != 1 {
			return fmt.Errorf("retried bump: %v id %d epoch %d, want id %d epoch 1",
				kerr.ErrorForCode(resp.ErrorCode), resp.ProducerID, resp.ProducerEpoch, pid)
		}
		r, err := rawProduceErr(cl, "lost", pid, 1, 0, 2)
		if err != nil {
			return err
		}
		if r.ErrorCode != 0 || r.BaseOffset != 0 {
			return fmt.Errorf("produce with the new epoch: %v at %d", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
		}
		return nil
	})
}
