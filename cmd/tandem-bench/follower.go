package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// followerReader reads one partition from one specific node, whatever
// Metadata says about leadership: it sends raw Fetch requests to the node it
// was bootstrapped on. A Tandem node serves Fetch up to its own high
// watermark, followers included, so what a follower returns is what it has
// applied and been told is committed.
//
// Only batch headers are decoded (first offset and last offset delta):
// visibility is all `lag` and `catchup` need, and it keeps the reader cheap.
type followerReader struct {
	cl        *kgo.Client
	node      *kgo.Broker
	topic     string
	partition int32
	offset    int64         // next offset to fetch
	maxWait   time.Duration // long-poll bound of each Fetch
	maxBytes  int32
}

func newFollowerReader(addr, topic string, partition int32, from int64, maxWait time.Duration, log hclog.Logger) (*followerReader, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.WithLogger(kgoLogger{log.Named("kgo-follower")}))
	if err != nil {
		return nil, fmt.Errorf("bench: follower client: %w", err)
	}
	seeds := cl.SeedBrokers()
	if len(seeds) != 1 {
		cl.Close()
		return nil, fmt.Errorf("%w: one follower address expected, got %q", errUsage, addr)
	}
	return &followerReader{cl: cl, node: seeds[0], topic: topic, partition: partition, offset: from, maxWait: maxWait, maxBytes: 8 << 20}, nil
}

func (f *followerReader) Close() { f.cl.Close() }

// batchSpan is the offsets [first, last] of one RecordBatch and the first
// record's value (the stamp, when the producer wrote one).
type batchSpan struct {
	first, last int64
}

// errFollowerBehind is returned (wrapped) for answers that mean "not there
// yet" (offset above the node's high watermark, topic not yet replicated,
// node still starting): callers retry.
var errFollowerBehind = errors.New("bench: follower not there yet")

// fetch sends one Fetch from f.offset and returns the batches it got, moving
// f.offset past them.
func (f *followerReader) fetch(ctx context.Context) ([]batchSpan, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(f.maxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = f.maxBytes
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = f.topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = f.partition
	rp.FetchOffset = f.offset
	rp.CurrentLeaderEpoch = -1
	rp.LogStartOffset = -1
	rp.PartitionMaxBytes = f.maxBytes
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)

	rctx, cancel := context.WithTimeout(ctx, f.maxWait+10*time.Second)
	defer cancel()
	kresp, err := f.node.Request(rctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch: %w", errFollowerBehind, err)
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, fmt.Errorf("bench: fetch from follower: %w", err)
	}
	var spans []batchSpan
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.Partition != f.partition {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				if errors.Is(err, kerr.OffsetOutOfRange) || errors.Is(err, kerr.UnknownTopicOrPartition) ||
					errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.LeaderNotAvailable) {
					return nil, fmt.Errorf("%w: %s[%d] at %d: %w", errFollowerBehind, f.topic, f.partition, f.offset, err)
				}
				return nil, fmt.Errorf("bench: fetch %s[%d] at %d from follower: %w", f.topic, f.partition, f.offset, err)
			}
			spans = append(spans, splitBatches(p.RecordBatches)...)
		}
	}
	for _, s := range spans {
		if s.last >= f.offset {
			f.offset = s.last + 1
		}
	}
	return spans, nil
}

// splitBatches walks concatenated RecordBatches (as Fetch returns them) and
// returns each batch's offset span. A truncated batch at the end (a Fetch
// cut at MaxBytes) is ignored, as clients do.
func splitBatches(raw []byte) []batchSpan {
	var out []batchSpan
	for len(raw) >= 12 {
		length := int(int32(binary.BigEndian.Uint32(raw[8:12])))
		total := 12 + length
		if length <= 0 || total > len(raw) {
			break
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw[:total]); err == nil {
			out = append(out, batchSpan{first: b.FirstOffset, last: b.FirstOffset + int64(b.LastOffsetDelta)})
		}
		raw = raw[total:]
	}
	return out
}
