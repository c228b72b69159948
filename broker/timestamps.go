package broker

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Record timestamps, as Kafka's topic configs set them.
//
// message.timestamp.type=CreateTime (the default) keeps the timestamp each
// producer gave its records. message.timestamp.before.max.ms and
// message.timestamp.after.max.ms (KIP-937; default: no bound; each
// defaults to the older message.timestamp.difference.max.ms, which
// KIP-937 deprecated, when that is set) then refuse,
// with INVALID_TIMESTAMP, a batch with a record whose timestamp is further
// in the past or the future than they allow: a producer with a wrong
// clock cannot make retention.ms delete a topic's records at once, or
// keep them for ever.
//
// message.timestamp.type=LogAppendTime stamps every batch with the time
// the leader appends it, as Kafka does: the batch's timestamp type
// attribute is set and its max timestamp becomes the append time, which
// consumers then give every record of the batch; the batch CRC is
// computed again. The produce answer carries that time. Retention.ms,
// ListOffsets by timestamp and compaction's lag then judge records by when
// the cluster received them, whatever the producers' clocks say. The
// bounds above do not apply, as in Kafka.

// timestampRules is a topic's timestamp configs, read once per produced
// partition.
type timestampRules struct {
	logAppendTime bool
	beforeMaxMs   int64 // math.MaxInt64: no bound
	afterMaxMs    int64
}

func (r timestampRules) bounded() bool {
	return r.beforeMaxMs != math.MaxInt64 || r.afterMaxMs != math.MaxInt64
}

// timestampRulesOf reads a topic's timestamp configs. It does not allocate:
// it runs for every produced partition.
func (b *Broker) timestampRulesOf(topicName string) timestampRules {
	r := timestampRules{beforeMaxMs: math.MaxInt64, afterMaxMs: math.MaxInt64}
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[topicName]
	if t == nil {
		return r
	}
	r.logAppendTime = t.configs["message.timestamp.type"] == "LogAppendTime"
	diff := configMs(t.configs, "message.timestamp.difference.max.ms", math.MaxInt64)
	r.beforeMaxMs = configMs(t.configs, "message.timestamp.before.max.ms", diff)
	r.afterMaxMs = configMs(t.configs, "message.timestamp.after.max.ms", diff)
	return r
}

// configMs reads a non-negative millisecond config, or def when it is not
// set (or, set by an older version, not valid).
func configMs(configs map[string]string, key string, def int64) int64 {
	if v, ok := configs[key]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return n
		}
	}
	return def
}

// applyTimestampRules stamps a partition's validated batches with the
// append time nowMs (LogAppendTime), or checks every record's timestamp
// against the bounds (CreateTime). limit caps a compressed batch's
// decompressed size. It returns the LogAppendTime to answer (-1 for
// CreateTime).
func applyTimestampRules(r timestampRules, raws [][]byte, infos []batchInfo, nowMs, limit int64) (int64, error) {
	if r.logAppendTime {
		for i, raw := range raws {
			setLogAppendTime(raw, nowMs)
			infos[i].attributes |= 0x08
			infos[i].maxTimestamp = nowMs
		}
		return nowMs, nil
	}
	if !r.bounded() {
		return -1, nil
	}
	lo, hi := nowMs-r.beforeMaxMs, int64(math.MaxInt64) // nowMs >= 0: no overflow
	if r.afterMaxMs < math.MaxInt64-nowMs {
		hi = nowMs + r.afterMaxMs
	}
	for i, raw := range raws {
		info := infos[i]
		var bad int64
		found := false
		err := eachRecord(raw, info, max(limit, int64(len(raw))*maxDecompressedRatio), func(rec record) {
			ts := info.firstTimestamp + rec.timestampDelta
			if !found && ts != -1 && (ts < lo || ts > hi) {
				bad, found = ts, true
			}
		})
		if err != nil {
			return -1, &errBatch{code: kerr.CorruptMessage, msg: err.Error(), cause: err}
		}
		if found {
			return -1, &errBatch{code: kerr.InvalidTimestamp, msg: fmt.Sprintf(
				"record timestamp %d is outside [%d, %d] (message.timestamp.before.max.ms %d, message.timestamp.after.max.ms %d)",
				bad, lo, hi, r.beforeMaxMs, r.afterMaxMs)}
		}
	}
	return -1, nil
}

// setLogAppendTime marks a batch as LogAppendTime with append time ms and
// computes its CRC-32C again (both fields are inside it).
func setLogAppendTime(raw []byte, ms int64) {
	binary.BigEndian.PutUint16(raw[21:23], binary.BigEndian.Uint16(raw[21:23])|0x08)
	binary.BigEndian.PutUint64(raw[35:43], uint64(ms))
	binary.BigEndian.PutUint32(raw[batchCRCStart-4:batchCRCStart], crc32.Checksum(raw[batchCRCStart:], castagnoli))
}
