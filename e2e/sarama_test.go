package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig() // Version defaults to 2.8.0
	cfg.ClientID = "e2e-sarama"
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Timeout = 10 * time.Second
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.MaxWaitTime = 200 * time.Millisecond
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 200 * time.Millisecond
	return cfg
}

// saramaGroupHandler marks and counts every message; once want messages were
// seen across all claims it commits and closes done.
type saramaGroupHandler struct {
	want int
	mu   sync.Mutex
	got  map[int32][]string
	n    int
	done chan struct{}
	once sync.Once
}

func (h *saramaGroupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *saramaGroupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *saramaGroupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			sess.MarkMessage(msg, "")
			h.mu.Lock()
			h.got[msg.Partition] = append(h.got[msg.Partition], string(msg.Value))
			h.n++
			reached := h.n >= h.want
			h.mu.Unlock()
			if reached {
				sess.Commit()
				h.once.Do(func() { close(h.done) })
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

// TestSarama produces with a sarama SyncProducer (RequiredAcks=WaitForAll)
// to a 3-partition topic, reads every partition back with a sarama Consumer,
// then with a sarama consumer group that commits its offsets.
func TestSarama(t *testing.T) {
	b := startBroker(t)
	const topic, group, n = "sarama", "sarama-group", 300
	b.createTopic(topic, 3)
	addrs := []string{b.Addr}

	prod, err := sarama.NewSyncProducer(addrs, saramaConfig())
	if err != nil {
		t.Fatalf("sarama.NewSyncProducer: %v", err)
	}
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{
			Topic: topic,
			Key:   sarama.StringEncoder(fmt.Sprintf("key-%d", i)),
			Value: sarama.StringEncoder(fmt.Sprintf("sarama-%d", i)),
		}
	}
	// One message first (a lone batch), then the rest together.
	if _, _, err := prod.SendMessage(msgs[0]); err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	if err := prod.SendMessages(msgs[1:]); err != nil {
		var pe sarama.ProducerErrors
		if errors.As(err, &pe) && len(pe) > 0 {
			t.Fatalf("SendMessages: %d failed, first: %v", len(pe), pe[0].Err)
		}
		t.Fatalf("SendMessages: %v", err)
	}
	if err := prod.Close(); err != nil {
		t.Fatalf("close producer: %v", err)
	}

	// What each partition must hold, in offset order.
	want := map[int32][]string{}
	byOffset := map[int32]map[int64]string{}
	for _, m := range msgs {
		if byOffset[m.Partition] == nil {
			byOffset[m.Partition] = map[int64]string{}
		}
		v, _ := m.Value.Encode()
		if prev, dup := byOffset[m.Partition][m.Offset]; dup {
			t.Fatalf("two messages acknowledged at partition %d offset %d: %q and %q", m.Partition, m.Offset, prev, v)
		}
		byOffset[m.Partition][m.Offset] = string(v)
	}
	for p, offs := range byOffset {
		keys := make([]int64, 0, len(offs))
		for o := range offs {
			keys = append(keys, o)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		for i, o := range keys {
			if o != int64(i) {
				t.Fatalf("partition %d: acknowledged offsets %v are not 0..%d", p, keys, len(keys)-1)
			}
			want[p] = append(want[p], offs[o])
		}
	}
	if len(want) < 2 {
		t.Fatalf("the hash partitioner put all %d keyed messages in %d partition(s); the topic should have 3", n, len(want))
	}

	t.Run("consumer", func(t *testing.T) {
		cons, err := sarama.NewConsumer(addrs, saramaConfig())
		if err != nil {
			t.Fatalf("sarama.NewConsumer: %v", err)
		}
		defer cons.Close()
		parts, err := cons.Partitions(topic)
		if err != nil || len(parts) != 3 {
			t.Fatalf("Partitions(%s) = %v, %v; want 3 partitions", topic, parts, err)
		}
		for _, p := range parts {
			pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
			if err != nil {
				t.Fatalf("ConsumePartition %d: %v", p, err)
			}
			var got []string
			timeout := time.After(30 * time.Second)
			for len(got) < len(want[p]) {
				select {
				case m := <-pc.Messages():
					if m.Offset != int64(len(got)) {
						t.Fatalf("partition %d: message at offset %d, want %d", p, m.Offset, len(got))
					}
					got = append(got, string(m.Value))
				case err := <-pc.Errors():
					t.Fatalf("partition %d: %v", p, err)
				case <-timeout:
					t.Fatalf("partition %d: consumed %d of %d messages in 30s", p, len(got), len(want[p]))
				}
			}
			pc.Close()
			requireSameValues(t, fmt.Sprintf("sarama consumer, partition %d", p), got, want[p])
		}
	})

	t.Run("consumer group", func(t *testing.T) {
		cg, err := sarama.NewConsumerGroup(addrs, group, saramaConfig())
		if err != nil {
			t.Fatalf("sarama.NewConsumerGroup: %v", err)
		}
		h := &saramaGroupHandler{want: n, got: map[int32][]string{}, done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		consumeErr := make(chan error, 1)
		go func() {
			var err error
			for ctx.Err() == nil {
				if err = cg.Consume(ctx, []string{topic}, h); err != nil {
					break
				}
			}
			consumeErr <- err
		}()
		select {
		case <-h.done:
		case err := <-consumeErr:
			cancel()
			t.Fatalf("sarama group Consume returned before reading everything: %v", err)
		case <-time.After(45 * time.Second):
			cancel()
			_ = cg.Close()
			h.mu.Lock()
			defer h.mu.Unlock()
			t.Fatalf("sarama consumer group read %d of %d messages in 45s", h.n, n)
		}
		cancel()
		if err := <-consumeErr; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("sarama group Consume: %v", err)
		}
		if err := cg.Close(); err != nil {
			t.Errorf("close consumer group: %v", err)
		}
		h.mu.Lock()
		for p := range want {
			requireSameValues(t, fmt.Sprintf("sarama group, partition %d", p), h.got[p], want[p])
		}
		h.mu.Unlock()

		committed, err := b.admin().FetchOffsets(ctxTimeout(t, 15*time.Second), group)
		if err != nil {
			t.Fatalf("OffsetFetch %s: %v", group, err)
		}
		for p := range want {
			o, ok := committed.Lookup(topic, p)
			if !ok || o.Err != nil || o.At != int64(len(want[p])) {
				t.Errorf("group %s partition %d: committed %+v (found %v), want offset %d", group, p, o, ok, len(want[p]))
			}
		}
	})
	b.requireAlive()
}
