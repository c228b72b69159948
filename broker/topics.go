package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tandem-io/tandem/broker/group"
	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/wal"
)

// Topic configs this broker knows, with the Kafka name and its default.
// Values set on a topic are kept verbatim and shown by DescribeConfigs.
func (b *Broker) configDefaults() map[string]string {
	return map[string]string{
		"cleanup.policy":         "delete",
		"min.insync.replicas":    strconv.Itoa(int(b.cfg.MinInsyncReplicas)),
		"retention.ms":           strconv.FormatInt(b.cfg.RetentionMs, 10),
		"retention.bytes":        strconv.FormatInt(b.cfg.RetentionBytes, 10),
		"segment.bytes":          strconv.FormatInt(b.cfg.SegmentBytes, 10),
		"max.message.bytes":      strconv.Itoa(int(b.cfg.MaxMessageBytes)),
		"message.timestamp.type": "CreateTime",
		// KIP-937 bounds on CreateTime timestamps (timestamps.go).
		"message.timestamp.before.max.ms": strconv.FormatInt(math.MaxInt64, 10),
		"message.timestamp.after.max.ms":  strconv.FormatInt(math.MaxInt64, 10),
		// Kafka's older single bound (KIP-937 deprecated it): both of the
		// above when they are not set.
		"message.timestamp.difference.max.ms": strconv.FormatInt(math.MaxInt64, 10),
		"compression.type":                    "producer",
		"delete.retention.ms":                 strconv.Itoa(defaultDeleteRetentionMs),
		"min.compaction.lag.ms":               "0",
		// Accepted and reported with no effect (validateTopicConfig).
		"segment.ms": "604800000",
		// When the leader cleans a compacted partition (compact.go).
		"max.compaction.lag.ms":     strconv.FormatInt(math.MaxInt64, 10),
		"min.cleanable.dirty.ratio": "0.5",
	}
}

// maxPartitions bounds a topic's partition count, in CreateTopics,
// CreatePartitions and when a WAL entry is applied: every partition is an
// in-memory object on every node, so an absurd count is an out-of-memory
// crash on the leader and on every follower that applies the entry.
const maxPartitions = 100000

// validateTopicConfig reports a config that cannot be set on a topic.
func (b *Broker) validateTopicConfig(name, value string) *kerr.Error {
	if _, ok := b.configDefaults()[name]; !ok {
		return kerr.InvalidConfig
	}
	switch name {
	case "segment.bytes":
		// Kafka's per-partition segment size. Tandem's segments are
		// node-wide (--segment-bytes), so a topic's value has no effect;
		// it is accepted and reported, because Kafka Streams sets it on
		// every repartition topic it creates and fails if it is refused.
		// The same for segment.ms. (min.cleanable.dirty.ratio and
		// max.compaction.lag.ms below decide when the leader cleans a
		// compacted partition: compact.go.)
		if v, err := strconv.ParseInt(value, 10, 32); err != nil || v < 14 {
			return kerr.InvalidConfig
		}
	case "segment.ms", "max.compaction.lag.ms":
		if v, err := strconv.ParseInt(value, 10, 64); err != nil || v < 1 {
			return kerr.InvalidConfig
		}
	case "min.cleanable.dirty.ratio":
		if v, err := strconv.ParseFloat(value, 64); err != nil || v < 0 || v > 1 {
			return kerr.InvalidConfig
		}
	case "compression.type":
		if value != "producer" {
			return kerr.InvalidConfig // batches are stored as the producer compressed them
		}
	case "min.insync.replicas":
		if v, err := strconv.Atoi(value); err != nil || v < 1 {
			return kerr.InvalidConfig
		}
	case "retention.ms", "retention.bytes":
		if _, err := strconv.ParseInt(value, 10, 64); err != nil {
			return kerr.InvalidConfig
		}
	case "max.message.bytes":
		// A Kafka INT, at least 0.
		if v, err := strconv.ParseInt(value, 10, 32); err != nil || v < 0 {
			return kerr.InvalidConfig
		}
	case "cleanup.policy":
		if !validCleanupPolicy(value) {
			return kerr.InvalidConfig
		}
	case "delete.retention.ms", "min.compaction.lag.ms":
		if !parseMs(value) {
			return kerr.InvalidConfig
		}
	case "message.timestamp.type":
		if value != "CreateTime" && value != "LogAppendTime" {
			return kerr.InvalidConfig
		}
	case "message.timestamp.before.max.ms", "message.timestamp.after.max.ms", "message.timestamp.difference.max.ms":
		if !parseMs(value) {
			return kerr.InvalidConfig
		}
	}
	return nil
}

