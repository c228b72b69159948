package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// logStartOn asks node id's broker itself (not the partition's leader) for
// partition's log start offset: a Fetch at offset 0 is answered with it,
// and with OFFSET_OUT_OF_RANGE when records below it were deleted.
func logStartOn(c *cluster, cl *kgo.Client, id int, topic string, partition int32) (int64, error) {
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxBytes, req.ReplicaID = 11, 1<<20, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.PartitionMaxBytes, rp.LogStartOffset = partition, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := cl.Broker(id).Request(ctxTimeout(c.t, 10*time.Second), req)
	if err != nil {
		return 0, err
	}
	sp := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
	if sp.LogStartOffset > 0 && sp.ErrorCode != kerr.OffsetOutOfRange.Code {
		return 0, fmt.Errorf("node %d: fetch at 0 below log start %d answered %v, want OFFSET_OUT_OF_RANGE", id, sp.LogStartOffset, kerr.ErrorForCode(sp.ErrorCode))
	}
	return sp.LogStartOffset, nil
}

// TestDeleteRecordsReplicates: sarama's ClusterAdmin.DeleteRecords (what
// kafka-delete-records.sh does), given a follower as bootstrap, is sent to
// the leader and moves the log start offset on every node, including one
// that restarts afterwards; a sarama consumer from the oldest offset then
// begins at it.
func TestDeleteRecordsReplicates(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	const topic = "purge"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctxTimeout(t, 10*time.Second), 2, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < 100; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Value: fmt.Appendf(nil, "p0-%d", i)})
	}
	for i := 0; i < 20; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 1, Value: fmt.Appendf(nil, "p1-%d", i)})
	}
	if err := cl.ProduceSync(ctxTimeout(t, 30*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	adm, err := sarama.NewClusterAdmin([]string{c.node(2).kafka}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if err := adm.DeleteRecords(topic, map[int32]int64{0: 40, 1: -1}); err != nil {
		t.Fatalf("sarama DeleteRecords: %v", err)
	}
	if err := adm.DeleteRecords(topic, map[int32]int64{0: 101}); err == nil {
		t.Fatal("DeleteRecords past the high watermark succeeded")
	}

	want := map[int32]int64{0: 40, 1: 20}
	check := func(ids ...int) {
		t.Helper()
		testutil.Eventually(t, 15*time.Second, func() error {
			for _, id := range ids {
				for p, w := range want {
					got, err := logStartOn(c, cl, id, topic, p)
					if err != nil {
						return err
					}
					if got != w {
						return fmt.Errorf("node %d partition %d: log start %d, want %d", id, p, got, w)
					}
				}
			}
			return nil
		})
	}
	check(1, 2, 3)

	// A follower restarted on its data replays the entry.
	c.node(3).killPair()
	c.node(3).startPair()
	c.waitInSync(30 * time.Second)
	check(3)
	c.mustVerify(1)

	cons, err := sarama.NewConsumer(c.kafkaAddrs(), saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if m.Offset != 40 || string(m.Value) != "p0-40" {
			t.Fatalf("first message from the oldest offset: offset %d %q, want 40 \"p0-40\"", m.Offset, m.Value)
		}
	case err := <-pc.Errors():
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("sarama consumer read nothing in 20s")
	}
}
