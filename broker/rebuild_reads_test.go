package broker

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestReadsDuringTruncationSeeWholeState: a follower truncates a diverged
// tail (as after every failover that drops an uncommitted write) and
// rebuilds its state from the WAL, while a consumer reads from it (KIP-392
// follower reads, or a consumer that has not yet heard of the failover).
// No answer may come from the half-built state: Fetch at the partition's
// end must not say OFFSET_OUT_OF_RANGE or UNKNOWN_TOPIC_OR_PARTITION,
// Metadata must list the topic, and OffsetForLeaderEpoch must not end the
// epoch early. (ListOffsets is the leader's to answer.) Before
// 2026-12-07 every one of them did, for as long as the replay took: franz-go
// took the OFFSET_OUT_OF_RANGE for lost data and reset the consumer per its
// ConsumeResetOffset (in a 15-minute soak, both Jepsen consumers got it at
// 18 of the 24 truncations; a reset to the start re-reads the whole topic,
// one to the end skips records).
func TestReadsDuringTruncationSeeWholeState(t *testing.T) {
	leader, addr := startBroker(t, t.TempDir())
	f := openFollower(t, t.TempDir(), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.ServeListener(ln)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prod := newClient(t, addr, kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, prod, "read", 1)
	createTopic(t, prod, "tail", 1)
	// Enough batches that a replay takes a while.
	for i := 0; i < 40; i++ {
		var rs []*kgo.Record
		for j := 0; j < 100; j++ {
			rs = append(rs, &kgo.Record{Topic: "read", Value: []byte("v")})
		}
		// One record per batch: many index entries to replay. Each is
		// awaited before the next goes (records produced while a
		// request is in flight would share a batch).
		for _, r := range rs {
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	follow(t, f, leader)
	keep := f.wal.LastLSN()
	f.SetCommitLSN(keep)
	p := f.partition("read", 0)
	_, hw, _, end := p.fetchOffsets()
	if hw != end || end < 4000 {
		t.Fatalf("the follower's partition: high watermark %d, end %d; want both at 4000 or more", hw, end)
	}
	p.mu.RLock()
	batches := len(p.batches)
	p.mu.RUnlock()
	if batches < 4000 {
		t.Fatalf("the follower's partition holds %d batches; the test needs one a record, 4000 or more", batches)
	}
	epoch := f.lastEpoch()

	// The diverged tail: one uncommitted batch of another topic.
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "tail", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Requests go to the follower as they are (kgo would route some by
	// partition leader).
	cons := newClient(t, ln.Addr().String()).SeedBrokers()[0]
	stop := make(chan struct{})
	problems := make(chan string, 100)
	report := func(s string) {
		select {
		case problems <- s:
		default:
		}
	}
	var reads atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			reads.Add(1)
			fr := kmsg.NewPtrFetchRequest()
			fr.Version, fr.MaxWaitMillis, fr.MaxBytes, fr.ReplicaID = 11, 0, 1<<20, -1
			ft := kmsg.NewFetchRequestTopic()
			ft.Topic = "read"
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.FetchOffset, fp.PartitionMaxBytes, fp.CurrentLeaderEpoch, fp.LogStartOffset = end, 1<<20, -1, -1
			ft.Partitions = append(ft.Partitions, fp)
			fr.Topics = append(fr.Topics, ft)
			resp, err := fr.RequestWith(ctx, cons)
			if err != nil {
				report("fetch: " + err.Error())
				continue
			}
			if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); err != nil {
				report("fetch at the partition's end: " + err.Error())
			}

			mr := kmsg.NewPtrMetadataRequest()
			mr.Version = 9
			mt := kmsg.NewMetadataRequestTopic()
			mt.Topic = kmsg.StringPtr("read")
			mr.Topics = append(mr.Topics, mt)
			mresp, err := mr.RequestWith(ctx, cons)
			if err != nil {
				report("metadata: " + err.Error())
				continue
			}
			if code := mresp.Topics[0].ErrorCode; code != 0 {
				report("metadata: " + kerr.ErrorForCode(code).Error())
			}

			er := kmsg.NewPtrOffsetForLeaderEpochRequest()
			er.Version, er.ReplicaID = 3, -1
			et := kmsg.NewOffsetForLeaderEpochRequestTopic()
			et.Topic = "read"
			ep := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
			ep.CurrentLeaderEpoch, ep.LeaderEpoch = -1, int32(epoch)
			et.Partitions = append(et.Partitions, ep)
			er.Topics = append(er.Topics, et)
			eresp, err := er.RequestWith(ctx, cons)
			if err != nil {
				report("offset for leader epoch: " + err.Error())
				continue
			}
			switch erp := eresp.Topics[0].Partitions[0]; {
			case erp.ErrorCode != 0:
				report("offset for leader epoch: " + kerr.ErrorForCode(erp.ErrorCode).Error())
			case erp.EndOffset < end:
				report("offset for leader epoch: the epoch ends below the partition's end")
			}
		}
	}()

	truncations := 0
	for deadline := time.Now().Add(30 * time.Second); reads.Load() < 500 && time.Now().Before(deadline); truncations++ {
		follow(t, f, leader)
		if err := f.TruncateAfter(keep); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-readerDone
	close(problems)
	seen := map[string]int{}
	for s := range problems {
		seen[s]++
	}
	for s, n := range seen {
		t.Errorf("during %d truncations, %d or more reads answered from the half-built state: %s", truncations, n, s)
	}
	t.Logf("%d rounds of reads during %d truncations", reads.Load(), truncations)
}
