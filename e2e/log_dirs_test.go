package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestLogDirsOnEveryNode: DescribeLogDirs (kafka-log-dirs.sh --describe)
// asked of every node shows each node's own replicas; once the followers
// have caught up, every node holds the same bytes for every partition.
func TestLogDirsOnEveryNode(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	const topic = "sizes"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctxTimeout(t, 10*time.Second), 3, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < 600; i++ {
		recs = append(recs, kgo.StringRecord(fmt.Sprintf("record-%d-%0100d", i, i)))
	}
	if err := cl.ProduceSync(ctxTimeout(t, 30*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c.caughtUp(30*time.Second, 1, 2, 3)

	testutil.Eventually(t, 15*time.Second, func() error {
		all, err := adm.DescribeAllLogDirs(ctxTimeout(t, 10*time.Second), nil)
		if err != nil {
			return err
		}
		if len(all) != 3 {
			return fmt.Errorf("answers from %d nodes, want 3", len(all))
		}
		var leader map[int32]int64
		for _, id := range []int32{1, 2, 3} {
			sizes := map[int32]int64{}
			var total int64
			for _, d := range all[id] {
				d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
					if p.Topic != topic {
						return
					}
					sizes[p.Partition] = p.Size
					total += p.Size
				})
			}
			if len(sizes) != 3 || total < 600*100 {
				return fmt.Errorf("node %d: partition sizes %v (total %d); want 3 partitions holding at least 60,000 bytes", id, sizes, total)
			}
			if leader == nil {
				leader = sizes
			} else if fmt.Sprint(sizes) != fmt.Sprint(leader) {
				return fmt.Errorf("node %d holds %v, node 1 %v", id, sizes, leader)
			}
		}
		return nil
	})
}
