package broker

import (
	"context"
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
