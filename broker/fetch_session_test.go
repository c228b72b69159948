package broker

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sessionFetch sends one Fetch v12 (session id and epoch as given, the
// partitions of topic with their fetch offsets, partitions to forget) and
// returns the answer.
func sessionFetch(t *testing.T, cl *kgo.Client, id, epoch int32, topic string, offsets map[int32]int64, forget ...int32) *kmsg.FetchResponse {
	t.Helper()
	return sessionFetchMax(t, cl, 1<<20, id, epoch, topic, offsets, forget...)
}

// sessionFetchMax is sessionFetch with the request's MaxBytes.
func sessionFetchMax(t *testing.T, cl *kgo.Client, maxBytes, id, epoch int32, topic string, offsets map[int32]int64, forget ...int32) *kmsg.FetchResponse {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.ReplicaID, req.MaxBytes, req.MaxWaitMillis = 12, -1, maxBytes, 10
	req.SessionID, req.SessionEpoch = id, epoch
	if len(offsets) > 0 {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		// In partition order: which partition a small MaxBytes serves
		// first depends on it (a map's order is random).
		for _, p := range slices.Sorted(maps.Keys(offsets)) {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.LogStartOffset = p, offsets[p], 1<<20, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	if len(forget) > 0 {
		req.ForgottenTopics = append(req.ForgottenTopics, kmsg.FetchRequestForgottenTopic{Topic: topic, Partitions: forget})
	}
	kresp, err := cl.Broker(1).Request(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return kresp.(*kmsg.FetchResponse)
}

// listed names the partitions an answer lists, with "+" for those that
// carry records, e.g. "0+ 2".
func listed(resp *kmsg.FetchResponse) string {
	var out []string
	for _, st := range resp.Topics {
		for _, sp := range st.Partitions {
			s := string(rune('0' + sp.Partition))
			if len(sp.RecordBatches) > 0 {
				s += "+"
			}
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// Fetch sessions (KIP-227): a full Fetch at epoch 0 opens a session and
// lists every partition; an incremental Fetch lists only partitions with
// something new (records, a moved high watermark); forgotten partitions
// are no longer answered; a wrong epoch, an unknown session and a closed
// one are refused with the errors clients recover from by starting over.
func TestFetchSessions(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, cl, "s", 3)
	produce := func(p int32) {
		t.Helper()
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "s", Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0)

	resp := sessionFetch(t, cl, 0, 0, "s", map[int32]int64{0: 0, 1: 0, 2: 0})
	id := resp.SessionID
	if resp.ErrorCode != 0 || id == 0 || listed(resp) != "0+ 1 2" {
		t.Fatalf("full fetch opening a session: error %v, session %d, partitions %q; want a session and 0+ 1 2",
			kerr.ErrorForCode(resp.ErrorCode), id, listed(resp))
	}
	// Partition 0 moves on past its record: nothing new, nothing listed.
	if resp = sessionFetch(t, cl, id, 1, "s", map[int32]int64{0: 1}); resp.ErrorCode != 0 || resp.SessionID != id || listed(resp) != "" {
		t.Fatalf("incremental fetch with nothing new: error %v, session %d, partitions %q; want none",
			kerr.ErrorForCode(resp.ErrorCode), resp.SessionID, listed(resp))
	}
	produce(2)
	if resp = sessionFetch(t, cl, id, 2, "s", nil); listed(resp) != "2+" {
		t.Fatalf("after a record on partition 2: partitions %q; want 2+", listed(resp))
	}
	// Forget partition 2 and move it on: a record there is not answered.
	if resp = sessionFetch(t, cl, id, 3, "s", nil, 2); listed(resp) != "" {
		t.Fatalf("after forgetting partition 2: partitions %q; want none", listed(resp))
	}
	produce(2)
	produce(1)
	if resp = sessionFetch(t, cl, id, 4, "s", nil); listed(resp) != "1+" {
		t.Fatalf("after records on partitions 1 and 2 (forgotten): partitions %q; want 1+", listed(resp))
	}

	for _, tc := range []struct {
		name      string
		id, epoch int32
		want      *kerr.Error
	}{
		{"an epoch used before", id, 4, kerr.InvalidFetchSessionEpoch},
		{"an epoch ahead", id, 9, kerr.InvalidFetchSessionEpoch},
		{"an unknown session", id + 1, 1, kerr.FetchSessionIDNotFound},
		{"no session and an epoch", 0, 3, kerr.InvalidFetchSessionEpoch},
	} {
		if resp = sessionFetch(t, cl, tc.id, tc.epoch, "s", nil); resp.ErrorCode != tc.want.Code {
			t.Fatalf("%s: %v; want %v", tc.name, kerr.ErrorForCode(resp.ErrorCode), tc.want)
		}
	}
	// The refusals did not move the session on: epoch 5 is next.
	if resp = sessionFetch(t, cl, id, 5, "s", nil); resp.ErrorCode != 0 {
		t.Fatalf("epoch 5 after the refusals: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// Epoch -1 closes it (a full, sessionless answer); then it is unknown.
	if resp = sessionFetch(t, cl, id, -1, "s", map[int32]int64{0: 0}); resp.ErrorCode != 0 || resp.SessionID != 0 || listed(resp) != "0+" {
		t.Fatalf("closing fetch: error %v, session %d, partitions %q", kerr.ErrorForCode(resp.ErrorCode), resp.SessionID, listed(resp))
	}
	if resp = sessionFetch(t, cl, id, 6, "s", nil); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("fetch in a closed session: %v; want FETCH_SESSION_ID_NOT_FOUND", kerr.ErrorForCode(resp.ErrorCode))
	}
}

// When MaxBytes lets only one partition's records into an answer, the
// partitions of a session take turns (the one served moves to the end), so
// none starves.
func TestFetchSessionTakesTurns(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, cl, "turns", 3)
	for p := int32(0); p < 3; p++ {
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "turns", Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	resp := sessionFetchMax(t, cl, 1, 0, 0, "turns", map[int32]int64{0: 0, 1: 0, 2: 0})
	if got := listed(resp); got != "0+ 1 2" {
		t.Fatalf("full fetch, MaxBytes 1: partitions %q; want 0+ 1 2", got)
	}
	// No fetch offset moves: every partition has a record to give each time.
	for epoch, want := range []string{"", "1+", "2+", "0+", "1+"} {
		if epoch == 0 {
			continue
		}
		if got := listed(sessionFetchMax(t, cl, 1, resp.SessionID, int32(epoch), "turns", nil)); got != want {
			t.Fatalf("incremental fetch %d, MaxBytes 1: partitions %q; want %q", epoch, got, want)
		}
	}
}

// A franz-go consumer (which uses fetch sessions) reads every record of
// many partitions while they are written, and the broker answered it
// through a session.
func TestFetchSessionConsumer(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const parts, per = 20, 50
	createTopic(t, cl, "many", parts)
	cons := newClient(t, addr, kgo.ConsumeTopics("many"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50*time.Millisecond))
	done := make(chan map[string]bool)
	go func() {
		seen := map[string]bool{}
		for len(seen) < parts*per {
			fs := cons.PollFetches(t.Context())
			if fs.IsClientClosed() || t.Context().Err() != nil {
				break
			}
			fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		}
		done <- seen
	}()
	for i := 0; i < per; i++ {
		for p := int32(0); p < parts; p++ {
			cl.Produce(t.Context(), &kgo.Record{Topic: "many", Partition: p, Value: []byte(string(rune('a'+p)) + "-" + time.Duration(i).String())}, nil)
		}
		if i%10 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := cl.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case seen := <-done:
		if len(seen) != parts*per {
			t.Fatalf("read %d distinct records, want %d", len(seen), parts*per)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer did not read every record in 30 s")
	}
	if b.fetchSessions.count() == 0 {
		t.Fatal("the consumer read without a fetch session")
	}
}
