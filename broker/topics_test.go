package broker

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/wal"
)

// createTopic creates a topic with kmsg and fails the test unless it worked.
func createTopic(t *testing.T, cl *kgo.Client, name string, partitions int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// CreatePartitions has the same upper bound as CreateTopics, and a
// CreatePartitions entry over it that an older version wrote to the WAL is
// skipped when applied, now and at every restart, instead of allocating
// its partitions.
func TestCreatePartitionsLimit(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBroker(t, dir)
	cl := newClient(t, addr)
	createTopic(t, cl, "cp", 1)
	for _, tc := range []struct {
		name         string
		count        int32
		validateOnly bool
		want         *kerr.Error
	}{
		{"one over the limit", maxPartitions + 1, false, kerr.InvalidPartitions},
		// Validate only, so that a broker without the limit is not asked
		// to allocate two billion partitions.
		{"max int32", math.MaxInt32, true, kerr.InvalidPartitions},
		{"at the limit, validate only", maxPartitions, true, nil},
		{"grow to 3", 3, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := kmsg.NewPtrCreatePartitionsRequest()
			req.TimeoutMillis = 30000
			req.ValidateOnly = tc.validateOnly
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = "cp", tc.count
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(context.Background(), cl)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Topics[0].ErrorCode; got != codeOf(tc.want) {
				t.Fatalf("CreatePartitions to %d: %v, want %v", tc.count, kerr.ErrorForCode(got), tc.want)
			}
		})
	}
	if n := len(mustTopic(t, b, "cp").partitions); n != 3 {
		t.Fatalf("topic has %d partitions, want 3", n)
	}

	// An entry over the limit, as an older version could write it.
	b.appendMu.Lock()
	_, err := b.appendLocked(wal.TypeCreatePartitions, encodeJSON(createPartitionsEntry{Name: "cp", Count: 2 * maxPartitions}))
	b.appendMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mustTopic(t, b, "cp").partitions); n != 3 {
		t.Fatalf("after applying an entry over the limit the topic has %d partitions, want 3", n)
	}
	cl.Close()
	b.Close()
	b2, _ := startBroker(t, dir)
	if n := len(mustTopic(t, b2, "cp").partitions); n != 3 {
		t.Fatalf("after a restart the topic has %d partitions, want 3", n)
	}
}

func mustTopic(t *testing.T, b *Broker, name string) topicSnapshot {
	t.Helper()
	snap, ok := b.topicSnap(name)
	if !ok {
		t.Fatalf("topic %s does not exist", name)
	}
	return snap
}

// codeOf is a Kafka error's code, 0 for none.
func codeOf(e *kerr.Error) int16 {
	if e == nil {
		return 0
	}
	return e.Code
}

// max.message.bytes is a Kafka INT of at least 0: CreateTopics and
// IncrementalAlterConfigs refuse anything else with INVALID_CONFIG. A value
// out of range that an older version stored counts as unset, instead of
// making every produce to the topic fail.
func TestMaxMessageBytesValidated(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "alter", 1)
	for i, tc := range []struct {
		value string
		want  *kerr.Error
	}{
		{"-1", kerr.InvalidConfig},
		{"2147483648", kerr.InvalidConfig},
		{"99999999999", kerr.InvalidConfig},
		{"big", kerr.InvalidConfig},
		{"0", nil},
		{"2147483647", nil},
		{"1048588", nil},
	} {
		t.Run(tc.value, func(t *testing.T) {
			ct := kmsg.NewPtrCreateTopicsRequest()
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = fmt.Sprint("t", i), 1, 1
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = "max.message.bytes", kmsg.StringPtr(tc.value)
			rt.Configs = append(rt.Configs, c)
			ct.Topics = append(ct.Topics, rt)
			cresp, err := ct.RequestWith(context.Background(), cl)
			if err != nil {
				t.Fatal(err)
			}
			if got := cresp.Topics[0].ErrorCode; got != codeOf(tc.want) {
				t.Errorf("CreateTopics: %v, want %v", kerr.ErrorForCode(got), tc.want)
			}

			ia := kmsg.NewPtrIncrementalAlterConfigsRequest()
			r := kmsg.NewIncrementalAlterConfigsRequestResource()
			r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, "alter"
			rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			rc.Name, rc.Op, rc.Value = "max.message.bytes", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(tc.value)
			r.Configs = append(r.Configs, rc)
			ia.Resources = append(ia.Resources, r)
			iresp, err := ia.RequestWith(context.Background(), cl)
			if err != nil {
				t.Fatal(err)
			}
			if got := iresp.Resources[0].ErrorCode; got != codeOf(tc.want) {
				t.Errorf("IncrementalAlterConfigs: %v, want %v", kerr.ErrorForCode(got), tc.want)
			}
		})
	}

	// A value out of range stored by an older version.
	createTopic(t, cl, "old", 1)
	b.appendMu.Lock()
	_, err := b.appendLocked(wal.TypeAlterConfig, encodeJSON(alterConfigEntry{Name: "old", Set: map[string]*string{"max.message.bytes": kmsg.StringPtr("-1")}}))
	b.appendMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if r := rawProduce(t, cl, "old", -1, -1, -1, 1); r.ErrorCode != 0 {
		t.Fatalf("produce to a topic with max.message.bytes=-1 stored: %v", kerr.ErrorForCode(r.ErrorCode))
	}
}
