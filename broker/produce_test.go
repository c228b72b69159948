package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/wal"
)

// A produce that looked its partition up before the topic was deleted (and
// maybe created again under the same name) appends nothing and answers
// UNKNOWN_TOPIC_OR_PARTITION: it must not stamp its batch with the old
// partition's next offset and land in the new topic, or be acknowledged
// and never indexed. The handler's lookup and its append are replayed here
// with the package internals, with the deletion in between.
func TestProduceRacingTopicDeletion(t *testing.T) {
	for _, tc := range []struct {
		name     string
		recreate bool
	}{
		{"deleted", false},
		{"deleted and created again", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, addr := startBroker(t, t.TempDir())
			cl := newClient(t, addr)
			createTopic(t, cl, "t", 1)
			for i := 0; i < 3; i++ {
				if r := rawProduce(t, cl, "t", -1, -1, -1, 1); r.ErrorCode != 0 {
					t.Fatal(kerr.ErrorForCode(r.ErrorCode))
				}
			}
			stale := b.partition("t", 0) // the produce handler's lookup
			if code := b.deleteTopic(context.Background(), "t"); code != nil {
				t.Fatal(code)
			}
			want := int64(0)
			if tc.recreate {
				createTopic(t, cl, "t", 1)
				for i := 0; i < 10; i++ {
					if r := rawProduce(t, cl, "t", -1, -1, -1, 1); r.ErrorCode != 0 {
						t.Fatal(kerr.ErrorForCode(r.ErrorCode))
					}
				}
				want = 10
			}
			raws, infos, err := splitBatches(rawBatch(-1, -1, -1, 1), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			base, _, code := b.appendBatches(stale, "t", 0, raws, infos, nil)
			if code != kerr.UnknownTopicOrPartition {
				t.Fatalf("the late produce was answered with base offset %d, error %v; want UNKNOWN_TOPIC_OR_PARTITION", base, code)
			}
			if !tc.recreate {
				return
			}
			p := b.partition("t", 0)
			if _, _, next := p.watermarks(); next != want {
				t.Fatalf("the new topic's log end offset is %d, want %d", next, want)
			}
			if r := rawProduce(t, cl, "t", -1, -1, -1, 1); r.ErrorCode != 0 || r.BaseOffset != want {
				t.Fatalf("next produce: error %v, base offset %d; want none, %d", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset, want)
			}
			if got := consumeAll(t, addr, "t", int(want)+1); len(got) != int(want)+1 {
				t.Fatalf("consumed %d records, want %d", len(got), want+1)
			}
		})
	}
}

