package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawDeleteRecords sends one DeleteRecords request for partitions of one
// topic (partition -> offset) to node 1 as it is (kgo would split it by
// partition leader, and refuse unknown partitions itself) and returns the
// answer by partition.
func rawDeleteRecords(t *testing.T, cl *kgo.Client, topic string, offsets map[int32]int64) map[int32]kmsg.DeleteRecordsResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 5000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	for p, o := range offsets {
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Partition, rp.Offset = p, o
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	kresp, err := cl.Broker(1).Request(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	resp := kresp.(*kmsg.DeleteRecordsResponse)
	out := map[int32]kmsg.DeleteRecordsResponseTopicPartition{}
	for _, st := range resp.Topics {
		for _, sp := range st.Partitions {
			out[sp.Partition] = sp
		}
	}
	return out
}

// firstOffset consumes partition 0 of topic from its start and returns the
// offset of the first record read.
func firstOffset(t *testing.T, addr, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cl := newClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("nothing consumed from %s", topic)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0].Offset
		}
	}
}

// DeleteRecords (kafka-delete-records.sh, AdminClient.deleteRecords) moves a
// partition's log start offset: ListOffsets earliest answers it, a consumer
// from the start begins there (also when it falls inside a batch), a Fetch
// below it gets OFFSET_OUT_OF_RANGE. -1 deletes up to the high watermark;
// an offset past it is refused; a smaller one changes nothing. The new log
// start offsets hold across a restart and on a replica that follows or is
// re-cloned from the leader.
func TestDeleteRecords(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBroker(t, dir)
	cl := newClient(t, addr)
	adm := kadm.NewClient(cl)
	createTopic(t, cl, "dr", 2)
	// Partition 0: five one-record batches (offsets 0-4), then one batch of
	// five (5-9). Partition 1: three records.
	for i := 0; i < 5; i++ {
		if r := rawProduce(t, cl, "dr", -1, -1, -1, 1); r.ErrorCode != 0 || r.BaseOffset != int64(i) {
			t.Fatalf("batch %d: error %v, base offset %d", i, kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
		}
	}
	if r := rawProduce(t, cl, "dr", -1, -1, -1, 5); r.ErrorCode != 0 || r.BaseOffset != 5 {
		t.Fatalf("batch of five: error %v, base offset %d", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
	}
	manual := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := 0; i < 3; i++ {
		if err := manual.ProduceSync(t.Context(), &kgo.Record{Topic: "dr", Partition: 1, Value: []byte("p1")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// A follower of this broker, which gets every entry as it is.
	f := recloneFollower(t, b)

	del := func(offs kadm.Offsets) kadm.DeleteRecordsResponses {
		t.Helper()
		res, err := adm.DeleteRecords(t.Context(), offs)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	starts := func() (int64, int64) {
		t.Helper()
		lo, err := adm.ListStartOffsets(t.Context(), "dr")
		if err != nil || lo.Error() != nil {
			t.Fatalf("ListStartOffsets: %v %v", err, lo.Error())
		}
		p0, _ := lo.Lookup("dr", 0)
		p1, _ := lo.Lookup("dr", 1)
		return p0.Offset, p1.Offset
	}

	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 3})
	if r, _ := del(offs).Lookup("dr", 0); r.Err != nil || r.LowWatermark != 3 {
		t.Fatalf("delete before 3: %+v; want low watermark 3", r)
	}
	if s0, s1 := starts(); s0 != 3 || s1 != 0 {
		t.Fatalf("start offsets %d, %d; want 3, 0", s0, s1)
	}
	if got := firstOffset(t, addr, "dr"); got != 3 {
		t.Fatalf("a consumer from the start read offset %d first; want 3", got)
	}

	// Inside the batch of five; and partition 1 up to its high watermark.
	offs = kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 7})
	offs.Add(kadm.Offset{Topic: "dr", Partition: 1, At: -1})
	res := del(offs)
	if r, _ := res.Lookup("dr", 0); r.Err != nil || r.LowWatermark != 7 {
		t.Fatalf("delete before 7: %+v; want low watermark 7", r)
	}
	if r, _ := res.Lookup("dr", 1); r.Err != nil || r.LowWatermark != 3 {
		t.Fatalf("delete partition 1 to its high watermark: %+v; want low watermark 3", r)
	}
	if got := firstOffset(t, addr, "dr"); got != 7 {
		t.Fatalf("a consumer from the start read offset %d first; want 7", got)
	}

	// A Fetch below the log start offset is out of range, with the log
	// start offset in the answer.
	fr := kmsg.NewPtrFetchRequest()
	fr.Version, fr.MaxBytes, fr.ReplicaID = 11, 1<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "dr"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes, fp.LogStartOffset = 2, 1<<20, -1
	ft.Partitions = append(ft.Partitions, fp)
	fr.Topics = append(fr.Topics, ft)
	fresp, err := fr.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if sp := fresp.Topics[0].Partitions[0]; sp.ErrorCode != kerr.OffsetOutOfRange.Code || sp.LogStartOffset != 7 {
		t.Fatalf("fetch at 2: error %v, log start %d; want OFFSET_OUT_OF_RANGE, 7", kerr.ErrorForCode(sp.ErrorCode), sp.LogStartOffset)
	}

	// Refusals, and an offset below the log start offset.
	got := rawDeleteRecords(t, cl, "dr", map[int32]int64{0: 11, 1: -2})
	if got[0].ErrorCode != kerr.OffsetOutOfRange.Code || got[1].ErrorCode != kerr.OffsetOutOfRange.Code {
		t.Fatalf("offsets past the high watermark and below -1: %v, %v; want OFFSET_OUT_OF_RANGE twice",
			kerr.ErrorForCode(got[0].ErrorCode), kerr.ErrorForCode(got[1].ErrorCode))
	}
	got = rawDeleteRecords(t, cl, "dr", map[int32]int64{0: 4, 2: 1})
	if got[0].ErrorCode != 0 || got[0].LowWatermark != 7 {
		t.Fatalf("offset 4, below the log start 7: error %v, low watermark %d; want none, 7", kerr.ErrorForCode(got[0].ErrorCode), got[0].LowWatermark)
	}
	if got[2].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("partition 2 of a two-partition topic: %v; want UNKNOWN_TOPIC_OR_PARTITION", kerr.ErrorForCode(got[2].ErrorCode))
	}
	if got := rawDeleteRecords(t, cl, "nosuch", map[int32]int64{0: 1}); got[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("unknown topic: %v; want UNKNOWN_TOPIC_OR_PARTITION", kerr.ErrorForCode(got[0].ErrorCode))
	}
	if s0, s1 := starts(); s0 != 7 || s1 != 3 {
		t.Fatalf("start offsets %d, %d after the refusals; want 7, 3", s0, s1)
	}

	// The follower applied the same entries; it refuses DeleteRecords.
	follow(t, f, b)
	f.SetCommitLSN(f.wal.LastLSN())
	want := watermarkDump(b)
	if got := watermarkDump(f); got != want {
		t.Fatalf("follower's watermarks:\n%s\nleader's:\n%s", got, want)
	}
	fresp2 := handleDeleteRecords(f, &reqCtx{ctx: t.Context()}, func() kmsg.Request {
		r := kmsg.NewPtrDeleteRecordsRequest()
		rt := kmsg.NewDeleteRecordsRequestTopic()
		rt.Topic = "dr"
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Offset = 8
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
		return r
	}())().(*kmsg.DeleteRecordsResponse)
	if c := fresp2.Topics[0].Partitions[0].ErrorCode; c != kerr.NotLeaderForPartition.Code {
		t.Fatalf("DeleteRecords on a follower: %v; want NOT_LEADER_OR_FOLLOWER", kerr.ErrorForCode(c))
	}

	// A restart replays the entries; a replica re-cloned from the leader
	// gets them too.
	if got := watermarkDump(recloneFollower(t, b)); got != want {
		t.Fatalf("re-cloned replica's watermarks:\n%s\nleader's:\n%s", got, want)
	}
	cl.Close()
	b.Close()
	b, addr = startBroker(t, dir)
	if got := watermarkDump(b); got != want {
		t.Fatalf("watermarks after a restart:\n%s\nbefore:\n%s", got, want)
	}
	if got := firstOffset(t, addr, "dr"); got != 7 {
		t.Fatalf("after the restart a consumer from the start read offset %d first; want 7", got)
	}
}
