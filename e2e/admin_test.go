package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

func strp(s string) *string { return &s }

// configValue returns the value and source of key in a described resource.
func configValue(rc kadm.ResourceConfig, key string) (string, kmsg.ConfigSource, bool) {
	for _, c := range rc.Configs {
		if c.Key == key {
			if c.Value == nil {
				return "", c.Source, true
			}
			return *c.Value, c.Source, true
		}
	}
	return "", 0, false
}

// partitionCount returns how many partitions a fresh Metadata request lists
// for topic, or -1 when the topic is not listed. It asks for all topics,
// without auto-creation, and bypasses kadm's metadata cache.
func partitionCount(t *testing.T, cl *kgo.Client, topic string) int {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = nil // all topics
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctxTimeout(t, 10*time.Second), cl)
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	for _, mt := range resp.Topics {
		if mt.Topic == nil || *mt.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
			t.Fatalf("Metadata for %s: %v", topic, err)
		}
		return len(mt.Partitions)
	}
	return -1
}

// TestAdminAPIs drives the admin APIs with kadm (franz-go's admin client):
// CreateTopics with configs, DescribeConfigs, CreatePartitions, DeleteTopics,
// ListOffsets (earliest, latest, by timestamp), ListGroups, DescribeGroups.
func TestAdminAPIs(t *testing.T) {
	b := startBroker(t, "--num-partitions", "2")
	kcl := b.client()
	adm := kadm.NewClient(kcl)

	t.Run("CreateTopics", func(t *testing.T) {
		for name, configs := range map[string]map[string]*string{
			"adm-configs": {"retention.ms": strp("3600000"), "cleanup.policy": strp("delete")},
			"adm-plain":   nil,
		} {
			resp, err := adm.CreateTopics(ctxTimeout(t, 10*time.Second), 3, 1, configs, name)
			if err != nil {
				t.Fatalf("CreateTopics: %v", err)
			}
			if r := resp[name]; r.Err != nil {
				t.Fatalf("CreateTopics %s: %v (%s)", name, r.Err, r.ErrMessage)
			}
			if n := partitionCount(t, kcl, name); n != 3 {
				t.Errorf("Metadata lists %d partitions for %s, want 3", n, name)
			}
		}

		// Creating an existing topic or an illegal name fails with the Kafka error.
		tests := []struct {
			topic string
			want  error
		}{
			{"adm-plain", kerr.TopicAlreadyExists},
			{"bad/name", kerr.InvalidTopicException},
			{"..", kerr.InvalidTopicException},
		}
		for _, tc := range tests {
			resp, err := adm.CreateTopics(ctxTimeout(t, 10*time.Second), 1, 1, nil, tc.topic)
			if err != nil {
				t.Fatalf("CreateTopics %q: %v", tc.topic, err)
			}
			if r := resp[tc.topic]; !errors.Is(r.Err, tc.want) {
				t.Errorf("CreateTopics %q: error %v (%s), want %v", tc.topic, r.Err, r.ErrMessage, tc.want)
			}
		}
	})

	t.Run("DescribeConfigs", func(t *testing.T) {
		rcs, err := adm.DescribeTopicConfigs(ctxTimeout(t, 10*time.Second), "adm-configs", "adm-plain")
		if err != nil {
			t.Fatalf("DescribeConfigs: %v", err)
		}
		want := map[string]map[string]string{
			// Set at creation.
			"adm-configs": {"retention.ms": "3600000", "cleanup.policy": "delete"},
			// Kafka's defaults (log.retention.hours=168).
			"adm-plain": {"retention.ms": "604800000", "cleanup.policy": "delete"},
		}
		for _, rc := range rcs {
			if rc.Err != nil {
				t.Errorf("DescribeConfigs %s: %v (%s)", rc.Name, rc.Err, rc.ErrMessage)
				continue
			}
			for key, v := range want[rc.Name] {
				got, src, ok := configValue(rc, key)
				if !ok || got != v {
					t.Errorf("DescribeConfigs %s: %s = %q (present %v), want %q", rc.Name, key, got, ok, v)
				}
				if rc.Name == "adm-configs" && ok && src != kmsg.ConfigSourceDynamicTopicConfig {
					t.Errorf("DescribeConfigs %s: %s has source %v, want DYNAMIC_TOPIC_CONFIG", rc.Name, key, src)
				}
			}
			delete(want, rc.Name)
		}
		if len(want) > 0 {
			t.Errorf("DescribeConfigs did not describe %v", want)
		}

		// The broker's own settings, as started (--num-partitions 2).
		brc, err := adm.DescribeBrokerConfigs(ctxTimeout(t, 10*time.Second), 1)
		if err != nil {
			t.Fatalf("DescribeConfigs broker 1: %v", err)
		}
		if len(brc) != 1 || brc[0].Err != nil {
			t.Fatalf("DescribeConfigs broker 1: %+v", brc)
		}
		for key, v := range map[string]string{"num.partitions": "2", "auto.create.topics.enable": "true"} {
			if got, _, ok := configValue(brc[0], key); !ok || got != v {
				t.Errorf("DescribeConfigs broker 1: %s = %q (present %v), want %q", key, got, ok, v)
			}
		}
	})

	t.Run("auto-created topic uses num.partitions", func(t *testing.T) {
		cl := b.client(kgo.AllowAutoTopicCreation())
		produceSync(t, cl, "adm-auto", []string{"x"})
		if n := partitionCount(t, kcl, "adm-auto"); n != 2 {
			t.Errorf("auto-created topic has %d partitions, want 2 (--num-partitions)", n)
		}
	})

	t.Run("CreatePartitions", func(t *testing.T) {
		resp, err := adm.UpdatePartitions(ctxTimeout(t, 10*time.Second), 5, "adm-plain")
		if err != nil {
			t.Fatalf("CreatePartitions: %v", err)
		}
		if r := resp["adm-plain"]; r.Err != nil {
			t.Fatalf("CreatePartitions adm-plain to 5: %v (%s)", r.Err, r.ErrMessage)
		}
		if n := partitionCount(t, kcl, "adm-plain"); n != 5 {
			t.Fatalf("after CreatePartitions, Metadata lists %d partitions, want 5", n)
		}
		// The new partition takes records.
		cl := b.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
		res := cl.ProduceSync(ctxTimeout(t, 30*time.Second), &kgo.Record{Topic: "adm-plain", Partition: 4, Value: []byte("p4")})
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce to new partition 4: %v", err)
		}
		if ends := b.endOffsets("adm-plain"); ends[4] != 1 {
			t.Errorf("end offset of new partition 4 is %d, want 1 (all: %v)", ends[4], ends)
		}
		// Shrinking is refused.
		resp, err = adm.UpdatePartitions(ctxTimeout(t, 10*time.Second), 2, "adm-plain")
		if err != nil {
			t.Fatalf("CreatePartitions: %v", err)
		}
		if r := resp["adm-plain"]; !errors.Is(r.Err, kerr.InvalidPartitions) {
			t.Errorf("CreatePartitions adm-plain from 5 to 2: error %v, want INVALID_PARTITIONS", r.Err)
		}
	})

	t.Run("DeleteTopics", func(t *testing.T) {
		produceSync(t, b.client(), "adm-configs", seqValues("old-", 5))
		resp, err := adm.DeleteTopics(ctxTimeout(t, 10*time.Second), "adm-configs")
		if err != nil {
			t.Fatalf("DeleteTopics: %v", err)
		}
		if r := resp["adm-configs"]; r.Err != nil {
			t.Fatalf("DeleteTopics adm-configs: %v (%s)", r.Err, r.ErrMessage)
		}
		if n := partitionCount(t, kcl, "adm-configs"); n != -1 {
			t.Fatalf("deleted topic still in Metadata with %d partitions", n)
		}
		resp, err = adm.DeleteTopics(ctxTimeout(t, 10*time.Second), "adm-configs")
		if err != nil {
			t.Fatalf("DeleteTopics: %v", err)
		}
		if r := resp["adm-configs"]; !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			t.Errorf("deleting a deleted topic: error %v, want UNKNOWN_TOPIC_OR_PARTITION", r.Err)
		}
		// A topic created again under the same name starts empty.
		b.createTopic("adm-configs", 1)
		if ends := b.endOffsets("adm-configs"); ends[0] != 0 {
			t.Errorf("re-created topic has end offset %d, want 0 (old records must be gone)", ends[0])
		}
	})

	t.Run("ListOffsets", func(t *testing.T) {
		const topic = "adm-times"
		b.createTopic(topic, 1)
		base := time.Now().Add(-time.Hour).Truncate(time.Second)
		// No delivery timeout: kgo measures it from the record's timestamp,
		// which is an hour old here.
		cl := b.client(kgo.RecordDeliveryTimeout(0))
		for i := range 10 {
			// One batch per record, with its own CreateTime.
			res := cl.ProduceSync(ctxTimeout(t, 30*time.Second),
				&kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "t%d", i), Timestamp: base.Add(time.Duration(i) * time.Second)})
			if err := res.FirstErr(); err != nil {
				t.Fatalf("produce record %d: %v", i, err)
			}
		}
		check := func(what string, lo kadm.ListedOffsets, err error, wantOffset int64) {
			t.Helper()
			if err != nil {
				t.Fatalf("ListOffsets %s: %v", what, err)
			}
			o, ok := lo.Lookup(topic, 0)
			if !ok || o.Err != nil || o.Offset != wantOffset {
				t.Errorf("ListOffsets %s: %+v (found %v), want offset %d", what, o, ok, wantOffset)
			}
		}
		lo, err := adm.ListStartOffsets(ctxTimeout(t, 10*time.Second), topic)
		check("earliest", lo, err, 0)
		lo, err = adm.ListEndOffsets(ctxTimeout(t, 10*time.Second), topic)
		check("latest", lo, err, 10)
		ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
		lo, err = adm.ListOffsetsAfterMilli(ctxTimeout(t, 10*time.Second), ms(-time.Minute), topic)
		check("by timestamp before every record", lo, err, 0)
		lo, err = adm.ListOffsetsAfterMilli(ctxTimeout(t, 10*time.Second), ms(5500*time.Millisecond), topic)
		check("by timestamp base+5.5s", lo, err, 6)
		if o, _ := lo.Lookup(topic, 0); o.Timestamp != ms(6*time.Second) {
			t.Errorf("ListOffsets by timestamp base+5.5s: timestamp %d, want %d (record 6's)", o.Timestamp, ms(6*time.Second))
		}
		lo, err = adm.ListOffsetsAfterMilli(ctxTimeout(t, 10*time.Second), ms(time.Minute), topic)
		check("by timestamp after every record (kadm reports the end)", lo, err, 10)

		// Inside one (compressed) batch the answer is the exact record, as
		// in Kafka, not the start of the batch.
		const inBatch = "adm-times-batch"
		b.createTopic(inBatch, 1)
		recs := make([]*kgo.Record, 10)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: inBatch, Value: fmt.Appendf(nil, "t%d", i), Timestamp: base.Add(time.Duration(i) * time.Second)}
		}
		batcher := b.client(kgo.RecordDeliveryTimeout(0), kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.ManualFlushing())
		if err := produceOneBatch(ctxTimeout(t, 30*time.Second), batcher, recs...); err != nil {
			t.Fatalf("produce one batch: %v", err)
		}
		lo, err = adm.ListOffsetsAfterMilli(ctxTimeout(t, 10*time.Second), ms(5500*time.Millisecond), inBatch)
		if err != nil {
			t.Fatalf("ListOffsets by timestamp in one batch: %v", err)
		}
		if o, _ := lo.Lookup(inBatch, 0); o.Offset != 6 {
			t.Errorf("ListOffsets by timestamp base+5.5s inside one batch of 10: offset %d, want 6", o.Offset)
		}

		// ListOffsets v7 (which the broker offers) also answers -3: the
		// offset of the record with the largest timestamp (KIP-734).
		lo, err = adm.ListMaxTimestampOffsets(ctxTimeout(t, 10*time.Second), topic)
		if err != nil {
			t.Fatalf("ListOffsets max timestamp: %v", err)
		}
		if o, _ := lo.Lookup(topic, 0); o.Err != nil || o.Offset != 9 {
			t.Errorf("ListOffsets max timestamp: %+v, want offset 9 (the newest timestamp)", o)
		}

		// Consumers see the producer's timestamps.
		rd := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		for i, r := range consumeN(t, rd, 10, 20*time.Second) {
			if want := base.Add(time.Duration(i) * time.Second); !r.Timestamp.Equal(want) {
				t.Errorf("record %d has timestamp %v, want %v", i, r.Timestamp, want)
			}
		}
	})

	t.Run("ListGroups and DescribeGroups", func(t *testing.T) {
		const group = "adm-group"
		member := b.client(kgo.ConsumerGroup(group), kgo.ConsumeTopics("adm-plain"),
			kgo.ClientID("adm-member"), kgo.DisableAutoCommit())
		// Joining, getting all five partitions and reading the one record
		// (on partition 4) proves the member is in; then commit.
		got := consumeN(t, member, 1, 30*time.Second)
		requireSameValues(t, "group member", values(got), []string{"p4"})
		if err := member.CommitUncommittedOffsets(ctxTimeout(t, 10*time.Second)); err != nil {
			t.Fatalf("commit: %v", err)
		}
		memberID, _ := member.GroupMetadata()

		lg, err := adm.ListGroups(ctxTimeout(t, 10*time.Second))
		if err != nil {
			t.Fatalf("ListGroups: %v", err)
		}
		if g, ok := lg[group]; !ok || g.ProtocolType != "consumer" {
			t.Errorf("ListGroups: %s is %+v (listed %v), want protocol type consumer; all: %v", group, g, ok, lg.Groups())
		}

		dg, err := adm.DescribeGroups(ctxTimeout(t, 10*time.Second), group)
		if err != nil {
			t.Fatalf("DescribeGroups: %v", err)
		}
		g := dg[group]
		if g.Err != nil || g.State != "Stable" || g.ProtocolType != "consumer" || len(g.Members) != 1 {
			t.Fatalf("DescribeGroups: err %v, state %q, protocol type %q, %d members; want Stable consumer group with 1 member",
				g.Err, g.State, g.ProtocolType, len(g.Members))
		}
		if m := g.Members[0]; m.MemberID != memberID {
			t.Errorf("DescribeGroups member id %q, want %q (the client's)", m.MemberID, memberID)
		}
		// What kafka-consumer-groups.sh --describe shows as CLIENT-ID and HOST.
		if m := g.Members[0]; m.ClientID != "adm-member" || !strings.Contains(m.ClientHost, "127.0.0.1") {
			t.Errorf("DescribeGroups member: client id %q, client host %q; want adm-member and the client's address 127.0.0.1", m.ClientID, m.ClientHost)
		}
		var assigned []int32
		g.AssignedPartitions().Each(func(tp string, p int32) {
			if tp == "adm-plain" {
				assigned = append(assigned, p)
			}
		})
		slices.Sort(assigned)
		if all := []int32{0, 1, 2, 3, 4}; !slices.Equal(assigned, all) {
			t.Errorf("DescribeGroups: assigned partitions %v, want %v", assigned, all)
		}

		// After the only member leaves, the group (which has committed
		// offsets) is Empty, and its offsets are still there.
		member.Close()
		testutil.Eventually(t, 10*time.Second, func() error {
			dg, err := adm.DescribeGroups(ctxTimeout(t, 5*time.Second), group)
			if err != nil {
				return err
			}
			if g := dg[group]; g.State != "Empty" || len(g.Members) != 0 {
				return fmt.Errorf("after the member left: state %q with %d members, want Empty with 0", g.State, len(g.Members))
			}
			return nil
		})
		offs, err := adm.FetchOffsets(ctxTimeout(t, 10*time.Second), group)
		if err != nil {
			t.Fatalf("OffsetFetch: %v", err)
		}
		if o, ok := offs.Lookup("adm-plain", 4); !ok || o.Err != nil || o.At != 1 {
			t.Errorf("OffsetFetch %s adm-plain[4] = %+v (found %v), want 1", group, o, ok)
		}
	})
	b.requireAlive()
}