// topicInt returns a topic's integer config override, or def.
func (b *Broker) topicInt(topicName, key string, def int64) int64 {
	if n, err := strconv.ParseInt(b.topicConfig(topicName, key), 10, 64); err == nil {
		return n
	}
	return def
}

// topicConfig returns a topic's config override ("" when not set).
func (b *Broker) topicConfig(topicName, key string) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if t := b.topics[topicName]; t != nil {
		return t.configs[key]
	}
	return ""
}

// maxMessageBytes is the effective max.message.bytes of a topic. A value
// out of range, which older versions accepted, counts as unset.
func (b *Broker) maxMessageBytes(topicName string) int32 {
	v := b.topicInt(topicName, "max.message.bytes", int64(b.cfg.MaxMessageBytes))
	if v < 0 || v > math.MaxInt32 {
		return b.cfg.MaxMessageBytes
	}
	return int32(v)
}

// minISR is the effective min.insync.replicas of a topic.
func (b *Broker) minISR(topicName string) int {
	b.mu.RLock()
	t := b.topics[topicName]
	var v string
	if t != nil {
		v = t.configs["min.insync.replicas"]
	}
	b.mu.RUnlock()
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return n
	}
	return int(b.cfg.MinInsyncReplicas)
}

// validTopicName applies Kafka's rules: 1-249 of [a-zA-Z0-9._-], not "." or "..".
func validTopicName(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// isLeader says whether this node takes writes.
func (b *Broker) isLeader() bool {
	return takesWrites(b.clusterView())
}

// takesWrites reports whether a node with view v appends entries of its
// own (a leader, or a broker with no sidecar).
func takesWrites(v link.ClusterView) bool {
	return v.Role == link.RoleStandalone || v.Role == link.RoleLeader
}

// appendsAllowed reports whether the broker appends entries of its own
// under view v: it leads (or runs without a sidecar), its sidecar is not
// handing the leadership over (SetClusterView applies that view under
// appendMu), it is not stopping (handOver sets stopping under appendMu),
// and the link's fence is not due (SetWritesUntil). Caller holds appendMu.
func (b *Broker) appendsAllowed(v link.ClusterView) bool {
	return takesWrites(v) && !v.HandingOver && !b.stopping.Load() && !b.writesLapsed()
}

// SetWritesUntil bounds the time this broker takes writes of its own under
// its current leader view: the moment the link's fence is due, which every
// heartbeat from the sidecar moves on (link.WritesBounder). The zero time
// lifts the bound. The fence itself makes the broker a follower; the
// bound covers the moments before the fence's timer runs, as after the
// whole pair was frozen and resumed (since 2026-12-07; the soak caught
// such a broker taking writes for 48 ms while another node led).
func (b *Broker) SetWritesUntil(t time.Time) {
	if t.IsZero() {
		b.writesUntil.Store(nil)
		return
	}
	b.writesUntil.Store(&t)
}

// writesLapsed reports whether the bound of SetWritesUntil has passed.
func (b *Broker) writesLapsed() bool {
	d := b.writesUntil.Load()
	return d != nil && !time.Now().Before(*d)
}

func (b *Broker) clusterView() link.ClusterView {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.view
}

// appendLocked appends one entry as leader and applies it, in the epoch of
// the current view. A node that no longer leads, or is stopping (handOver),
// gets ErrNotLeader: the view changes away from leading under appendMu
// (SetClusterView), so nothing is appended after a sidecar has fenced the
// broker. Caller holds appendMu.
func (b *Broker) appendLocked(typ wal.EntryType, payload []byte) (uint64, error) {
	view := b.clusterView()
	if !b.appendsAllowed(view) {
		return 0, ErrNotLeader
	}
	epoch := view.Epoch
	pos, err := b.wal.Append(epoch, typ, payload)
	if err != nil {
		return 0, err
	}
	e := wal.Entry{LSN: pos.LSN, Epoch: epoch, Type: typ, Payload: payload}
	if err := b.applyLocked(e, pos); err != nil {
		return 0, err
	}
	return pos.LSN, nil
}

// appendBatchLocked appends a record-batch entry without copying the
// batch: the entry header and the batch bytes (still in the request
// buffer) go to the WAL in one vectored write. raw's own CRC-32C (of its
// bytes from batchCRCStart on, which stampBatch leaves alone) must have
// been verified (splitBatches): the WAL reuses it for the entry's CRC
// instead of reading the batch again. Caller holds appendMu.
func (b *Broker) appendBatchLocked(topic string, part int32, raw []byte) (uint64, error) {
	view := b.clusterView()
	if !b.appendsAllowed(view) {
		return 0, ErrNotLeader
	}
	epoch := view.Epoch
	prefix := batchEntryPrefix(topic, part, batchHeaderLen+controlRecordLen)
	pos, err := b.wal.AppendPartsTail(epoch, wal.TypeRecordBatch,
		len(raw)-batchCRCStart, binary.BigEndian.Uint32(raw[batchCRCStart-4:batchCRCStart]), prefix, raw)
	if err != nil {
		return 0, err
	}
	// Indexing needs only the RecordBatch header (as at start-up replay),
	// and a transaction marker's type from its record (txn.go).
	head := append(prefix, raw[:min(len(raw), batchHeaderLen+controlRecordLen)]...)
	e := wal.Entry{LSN: pos.LSN, Epoch: epoch, Type: wal.TypeRecordBatch, Payload: head}
	if err := b.applyPrefixLocked(e, pos, len(prefix)+len(raw)); err != nil {
		return 0, err
	}
	return pos.LSN, nil
}

// appendMeta appends a metadata entry and waits until it is committed.
func (b *Broker) appendMeta(ctx context.Context, typ wal.EntryType, v any) error {
	gen := b.commitGeneration()
	b.appendMu.Lock()
	lsn, err := b.appendLocked(typ, encodeJSON(v))
	b.appendMu.Unlock()
	if err != nil {
		return err
	}
	if err := b.wal.WaitDurable(ctx, lsn); err != nil {
		return err
	}
	return b.waitCommit(ctx, lsn, gen)
}

// createTopic creates a topic through the WAL. It returns a Kafka error code
// for the caller's response, and a Go error with details for the log.
func (b *Broker) createTopic(ctx context.Context, name string, partitions int32, configs map[string]string, validateOnly bool) (*kerr.Error, string) {
	if !validTopicName(name) {
		return kerr.InvalidTopicException, fmt.Sprintf("topic name %q is not valid", name)
	}
	if !b.isLeader() {
		return kerr.NotController, "this node is not the leader; create topics on the leader"
	}
	if partitions == -1 {
		partitions = b.cfg.NumPartitions
	}
	if partitions < 1 || partitions > maxPartitions {
		return kerr.InvalidPartitions, fmt.Sprintf("%d partitions (at most %d)", partitions, maxPartitions)
	}
	for k, v := range configs {
		if e := b.validateTopicConfig(k, v); e != nil {
			return e, fmt.Sprintf("config %s=%s is not supported", k, v)
		}
	}
	gen := b.commitGeneration() // before appending: see waitCommit
	b.appendMu.Lock()
	if b.partition(name, 0) != nil {
		b.appendMu.Unlock()
		return kerr.TopicAlreadyExists, fmt.Sprintf("topic %q already exists", name)
	}
	if validateOnly {
		b.appendMu.Unlock()
		return nil, ""
	}
	lsn, err := b.appendLocked(wal.TypeCreateTopic, encodeJSON(createTopicEntry{
		Name: name, ID: newTopicID(), Partitions: partitions, Configs: configs,
	}))
	b.appendMu.Unlock()
	if err != nil {
		b.log.Error("creating topic failed", "topic", name, "error", err)
		return kerr.KafkaStorageError, err.Error()
	}
	b.log.Info("topic created", "topic", name, "partitions", partitions, "lsn", lsn)
	if err := b.wal.WaitDurable(ctx, lsn); err != nil {
		return kerr.RequestTimedOut, err.Error()
	}
	if err := b.waitCommit(ctx, lsn, gen); err != nil {
		return kerr.RequestTimedOut, err.Error()
	}
	return nil, ""
}

// topicSnapshot is a consistent copy of a topic for read-only requests.
type topicSnapshot struct {
	name       string
	id         [16]byte
	partitions []*partition
	configs    map[string]string
}

func (b *Broker) topicSnap(name string) (topicSnapshot, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[name]
	if t == nil {
		return topicSnapshot{}, false
	}
	return topicSnapshot{name: t.name, id: t.id, partitions: append([]*partition(nil), t.partitions...), configs: t.configs}, true
}

// topicInfos lists every topic for the consumer groups' assignors.
func (b *Broker) topicInfos() []group.TopicInfo {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]group.TopicInfo, 0, len(b.topics))
	for _, t := range b.topics {
		out = append(out, group.TopicInfo{Name: t.name, ID: t.id, Partitions: int32(len(t.partitions))})
	}
	return out
}

func (b *Broker) topicNames() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	names := make([]string, 0, len(b.topics))
	for n := range b.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (b *Broker) topicByID(id [16]byte) (string, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for n, t := range b.topics {
		if t.id == id {
			return n, true
		}
	}
	return "", false
}

func (b *Broker) topicSnapCreated(name string) (uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if t := b.topics[name]; t != nil {
		return t.createdLSN, true
	}
	return 0, false
}
