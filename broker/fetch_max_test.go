package broker

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchRecordBytes sends one Fetch v12 for partition 0 of topic from
// offset, asking for maxBytes, and returns the record bytes answered.
func fetchRecordBytes(t *testing.T, cl *kgo.Client, topic string, offset int64, maxBytes int32) []byte {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.MaxBytes = maxBytes
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = maxBytes
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("fetch answer %+v", resp)
	}
	return resp.Topics[0].Partitions[0].RecordBatches
}

// TestFetchMaxBytes: with --fetch-max-bytes 64 KiB, a consumer that asks
// for 100 MiB gets at most 64 KiB per answer (Kafka's fetch.max.bytes), a
// batch larger than that is still answered whole, and a consumer reads
// everything.
func TestFetchMaxBytes(t *testing.T) {
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.FetchMaxBytes = 64 << 10 })
	const topic = "fetch-max"
	cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(0))
	for i := range 40 { // 40 batches of about 8 KiB: 320 KiB
		v := bytes.Repeat([]byte{byte('a' + i%26)}, 8<<10)
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("B"), 100<<10)
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Value: big}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	got := fetchRecordBytes(t, cl, topic, 0, 100<<20)
	if len(got) == 0 || len(got) > 64<<10 {
		t.Fatalf("asked for 100 MiB from offset 0: %d record bytes, want 1 to %d (--fetch-max-bytes)", len(got), 64<<10)
	}
	if got := fetchRecordBytes(t, cl, topic, 40, 100<<20); len(got) < 100<<10 {
		t.Fatalf("the 100 KiB batch at offset 40 was answered with %d bytes, want it whole", len(got))
	}
	if n := len(consumeAll(t, addr, topic, 41)); n != 41 {
		t.Fatalf("consumed %d records, want 41", n)
	}
}
