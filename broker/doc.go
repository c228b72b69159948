// Package broker is the Kafka-compatible half of a Tandem node.
//
// It speaks the Kafka wire protocol on TCP (every request and response is
// decoded and encoded with franz-go's kmsg), and it keeps everything it knows
// in one node-wide write-ahead log (package broker/wal): record batches of
// every topic-partition, topic creation and deletion, partition additions,
// topic configs, committed consumer-group offsets and producer-id
// allocations. In-memory state (topics, the per-partition offset index,
// idempotent-producer sequences, group offsets) is derived from the WAL: it
// is rebuilt by replaying the log at start-up, and a follower builds it by
// applying the leader's entries unchanged.
//
// One Kafka API lives in one file named after its key (00_produce.go,
// 01_fetch.go, ...). Each file registers its handler and the version range it
// supports with the registry in registry.go; ApiVersions answers from that
// registry, so the advertised versions can never drift from the handlers.
//
// Offsets and high watermark. A partition's log end offset advances when its
// batch is appended to the WAL. Its high watermark follows the node's commit
// point: for a standalone broker that is the WAL's durable LSN (fsynced under
// the configured policy); with a sidecar it is the replication commit point
// (the highest LSN acknowledged by every in-sync replica). Consumers only see
// records below the high watermark, and acks=-1 produces are answered when
// the high watermark passes their batch.
// A node elected leader holds earlier leaders' entries that it can call
// committed only once its followers have acked its term's first entry;
// until then ListOffsets answers "latest" with OFFSET_NOT_AVAILABLE
// (KIP-207, 02_list_offsets.go), so that end offsets never go back.
//
// Lock order: Broker.appendMu (serialises every WAL append and the state
// changes it implies) before Broker.mu (topics map, cluster view) before
// partition.mu. Broker.commitMu (the queue of batches waiting for the commit
// point) is taken alone or after partition.mu is released. Broker.rebuildMu
// (the channel a state rebuild closes, readWhole) is taken alone.
package broker
