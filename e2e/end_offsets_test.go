package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// endOffsetWatch asks every node, every interval, for a partition's end
// offset (ListOffsets latest, as a consumer starting at the end or a lag
// monitor does), and checks that the end never goes back: an answer from
// a leader of an epoch at least as new as any seen must not be below an
// end already given. A node of an older epoch (a former leader that has
// not yet learned it lost) may answer with its own, older end; Kafka
// clients ignore it by its epoch, and so does the check.
type endOffsetWatch struct {
	mu           sync.Mutex
	asked        int      // rounds
	answers      int      // successful answers from a leader
	notAvailable int      // OFFSET_NOT_AVAILABLE: a new leader's end not yet known (KIP-207)
	stale        int      // answers of an older epoch below the end seen
	backwards    []string // answers of the newest epoch below the end seen
	maxEnd       int64
	maxEpoch     int32
	maxFrom      string
	done         chan struct{}
}

// watchEndOffsets starts the watch on topic/partition; it stops when ctx
// is done (String and Backwards wait for that).
func watchEndOffsets(ctx context.Context, t *testing.T, addrs map[int]string, topic string, partition int32, every time.Duration) *endOffsetWatch {
	w := &endOffsetWatch{done: make(chan struct{}), maxEnd: -1, maxEpoch: -1}
	brokers := map[int]*kgo.Broker{}
	for id, addr := range addrs {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.DialTimeout(every*5))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		brokers[id] = cl.SeedBrokers()[0]
	}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			type answer struct {
				id     int
				end    int64
				epoch  int32
				code   int16
				reqErr error
			}
			answers := make(chan answer, len(brokers))
			for id, br := range brokers {
				go func() {
					req := kmsg.NewPtrListOffsetsRequest()
					req.ReplicaID = -1
					rt := kmsg.NewListOffsetsRequestTopic()
					rt.Topic = topic
					rp := kmsg.NewListOffsetsRequestTopicPartition()
					rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = partition, -1, -1
					rt.Partitions = append(rt.Partitions, rp)
					req.Topics = append(req.Topics, rt)
					rctx, cancel := context.WithTimeout(ctx, 5*every)
					defer cancel()
					resp, err := br.Request(rctx, req)
					if err != nil {
						answers <- answer{id: id, reqErr: err}
						return
					}
					lr := resp.(*kmsg.ListOffsetsResponse)
					if len(lr.Topics) != 1 || len(lr.Topics[0].Partitions) != 1 {
						answers <- answer{id: id, reqErr: fmt.Errorf("answered %d topics", len(lr.Topics))}
						return
					}
					sp := lr.Topics[0].Partitions[0]
					answers <- answer{id: id, end: sp.Offset, epoch: sp.LeaderEpoch, code: sp.ErrorCode}
				}()
			}
			now := time.Now().UTC().Format("15:04:05.000")
			w.mu.Lock()
			w.asked++
			w.mu.Unlock()
			for range brokers {
				a := <-answers
				if a.reqErr != nil {
					continue // a node down, frozen or cut off
				}
				switch err := kerr.ErrorForCode(a.code); err {
				case nil:
				case kerr.OffsetNotAvailable:
					w.mu.Lock()
					w.notAvailable++
					w.mu.Unlock()
					continue
				default:
					continue // NOT_LEADER_OR_FOLLOWER: a follower
				}
				from := fmt.Sprintf("node %d (epoch %d) at %s", a.id, a.epoch, now)
				w.mu.Lock()
				w.answers++
				switch {
				case a.epoch < w.maxEpoch:
					if a.end < w.maxEnd {
						w.stale++
					}
				case a.end < w.maxEnd:
					b := fmt.Sprintf("%s answered end %d, below the %d that %s gave", from, a.end, w.maxEnd, w.maxFrom)
					w.backwards = append(w.backwards, b)
					t.Logf("end offsets: %s", b)
				}
				if a.epoch >= w.maxEpoch {
					w.maxEpoch = a.epoch
				}
				if a.end > w.maxEnd {
					w.maxEnd, w.maxFrom = a.end, from
				}
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// Backwards lists the answers that went back (after the watch stopped).
func (w *endOffsetWatch) Backwards() []string {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.backwards
}

func (w *endOffsetWatch) String() string {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("end offsets asked of every node %d times: %d answers from a leader, %d OFFSET_NOT_AVAILABLE, %d from a former leader below the end seen, %d went back",
		w.asked, w.answers, w.notAvailable, w.stale, len(w.backwards))
}
