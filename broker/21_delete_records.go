package broker

// DeleteRecords (key 21), v0-v2.
//
// Moves a partition's log start offset forward, as Kafka's
// kafka-delete-records.sh and AdminClient.deleteRecords do: records below
// the new log start offset are no longer served (a Fetch below it gets
// OFFSET_OUT_OF_RANGE, ListOffsets earliest answers it), and their bytes go
// when retention deletes their WAL segment. Offset -1 means the high
// watermark (everything committed). Only the leader takes the request;
// the new log start offsets are one WAL entry, so every replica moves its
// own the same way, and the answer (each partition's new low watermark)
// comes once that entry is committed, or REQUEST_TIMED_OUT after the
// request's timeout.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/wal"
)

func init() { register(kmsg.DeleteRecords.Int16(), 0, 2, handleDeleteRecords) }

// deleteRecordsEntry is the WAL entry of one DeleteRecords request: the
// partitions whose log start offset moves, each to Offset.
type deleteRecordsEntry struct {
	Partitions []deleteRecordsPartition `json:"partitions"`
}

type deleteRecordsPartition struct {
	Topic     string   `json:"t"`
	TopicID   [16]byte `json:"id"` // the topic the offset was checked on; a topic created again under the name is left alone
	Partition int32    `json:"p"`
	Offset    int64    `json:"o"`
}

func handleDeleteRecords(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DeleteRecordsRequest)
	resp := r.ResponseKind().(*kmsg.DeleteRecordsResponse)
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(r.TimeoutMillis)
		defer cancel()
		// moving locates, in resp, each partition that entry moves.
		type slot struct{ ti, pi int }
		var entry deleteRecordsEntry
		var moving []slot
		leader := b.isLeader()
		for _, rt := range r.Topics {
			st := kmsg.NewDeleteRecordsResponseTopic()
			st.Topic = rt.Topic
			snap, known := b.topicSnap(rt.Topic)
			mayDelete := b.allowedTopic(rc, kmsg.ACLOperationDelete, rt.Topic)
			for _, rp := range rt.Partitions {
				sp := kmsg.NewDeleteRecordsResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.LowWatermark = -1
				var p *partition
				if known && rp.Partition >= 0 && int(rp.Partition) < len(snap.partitions) {
					p = snap.partitions[rp.Partition]
				}
				switch {
				case !mayDelete:
					sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				case p == nil:
					sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				case !leader:
					sp.ErrorCode = kerr.NotLeaderForPartition.Code
				default:
					logStart, hw, _ := p.watermarks()
					off := rp.Offset
					if off == -1 {
						off = hw
					}
					switch {
					case off < 0 || off > hw:
						// As Kafka: records not committed yet cannot be
						// deleted.
						sp.ErrorCode = kerr.OffsetOutOfRange.Code
					case off <= logStart:
						sp.LowWatermark = logStart // nothing to delete
					default:
						entry.Partitions = append(entry.Partitions, deleteRecordsPartition{
							Topic: rt.Topic, TopicID: snap.id, Partition: rp.Partition, Offset: off,
						})
						moving = append(moving, slot{len(resp.Topics), len(st.Partitions)})
					}
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		if len(entry.Partitions) == 0 {
			return resp
		}
		err := b.deleteRecords(ctx, entry)
		for i, s := range moving {
			sp := &resp.Topics[s.ti].Partitions[s.pi]
			if err != nil {
				sp.ErrorCode = kerr.RequestTimedOut.Code
				continue
			}
			dp := entry.Partitions[i]
			snap, ok := b.topicSnap(dp.Topic)
			if !ok || snap.id != dp.TopicID { // deleted meanwhile
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			sp.LowWatermark, _, _ = snap.partitions[dp.Partition].watermarks()
		}
		return resp
	}
}

// deleteRecords writes the entry and waits until it is committed.
func (b *Broker) deleteRecords(ctx context.Context, e deleteRecordsEntry) error {
	if err := b.appendMeta(ctx, wal.TypeDeleteRecords, e); err != nil {
		b.log.Warn("deleting records failed", "partitions", len(e.Partitions), "error", err)
		return err
	}
	for _, p := range e.Partitions {
		b.log.Info("records deleted", "topic", p.Topic, "partition", p.Partition, "log_start", p.Offset)
	}
	return nil
}

// applyDeleteRecordsLocked moves log start offsets as an entry says (every
// node, and every replay). Caller holds appendMu.
func (b *Broker) applyDeleteRecordsLocked(e wal.Entry) error {
	var d deleteRecordsEntry
	if err := decodeJSON(e, &d); err != nil {
		return err
	}
	for _, dp := range d.Partitions {
		b.mu.RLock()
		t := b.topics[dp.Topic]
		var p *partition
		if t != nil && t.id == dp.TopicID && dp.Partition >= 0 && int(dp.Partition) < len(t.partitions) {
			p = t.partitions[dp.Partition]
		}
		b.mu.RUnlock()
		if p == nil {
			continue // the topic was deleted (and perhaps created again) since
		}
		if dp.Offset < 0 {
			return fmt.Errorf("%w: lsn %d: DeleteRecords to offset %d", ErrBadEntry, e.LSN, dp.Offset)
		}
		p.mu.Lock()
		p.advanceLogStartLocked(dp.Offset)
		p.mu.Unlock()
	}
	return nil
}
