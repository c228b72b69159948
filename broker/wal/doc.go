// Package wal is the broker's node-wide write-ahead log: one append-only,
// segmented log of every change the broker makes (record batches of every
// topic-partition, topic creation and deletion, offset commits, producer
// ids ...), addressed by LSN. It is what replication ships to followers, so
// its bytes are identical on every replica.
//
// # Entries and LSNs
//
// An entry is (LSN, epoch, type, payload). LSNs start at 1 and grow by
// exactly one per entry; 0 means "none". The epoch is the leadership term
// that wrote the entry. The type says what the payload is (the broker
// interprets payloads; the WAL never does).
//
// # Directory layout
//
//	<dir>/00000000000000000001.wal   segment files, named by their first LSN
//	<dir>/00000000000000052311.wal   (%020d.wal, so names sort in LSN order)
//	<dir>/epochs                      epoch history (text)
//	<dir>/LOCK                        flock(2) held by the process that has the log open
//
// Files ending in .tmp are leftovers of an interrupted atomic write and are
// deleted at Open. Other files are ignored.
//
// # Frame format
//
// A segment is a sequence of frames with no file header and no padding:
//
//	offset  size  field
//	0       4     length  u32, bytes after the crc field = 13 + len(payload)
//	4       4     crc     u32, CRC-32C (Castagnoli) of bytes 8 .. 8+length
//	8       8     lsn     u64
//	16      4     epoch   u32
//	20      1     type    u8 (1 RecordBatch, 2 CreateTopic, 3 DeleteTopic,
//	                      4 OffsetCommit, 5 ProducerID, 6 CreatePartitions,
//	                      7 AlterConfig, 8 Noop, 9 StateSnapshot,
//	                      10 GroupState, 11 DeleteRecords, 12 ACL,
//	                      13 ClientQuota, 14 ScramCredential,
//	                      15 Transaction, 16 CompactedBatch; see EntryType)
//	21      n     payload
//
// All integers are big endian. A frame is 21+n bytes. A payload is at most
// Options.MaxEntryBytes (default 64 MiB) when written; frames up to 1 GiB are
// accepted when read, so lowering the option never invalidates old entries.
// Each append writes its whole frame with a single pwritev(2) and no user-space
// buffer, so a process crash can leave at most one partial frame, at the
// end of the active segment. A power failure can also leave holes in the
// data that no fsync covered yet (see Recovery).
//
// The first frame of segment N has LSN N and each next frame's LSN is one
// more. The log rolls to a new segment when the next frame would make the
// active one larger than Options.SegmentBytes (default 64 MiB; a single
// bigger entry gets a segment to itself). Rolling fsyncs the old segment,
// creates the new file and fsyncs the directory; so every sealed (non-last)
// segment is complete and durable. If that directory fsync fails, the new
// file is removed again and the append fails; the next one retries the
// roll. A segment may be empty (0 bytes): the
// active one right after a roll or Reset, whose name then says which LSN
// comes next.
//
// The active segment may end in zero bytes after its last frame: space
// written ahead of time (Options.PreallocateBytes, default 1 MiB, at most
// every 50 ms) and made durable with its own fsync, so that the fsync of a
// small append only flushes data, not the file system's metadata (on ext4
// it then skips the journal commit: about 180 instead of 300 microseconds
// at the median on the test machine, 330-460 instead of 500-1000 at p99).
// Sealing a segment and a clean Close cut the zeros off; after a crash,
// recovery does (below). Frames are written with one pwritev(2) each, and
// the writeback of new data is started early (sync_file_range, every 256
// KiB) so that a group commit's fsync mostly waits for writes already in
// flight.
//
// Only the newest Options.PageCacheBytes (default 256 MiB) of WAL data stay
// in the operating system's page cache on purpose: after each group-commit
// fsync, older data, which is then clean, is released with
// posix_fadvise(POSIX_FADV_DONTNEED) in 2 MiB-aligned chunks (the largest
// page-cache folio, which the kernel only frees whole), and a ReadAt of
// such old data releases what it read once it has passed a chunk's end.
// The next appends then reuse the memory just freed. Without this, a page
// cache that grows by every byte appended makes the kernel allocate fresh
// memory for each write; on a VM whose host backs guest memory lazily that
// was about three quarters of the broker's CPU at full speed (three 8 s
// produce acks=-1 runs in a row on the test machine, one client: 193-217
// MB/s keeping everything, 726-739 MB/s with the 256 MiB window). Reads
// within the window come from memory; older reads go to the disk.
//
// # Epoch history file
//
// The file "epochs" lists the first LSN of every epoch, oldest first:
//
//	tandem-wal-epochs v1
//	<epoch> <start_lsn>
//	...
//	crc32c <8 hex digits, CRC-32C of every byte before this line>
//
// Epochs strictly increase and start LSNs never decrease. The file is
// replaced atomically (write epochs.tmp, fsync, rename, fsync directory)
// whenever it changes: an entry with a higher epoch than the last recorded
// one is appended (the start is recorded before the entry is written), or
// SetEpoch is called, or Truncate/Reset drop starts. An entry with a lower
// epoch is refused with ErrStaleEpoch. At Open the history is reconciled
// with the entries: starts before the first segment are kept, the entries'
// own epoch changes are the truth for the LSNs they cover, and starts
// beyond the last entry are dropped (a leader that called SetEpoch and
// crashed before writing starts its epoch again). A history file that does
// not parse or fails its CRC stops Open with ErrCorrupt; deleting it makes
// Open rebuild it from the entries (losing only starts older than the
// first segment).
//
// # Recovery at Open
//
// Open scans every segment and verifies every frame's length, CRC, LSN
// continuity (inside a segment and from one segment to the next) and that
// epochs never go down. It builds a sparse in-memory index (one LSN ->
// offset point every 64 KiB) per segment, so readers seek without scanning
// whole segments; segment contents are never held in memory. Start-up time
// therefore grows with the retained WAL: all of it is read once (about
// 1.1-1.4 GB/s from the test machine's disk; scanning on two goroutines
// was tried and gained under a tenth, the disk being the limit). Each
// scanned sealed segment behind the page-cache window is released again.
// Options.OnRecover receives every verified entry during this scan, so a
// caller that rebuilds state from the whole log (the broker) needs no
// second pass; entries of a torn tail are never passed to it.
//
//   - Zero bytes from the end of the last frame to the end of the last
//     segment are preallocated space: cut off, with an info line naming
//     the file, the offset and the byte count. No entry was ever there.
//   - A frame in the last segment that is short, has an invalid length or a
//     bad CRC, and is followed by nothing valid (zeros, garbage, end of
//     file) is a torn tail: an append cut short by a crash, never reported
//     durable. The file is truncated at that frame and a warning names the
//     file, the byte offset and the number of bytes dropped. Nothing valid
//     "follows" means: no later byte offset holds a frame with a correct CRC
//     and a plausible LSN (at least the expected one).
//   - A power failure can leave a hole: the device persists the sectors
//     written since the last completed fsync in any order, so the last
//     segment may hold [fsynced frames][the zeros that were there before]
//     [later frames that did land]. A bad frame followed by a valid one is
//     still a torn tail when it provably never reached the disk: its
//     length field reads 0 (no frame has length 0), and so does the rest
//     of the 512-byte sector that holds the field's last byte. An fsync
//     that returned would have left the frame there, and the WAL writes
//     zeros only after its last frame, so no completed fsync covered it
//     nor anything written after it: under every-batch none of it was
//     acknowledged. The file is cut there; a warning names the file, the
//     offset, the bytes dropped and the LSN of the valid entry found after
//     the hole. Like the torn-tail rule, this trusts the device to keep
//     what an fsync covered (a lost write read back as zeros would look
//     the same). A hole that starts inside a frame (its header landed, a
//     later sector did not) is not cut: it looks exactly like an fsynced
//     frame damaged in place with a power-failure hole after it. Telling
//     them apart would need a "synced through" mark made durable before
//     every acknowledgement, a second flush per group commit; a mark that
//     lags (Kafka's recovery point) would let recovery cut acknowledged
//     entries.
//   - Any other bad frame followed by a valid frame, any bad frame in a sealed
//     segment, an entry with the wrong LSN or a lower epoch than the entry
//     before it, and a gap or overlap between segments are corruption: Open
//     fails with an error wrapping ErrCorrupt that names the file and byte
//     offset. The WAL never silently drops data. The operator decides:
//     restore the file, or remove the damaged segment and those after it
//     and let the node re-replicate from the leader.
//
// The last segment is fsynced at Open, so everything found is durable.
//
// Every segment keeps one open file descriptor while the log is open (so
// reads need no open(2)); with 64 MiB segments a 1 TiB log holds about
// 16,000 descriptors, so size `ulimit -n` with retention in mind.
//
// # Fsync policies
//
// One syncer goroutine does the fsyncs (group commit): an fsync covers every
// entry written before it started, and every WaitDurable waiting on those
// entries is released together when it returns. DurableLSN is the highest
// LSN durable under the policy; Durable() is closed whenever it changes.
// Readers stop at DurableLSN, so replication never ships an entry that is
// not durable on the leader.
//
//   - every-batch (SyncEveryBatch, default): an entry is durable once an
//     fsync covering it returned (fdatasync(2) on Linux: data and file
//     size, not timestamps). An acknowledged entry survives process
//     crashes, kernel crashes and power loss. Cost: each commit waits for
//     one fsync (shared by every concurrent writer).
//   - interval (SyncInterval): the syncer fsyncs every Options.SyncInterval
//     (default 1s); an entry counts as durable as soon as it is written
//     (it is in the kernel page cache). Acknowledged entries survive a
//     process crash but the last interval of them can be lost on a kernel
//     crash or power failure (then recovery cuts the log back, and the
//     replicas' copies matter).
//   - none (SyncNone): no fsync except at segment roll and Close; durable as
//     soon as written. Same guarantee as interval but with an unbounded
//     window (the kernel's writeback, usually ~30s). For tests and
//     benchmarks, or when replication alone is trusted for durability.
//
// SyncedLSN reports what an fsync actually covered, whatever the policy.
//
// A failed fsync of a segment file, whoever ran it (the syncer, the
// preallocator, a roll, Truncate or Close), fails the log: it refuses every
// later write, and WaitDurable returns the error for every entry not yet
// durable (a failed fsync may have dropped dirty pages; only a restart and
// recovery can tell what is on disk). Linux reports a writeback error to
// one fsync per open file only, and a later fsync of the file returns 0
// although the lost pages never reached the disk (PostgreSQL's
// "fsyncgate"). So segment fsyncs never run concurrently (one mutex), and
// after the first failure every later one fails with its error without
// running: no entry is reported durable by an fsync that ran with or after
// a failed one. Only Reset, which deletes every segment file, clears the
// failure. An fsync of a file that Truncate, Reset or retention closed
// because they deleted its segment is not a failure (no fsync ran). Early
// writeback (sync_file_range without waiting) and page-cache release
// (posix_fadvise) do not consume a writeback error; the next fsync sees it.
//
// A write that fails (ENOSPC on a full file system, EIO) is not a failure
// of the log: the partial frame is cut off, the append returns the error,
// and the next append tries again. WriteState says whether appends are
// failing, since when, and why (a failed log counts as failing until it is
// reopened); its channel is closed when they start or stop failing, so the
// broker can tell its sidecar (a leader that cannot write hands over).
//
// # Truncation, reset, retention, checksums
//
// Truncate(after) drops entries > after (divergence repair after a
// failover): later segments are deleted newest first, then the segment
// holding after+1 is cut and fsynced, so a crash at any step leaves a valid,
// shorter log. Reset(next) deletes everything (a re-clone) and creates an
// empty segment named next. DeleteSegmentsBefore(lsn) deletes whole sealed
// segments whose last LSN is below lsn (retention), never the active one.
// Checksum(from, to) is FNV-1a 64 (offset basis 14695981039346656037, prime
// 1099511628211) fed, for each entry in LSN order, the 16 bytes
// be64(lsn) || be32(epoch) || be32(crc): equal logs have equal checksums.
// It reads every written entry of the range (durable or not), verifies each
// frame's CRC, and fails if any part of the range is not on disk.
//
// # Reading
//
// ReadAt(pos) reads one entry at a position returned by Append, AppendEntry
// or a Reader (the Fetch path); it sees any written entry. A Reader returns
// entries in LSN order up to DurableLSN and then io.EOF; it can be called
// again once more is durable. It seeks through the sparse index, follows
// segment rolls, and fails with ErrTruncated when Truncate/Reset removed
// entries it had already returned, or ErrCompacted when retention deleted
// the ones it was about to read; it never returns stale bytes.
//
// # Concurrency and lock order
//
// All methods are safe for concurrent use. There are three locks: Reader.mu
// (one reader's position and buffer), Log.mu (all log state) and
// Log.syncMu (held during every fsync of a segment file; it guards the
// sticky fsync error). The order is Reader.mu, then Log.mu, then
// Log.syncMu. Code under Log.mu never takes a Reader.mu (Truncate and Reset
// mark readers through fields that Log.mu guards). Rolls, Truncate, Reset
// and Close fsync holding Log.mu, so they take Log.syncMu inside it; the
// syncer and the preallocator fsync holding only Log.syncMu and take
// Log.mu after releasing it to report. Helpers named ...Locked expect
// Log.mu held. Appends hold Log.mu while writing; the group-commit fsync
// and reads run without it.
package wal