// acks=1 is answered once the batch is durable here, whatever the
// request's timeout says: Kafka applies the timeout to acks=-1 only. A
// REQUEST_TIMED_OUT answer to records that were written would make a
// client retry them and write them twice.
func TestAcks1IgnoresTimeout(t *testing.T) {
	for _, timeout := range []int32{0, -1, 1} {
		t.Run(fmt.Sprint("timeout ", timeout), func(t *testing.T) {
			_, addr := startBroker(t, t.TempDir())
			// kgo sends a raw ProduceRequest with the client's acks.
			cl := newClient(t, addr, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
			createTopic(t, cl, "z", 1)
			for i := int64(0); i < 20; i++ {
				req := kmsg.NewPtrProduceRequest()
				req.Acks = 1
				req.TimeoutMillis = timeout
				rt := kmsg.NewProduceRequestTopic()
				rt.Topic = "z"
				rp := kmsg.NewProduceRequestTopicPartition()
				rp.Records = rawBatch(-1, -1, -1, 1)
				rt.Partitions = append(rt.Partitions, rp)
				req.Topics = append(req.Topics, rt)
				resp, err := req.RequestWith(context.Background(), cl)
				if err != nil {
					t.Fatal(err)
				}
				if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.BaseOffset != i {
					t.Fatalf("produce %d: error %v, base offset %d; want none, %d", i, kerr.ErrorForCode(p.ErrorCode), p.BaseOffset, i)
				}
			}
		})
	}
}

// A failed acks=0 produce has no answer to carry its error, so the broker
// closes the connection (as Kafka does) once the answers to the requests
// before it are sent; the client then refreshes its metadata. A produce
// that succeeds leaves the connection open.
func TestAcks0FailureClosesConnection(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	createTopic(t, newClient(t, addr), "ok", 1)
	for _, tc := range []struct {
		name   string
		topic  string
		closes bool
	}{
		{"unknown topic", "nope", true},
		{"written", "ok", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("acks0"))
			av := kmsg.NewPtrApiVersionsRequest()
			pr := kmsg.NewPtrProduceRequest()
			pr.SetVersion(7)
			pr.Acks = 0
			pr.TimeoutMillis = 5000
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = tc.topic
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Records = rawBatch(-1, -1, -1, 1)
			rt.Partitions = append(rt.Partitions, rp)
			pr.Topics = append(pr.Topics, rt)
			// Pipelined: ApiVersions, the produce, ApiVersions again.
			// (AppendRequest puts the size at the start of dst: one
			// frame per call.)
			var buf []byte
			buf = append(buf, f.AppendRequest(nil, av, 1)...)
			buf = append(buf, f.AppendRequest(nil, pr, 2)...)
			buf = append(buf, f.AppendRequest(nil, av, 3)...)
			if _, err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			corrID := func() (int32, error) {
				frame, err := readFrameLimit(r, 1<<20, "socket.request.max.bytes")
				if err != nil {
					return 0, err
				}
				return int32(binary.BigEndian.Uint32(frame)), nil
			}
			if id, err := corrID(); err != nil || id != 1 {
				t.Fatalf("first answer: correlation id %d, error %v; want the answer to the request before the produce", id, err)
			}
			id, err := corrID()
			if tc.closes {
				var ne net.Error
				if err == nil || errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("after the failed acks=0 produce: correlation id %d, error %v; want the connection closed", id, err)
				}
				return
			}
			if err != nil || id != 3 {
				t.Fatalf("after the acks=0 produce: correlation id %d, error %v; want the answer to the next request", id, err)
			}
			if _, _, next := b.partition(tc.topic, 0).watermarks(); next != 1 {
				t.Fatalf("log end offset %d after the acks=0 produce, want 1", next)
			}
		})
	}
}

// The batches of one partition's record set are all checked before any is
// written, as Kafka does: if one is refused, none is written, and each
// batch's sequence is checked against the batches before it in the set.
func TestProduceRecordSetAllOrNothing(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	corrupt := func(raw []byte) []byte {
		raw[len(raw)-1] ^= 0xff // a record byte: the CRC no longer matches
		return raw
	}
	type batch struct{ seq, n int32 }
	for i, tc := range []struct {
		name     string
		before   []batch // written first, one request each
		set      []batch // then one request with all of these
		mangle   func([]byte) []byte
		want     *kerr.Error
		wantBase int64
		wantNext int64
	}{
		{"in sequence", nil, []batch{{0, 2}, {2, 1}}, nil, nil, 0, 3},
		{"second batch out of order", nil, []batch{{0, 2}, {5, 1}}, nil, kerr.OutOfOrderSequenceNumber, -1, 0},
		{"second batch corrupt", nil, []batch{{0, 2}, {2, 1}}, corrupt, kerr.CorruptMessage, -1, 0},
		{"a batch repeated in the set", nil, []batch{{0, 2}, {0, 2}}, nil, kerr.OutOfOrderSequenceNumber, -1, 0},
		{"a retry, then a new batch", []batch{{0, 2}}, []batch{{0, 2}, {2, 1}}, nil, nil, 0, 3},
		{"new batches after a gap", []batch{{0, 2}}, []batch{{2, 1}, {4, 1}}, nil, kerr.OutOfOrderSequenceNumber, -1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprint("set", i)
			createTopic(t, cl, topic, 1)
			ip, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(context.Background(), cl)
			if err != nil || ip.ErrorCode != 0 {
				t.Fatalf("InitProducerId: %v %v", err, kerr.ErrorForCode(ip.ErrorCode))
			}
			for _, bt := range tc.before {
				if r := rawProduce(t, cl, topic, ip.ProducerID, ip.ProducerEpoch, bt.seq, int(bt.n)); r.ErrorCode != 0 {
					t.Fatal(kerr.ErrorForCode(r.ErrorCode))
				}
			}
			var records []byte
			for j, bt := range tc.set {
				raw := rawBatch(ip.ProducerID, ip.ProducerEpoch, bt.seq, int(bt.n))
				if j == len(tc.set)-1 && tc.mangle != nil {
					raw = tc.mangle(raw)
				}
				records = append(records, raw...)
			}
			r := produceRecords(t, cl, topic, records)
			if r.ErrorCode != codeOf(tc.want) || r.BaseOffset != tc.wantBase {
				t.Errorf("record set answered with error %v, base offset %d; want %v, %d", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset, tc.want, tc.wantBase)
			}
			if _, _, next := b.partition(topic, 0).watermarks(); next != tc.wantNext {
				t.Fatalf("log end offset %d, want %d", next, tc.wantNext)
			}
		})
	}
}