// TestTopicConfigsTakeEffect: topic configs that the broker accepts change
// what clients see. (Refusing a config with INVALID_CONFIG is acceptable;
// accepting and ignoring it is not.)
func TestTopicConfigsTakeEffect(t *testing.T) {
	b := startBroker(t, "--segment-bytes", strconv.Itoa(1<<20), "--log-retention-check-interval", "100ms")
	adm := b.admin()
	create := func(t *testing.T, topic, key, value string) bool {
		t.Helper()
		resp, err := adm.CreateTopics(ctxTimeout(t, 10*time.Second), 1, 1, map[string]*string{key: strp(value)}, topic)
		if err != nil {
			t.Fatalf("CreateTopics: %v", err)
		}
		if err := resp[topic].Err; err != nil {
			if errors.Is(err, kerr.InvalidConfig) {
				t.Logf("%s=%s refused with INVALID_CONFIG (%s): not supported, which is fine", key, value, resp[topic].ErrMessage)
				return false
			}
			t.Fatalf("CreateTopics %s with %s=%s: %v", topic, key, value, err)
		}
		return true
	}

	t.Run("message.timestamp.type=LogAppendTime", func(t *testing.T) {
		const topic = "log-append-time"
		if !create(t, topic, "message.timestamp.type", "LogAppendTime") {
			return
		}
		old := time.Now().Add(-24 * time.Hour)
		cl := b.client(kgo.RecordDeliveryTimeout(0), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		before := time.Now().Add(-time.Second)
		if err := cl.ProduceSync(ctxTimeout(t, 10*time.Second), &kgo.Record{Topic: topic, Value: []byte("x"), Timestamp: old}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		r := consumeN(t, cl, 1, 20*time.Second)[0]
		if r.Timestamp.Before(before) || r.Attrs.TimestampType() != 1 {
			t.Errorf("record has timestamp %v (type %d); with LogAppendTime want the broker's append time (after %v, type 1)", r.Timestamp, r.Attrs.TimestampType(), before)
		}
	})

	t.Run("max.message.bytes", func(t *testing.T) {
		const topic = "small-messages"
		if !create(t, topic, "max.message.bytes", "2000") {
			return
		}
		rcs, err := adm.DescribeTopicConfigs(ctxTimeout(t, 10*time.Second), topic)
		if err != nil || len(rcs) != 1 {
			t.Fatalf("DescribeConfigs: %v", err)
		}
		if v, _, _ := configValue(rcs[0], "max.message.bytes"); v != "2000" {
			t.Errorf("DescribeConfigs: max.message.bytes = %q, want 2000", v)
		}
		cl := b.client(kgo.ProducerBatchCompression(kgo.NoCompression()))
		err = cl.ProduceSync(ctxTimeout(t, 10*time.Second), &kgo.Record{Topic: topic, Value: []byte(strings.Repeat("m", 5000))}).FirstErr()
		if !errors.Is(err, kerr.MessageTooLarge) {
			t.Errorf("5000-byte record to a topic with max.message.bytes=2000: error %v, want MESSAGE_TOO_LARGE", err)
		}
	})

	t.Run("min.insync.replicas", func(t *testing.T) {
		// A standalone broker is an ISR of one: acks=all to a topic that
		// needs two in-sync replicas fails; acks=1 is not affected.
		const topic = "needs-two"
		if !create(t, topic, "min.insync.replicas", "2") {
			return
		}
		all := b.client(kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(10*time.Second))
		err := all.ProduceSync(ctxTimeout(t, 30*time.Second), &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
		if !errors.Is(err, kerr.NotEnoughReplicas) {
			t.Errorf("acks=all with min.insync.replicas=2 on a single broker: error %v, want NOT_ENOUGH_REPLICAS", err)
		}
		one := b.client(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
		if err := one.ProduceSync(ctxTimeout(t, 30*time.Second), &kgo.Record{Topic: topic, Value: []byte("y")}).FirstErr(); err != nil {
			t.Errorf("acks=1 with min.insync.replicas=2: %v, want success", err)
		}
	})

	t.Run("retention.ms", func(t *testing.T) {
		// As in Kafka: sealed segments whose records are all older than the
		// topic's retention.ms go, and the topic's start offset moves.
		const topic = "short-lived"
		if !create(t, topic, "retention.ms", "1000") {
			return
		}
		cl := b.client(kgo.ProducerBatchCompression(kgo.NoCompression()))
		pad := strings.Repeat("r", 1000)
		for i := range 30 { // ~3 MB: a few 1 MiB segments
			vals := make([]string, 100)
			for j := range vals {
				vals[j] = fmt.Sprintf("%d-%s", i*100+j, pad)
			}
			produceSync(t, cl, topic, vals)
		}
		err := testutil.Poll(15*time.Second, func() error {
			lo, err := adm.ListStartOffsets(ctxTimeout(t, 5*time.Second), topic)
			if err != nil {
				return err
			}
			if o, _ := lo.Lookup(topic, 0); o.Offset == 0 {
				return errors.New("start offset still 0")
			}
			return nil
		})
		if err != nil {
			t.Errorf("topic with retention.ms=1000: after 15s the start offset has not moved (%v); the override is accepted but not applied", err)
		}
	})
	b.requireAlive()
}