// A produce error for a partition that exists carries its log start offset,
// as Kafka's does: with OUT_OF_ORDER_SEQUENCE_NUMBER it is how a client
// tells records lost from records that retention removed. An unknown
// partition has none (-1).
func TestProduceErrorCarriesLogStartOffset(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "ls", 1)
	ip, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(context.Background(), cl)
	if err != nil || ip.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", err, kerr.ErrorForCode(ip.ErrorCode))
	}
	if r := rawProduce(t, cl, "ls", ip.ProducerID, ip.ProducerEpoch, 0, 3); r.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(r.ErrorCode))
	}
	// Topic retention moves the log start offset past the three records.
	adm := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, "ls"
	rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	rc.Name, rc.Value = "retention.ms", kmsg.StringPtr("1000")
	res.Configs = append(res.Configs, rc)
	adm.Resources = append(adm.Resources, res)
	if resp, err := adm.RequestWith(context.Background(), cl); err != nil || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("setting retention.ms: %v", err)
	}
	b.trimTopics(time.Now().Add(time.Hour))
	if start, _, _ := b.partition("ls", 0).watermarks(); start != 3 {
		t.Fatalf("log start offset %d after topic retention, want 3", start)
	}
	corrupt := rawBatch(-1, -1, -1, 1)
	corrupt[len(corrupt)-1] ^= 0xff
	for _, tc := range []struct {
		name      string
		topic     string
		records   []byte
		want      *kerr.Error
		wantStart int64
	}{
		{"sequence gap", "ls", rawBatch(ip.ProducerID, ip.ProducerEpoch, 7, 1), kerr.OutOfOrderSequenceNumber, 3},
		{"corrupt batch", "ls", corrupt, kerr.CorruptMessage, 3},
		{"unknown topic", "none", rawBatch(-1, -1, -1, 1), kerr.UnknownTopicOrPartition, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := produceRecords(t, cl, tc.topic, tc.records)
			if r.ErrorCode != codeOf(tc.want) || r.LogStartOffset != tc.wantStart {
				t.Fatalf("error %v, log start offset %d; want %v, %d", kerr.ErrorForCode(r.ErrorCode), r.LogStartOffset, tc.want, tc.wantStart)
			}
		})
	}
}

// A produce checks the role when it arrives and appends later. The sidecar
// fences a broker that lost leadership by sending it a follower view and
// waiting until it is applied; from then on nothing may be appended, not
// even by a request that passed its role check before, or the entry would
// carry the new leader's epoch at an LSN the new leader writes too.
func TestNoAppendAfterLeavingLeadership(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "t", 1)
	p := b.partition("t", 0) // the request's checks happened here ...
	raws, infos, err := splitBatches(rawBatch(-1, -1, -1, 1), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	last := b.wal.LastLSN()
	// ... then the sidecar fences the broker: node 2 leads epoch 7.
	b.SetClusterView(link.ClusterView{Role: link.RoleFollower, LeaderID: 2, Epoch: 7})
	if _, _, code := b.appendBatches(p, "t", 0, raws, infos, nil); code != kerr.NotLeaderForPartition {
		t.Errorf("append after the fence answered %v, want NOT_LEADER_OR_FOLLOWER", code)
	}
	b.appendMu.Lock()
	_, err = b.appendLocked(wal.TypeNoop, nil)
	b.appendMu.Unlock()
	if !errors.Is(err, ErrNotLeader) {
		t.Errorf("metadata append after the fence: %v, want ErrNotLeader", err)
	}
	if got := b.wal.LastLSN(); got != last {
		t.Fatalf("the WAL grew from %d to %d after the broker learnt it follows", last, got)
	}
}
