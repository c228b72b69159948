package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// walSegments returns the WAL segment files of the broker, oldest first.
func (b *broker) walSegments() []string {
	b.t.Helper()
	segs, err := filepath.Glob(filepath.Join(b.DataDir, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		b.t.Fatalf("no WAL segments under %s/wal (err %v)", b.DataDir, err)
	}
	slices.Sort(segs)
	return segs
}

// readAll consumes every record of topic from the start up to the end
// offsets at the time of the call, and returns the values per partition.
func (b *broker) readAll(topic string) map[int32][]string {
	b.t.Helper()
	ends := b.endOffsets(topic)
	var total int64
	for _, e := range ends {
		total += e
	}
	out := map[int32][]string{}
	if total == 0 {
		return out
	}
	cl := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	for _, r := range consumeN(b.t, cl, int(total), 30*time.Second) {
		out[r.Partition] = append(out[r.Partition], string(r.Value))
	}
	return out
}

// stateSnapshot is what a user can observe of the broker's durable state.
type stateSnapshot struct {
	partitions map[string]int // topic -> partitions (-1: absent)
	retention  string         // retention.ms of st-configs
	ends       map[string]map[int32]int64
	records    map[string]map[int32][]string
	offsets    map[int32]int64 // st-group's committed offsets on st-configs
	clusterID  string
}

func snapshot(t *testing.T, b *broker) stateSnapshot {
	t.Helper()
	kcl := b.client()
	adm := kadm.NewClient(kcl)
	s := stateSnapshot{partitions: map[string]int{}, ends: map[string]map[int32]int64{},
		records: map[string]map[int32][]string{}, offsets: map[int32]int64{}}
	for _, topic := range []string{"st-configs", "st-grow", "st-gone"} {
		s.partitions[topic] = partitionCount(t, kcl, topic)
		if s.partitions[topic] > 0 {
			s.ends[topic] = b.endOffsets(topic)
			s.records[topic] = b.readAll(topic)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctxTimeout(t, 10*time.Second), "st-configs")
	if err != nil || len(rcs) != 1 {
		t.Fatalf("DescribeConfigs st-configs: %v %+v", err, rcs)
	}
	s.retention, _, _ = configValue(rcs[0], "retention.ms")
	md, err := adm.BrokerMetadata(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	s.clusterID = md.Cluster
	offs, err := adm.FetchOffsets(ctxTimeout(t, 10*time.Second), "st-group")
	if err != nil {
		t.Fatalf("OffsetFetch st-group: %v", err)
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "st-configs" && o.Err == nil {
			s.offsets[o.Partition] = o.At
		}
	})
	return s
}

func (s stateSnapshot) String() string {
	return fmt.Sprintf("partitions %v, retention.ms %q, end offsets %v, group offsets %v, cluster id %q", s.partitions, s.retention, s.ends, s.offsets, s.clusterID)
}

// TestRestartRestoresState changes every kind of state the broker keeps
// (topics with configs, added partitions, a deleted topic, records, group
// offsets, idempotent producer state), then restarts the broker, after a
// clean stop and after SIGKILL, and checks that a client sees the same state
// and can carry on.
func TestRestartRestoresState(t *testing.T) {
	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(how, func(t *testing.T) {
			b := startBroker(t)
			kcl := b.client()
			adm := kadm.NewClient(kcl)
			ctx := ctxTimeout(t, 60*time.Second)

			if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": strp("7200000")}, "st-configs"); err != nil {
				t.Fatalf("create st-configs: %v", err)
			}
			b.createTopic("st-grow", 1)
			if _, err := adm.UpdatePartitions(ctx, 4, "st-grow"); err != nil {
				t.Fatalf("grow st-grow to 4 partitions: %v", err)
			}
			b.createTopic("st-gone", 1)
			prod := b.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
			for p := range int32(4) {
				res := prod.ProduceSync(ctx, &kgo.Record{Topic: "st-grow", Partition: p, Value: fmt.Appendf(nil, "g%d", p)})
				if err := res.FirstErr(); err != nil {
					t.Fatalf("produce to st-grow[%d]: %v", p, err)
				}
			}
			produceSync(t, kcl, "st-gone", []string{"gone"})
			if resp, err := adm.DeleteTopics(ctx, "st-gone"); err != nil || resp.Error() != nil {
				t.Fatalf("delete st-gone: %v %v", err, resp.Error())
			}
			// An idempotent producer that lives across the restart.
			idem := b.client(kgo.RetryTimeout(60 * time.Second))
			produceSync(t, idem, "st-configs", seqValues("a-", 40))
			gc := b.client(kgo.ConsumerGroup("st-group"), kgo.ConsumeTopics("st-configs"), kgo.DisableAutoCommit())
			consumeN(t, gc, 40, 30*time.Second)
			if err := gc.CommitUncommittedOffsets(ctx); err != nil {
				t.Fatalf("commit: %v", err)
			}
			gc.Close()

			before := snapshot(t, b)
			if before.partitions["st-grow"] != 4 || before.partitions["st-gone"] != -1 || before.retention != "7200000" || len(before.offsets) == 0 {
				t.Fatalf("state before the restart is not what was set up: %v", before)
			}

			if how == "SIGKILL" {
				b.kill()
			} else if err := b.Proc.Stop(); err != nil {
				t.Fatalf("SIGTERM: the broker did not exit cleanly: %v", err)
			}
			b.restart()

			after := snapshot(t, b)
			if fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("state changed across the restart\nbefore: %v\nafter:  %v", before, after)
			}
			for topic, parts := range before.records {
				for p, vs := range parts {
					requireSameValues(t, fmt.Sprintf("%s[%d] after the restart", topic, p), after.records[topic][p], vs)
				}
			}

			// The same idempotent producer goes on; nothing is duplicated.
			produceSync(t, idem, "st-configs", seqValues("b-", 40))
			var all []string
			for _, vs := range b.readAll("st-configs") {
				all = append(all, vs...)
			}
			slices.Sort(all)
			want := append(seqValues("a-", 40), seqValues("b-", 40)...)
			slices.Sort(want)
			requireSameValues(t, "st-configs after producing across the restart", all, want)

			// A topic created again under the deleted name starts empty.
			b.createTopic("st-gone", 1)
			if ends := b.endOffsets("st-gone"); ends[0] != 0 {
				t.Errorf("re-created st-gone has end offset %d, want 0", ends[0])
			}
			b.requireNoPanic()
		})
	}
}

// walEntriesEnd walks the frames of a WAL segment (u32 length, u32 CRC,
// then length bytes; wal/doc.go) and returns the offset after the last one.
func walEntriesEnd(t *testing.T, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for off+8 <= len(data) {
		n := int(binary.BigEndian.Uint32(data[off:]))
		if n == 0 || off+8+n > len(data) {
			break
		}
		off += 8 + n
	}
	return int64(off)
}

// TestWALTornTail simulates a crash in the middle of writing a WAL frame: it
// kills the broker and appends half a frame to the last segment. At restart
// the broker must drop the torn frame, say so in its log (file and byte
// offset), and still serve every acknowledged record.
func TestWALTornTail(t *testing.T) {
	b := startBroker(t)
	const topic = "torn"
	b.createTopic(topic, 1)
	cl := b.client()
	want := seqValues("t-", 200)
	produceSync(t, cl, topic, want)
	b.kill()

	segs := b.walSegments()
	last := segs[len(segs)-1]
	// The entries end before the end of the file: the broker keeps the
	// active segment zero-filled ahead (wal/doc.go). A real torn append
	// lands right after the last entry, so write it there.
	end := walEntriesEnd(t, last)
	// A frame header that announces 4000 bytes, followed by only 40 of them.
	torn := binary.BigEndian.AppendUint32(nil, 4000)
	torn = append(torn, bytes.Repeat([]byte{0xab}, 44)...)
	f, err := os.OpenFile(last, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(torn, end); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b.restart()
	requireSameValues(t, "records after recovering a torn tail", b.readAll(topic)[0], want)
	// The torn bytes are gone: the entries still end where they did, and
	// what follows is zero-filled space (or nothing).
	if got := walEntriesEnd(t, last); got != end {
		t.Errorf("segment %s: entries end at %d after recovery, want %d (the torn frame cut off)", last, got, end)
	}
	if data, err := os.ReadFile(last); err != nil {
		t.Error(err)
	} else if int64(len(data)) > end && !bytes.Equal(data[end:min(int64(len(data)), end+int64(len(torn)))], make([]byte, min(int64(len(data))-end, int64(len(torn))))) {
		t.Errorf("segment %s still holds the torn frame's bytes at offset %d", last, end)
	}
	base := filepath.Base(last)
	offset := strconv.FormatInt(end, 10)
	found := false
	for _, line := range strings.Split(b.Proc.Log(), "\n") {
		if strings.Contains(line, base) && strings.Contains(line, offset) {
			found = true
			break
		}
	}
	if !found {
		t.Errorf("no broker log line names the torn segment %s and the offset %s", base, offset)
	}
	// And it keeps taking writes.
	produceSync(t, cl, topic, []string{"after"})
	requireSameValues(t, "records after a new produce", b.readAll(topic)[0], append(slices.Clone(want), "after"))
	b.requireNoPanic()
}

// TestWALCorruptionStopsStartup flips one byte inside an early WAL entry
// (valid entries follow it). The broker must refuse to start, with an error
// that names the damaged file, rather than serve a log with a hole. Once the
// byte is restored it starts and serves everything.
func TestWALCorruptionStopsStartup(t *testing.T) {
	b := startBroker(t)
	const topic = "corrupt"
	b.createTopic(topic, 1)
	want := seqValues("c-", 100)
	produceSync(t, b.client(), topic, want)
	if err := b.Proc.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	first := b.walSegments()[0]
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 200 {
		t.Fatalf("first segment %s has only %d bytes", first, len(data))
	}
	// Byte 21 is the first payload byte of the first entry (after the
	// 21-byte frame header); entries for the topic and records follow.
	const at = 21
	orig := data[at]
	data[at] ^= 0xff
	if err := os.WriteFile(first, data, 0o644); err != nil {
		t.Fatal(err)
	}

	b.Proc.MustRestart()
	select {
	case <-b.Proc.Exited():
	case <-time.After(20 * time.Second):
		t.Fatalf("the broker is still running 20s after starting on a WAL with a corrupt entry in the middle")
	}
	if b.Proc.ExitErr() == nil {
		t.Errorf("the broker exited with status 0 on a corrupt WAL; want a non-zero status")
	}
	if !strings.Contains(b.Proc.LogTail(30), filepath.Base(first)) {
		t.Errorf("the broker's last log lines do not name the corrupt file %s:\n%s", filepath.Base(first), b.Proc.LogTail(30))
	}

	data[at] = orig
	if err := os.WriteFile(first, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b.restart()
	requireSameValues(t, "records after repairing the WAL", b.readAll(topic)[0], want)
	b.requireNoPanic()
}

// TestRetention runs the broker with 1 MiB WAL segments, a small retention
// size and a fast retention check. Old segments are removed (the topic's
// start offset moves forward; consumers start there), yet a restart still
// knows every topic and committed offset, although the entries that created
// them are gone.
func TestRetention(t *testing.T) {
	const segment, retention = 1 << 20, 3 << 20 // the smallest segment the broker accepts
	b := startBroker(t, "--segment-bytes", strconv.Itoa(segment), "--log-retention-bytes", strconv.Itoa(retention),
		"--log-retention-check-interval", "200ms")
	const topic = "retained"
	b.createTopic(topic, 1)
	// Uncompressed, so that the WAL grows by the bytes produced.
	kcl := b.client(kgo.ProducerBatchCompression(kgo.NoCompression()))
	adm := kadm.NewClient(kcl)
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(ctxTimeout(t, 10*time.Second), "ret-group", commit); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}

	value := strings.Repeat("x", 1000)
	const n = 6000 // about 6 MB: twice the retention size
	vals := make([]string, n)
	for i := range vals {
		vals[i] = fmt.Sprintf("%05d-%s", i, value)
	}
	for i := 0; i < n; i += 100 {
		produceSync(t, kcl, topic, vals[i:i+100])
	}

	var start int64
	testutil.Eventually(t, 20*time.Second, func() error {
		lo, err := adm.ListStartOffsets(ctxTimeout(t, 5*time.Second), topic)
		if err != nil {
			return err
		}
		o, _ := lo.Lookup(topic, 0)
		if o.Offset <= 0 {
			return fmt.Errorf("start offset of %s is %d after writing ~6 MB with log.retention.bytes=3 MiB", topic, o.Offset)
		}
		start = o.Offset
		return nil
	})
	var walBytes int64
	for _, s := range b.walSegments() {
		if st, err := os.Stat(s); err == nil {
			walBytes += st.Size()
		}
	}
	if walBytes > retention+2*segment {
		t.Errorf("WAL holds %d bytes after retention, want about log.retention.bytes (%d) plus a segment or two", walBytes, retention)
	}

	// Reading from the earliest offset starts at the new start.
	rd := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	recs := consumeN(t, rd, 1, 20*time.Second)
	if recs[0].Offset < start || !strings.HasPrefix(string(recs[0].Value), fmt.Sprintf("%05d-", recs[0].Offset)) {
		t.Fatalf("first record read is offset %d value %.6q; want offset >= %d with its own value", recs[0].Offset, recs[0].Value, start)
	}
	rd.Close()

	b.kill()
	b.restart()
	lo, err := adm.ListStartOffsets(ctxTimeout(t, 10*time.Second), topic)
	if err != nil {
		t.Fatalf("ListOffsets after restart: %v", err)
	}
	if o, _ := lo.Lookup(topic, 0); o.Err != nil || o.Offset < start {
		t.Errorf("after restart: start offset %+v, want >= %d", o, start)
	}
	if ends := b.endOffsets(topic); ends[0] != n {
		t.Errorf("after restart: end offset %d, want %d", ends[0], n)
	}
	offs, err := adm.FetchOffsets(ctxTimeout(t, 10*time.Second), "ret-group")
	if err != nil {
		t.Fatalf("OffsetFetch after restart: %v", err)
	}
	if o, ok := offs.Lookup(topic, 0); !ok || o.At != 4 {
		t.Errorf("after retention and restart: ret-group offset %+v (found %v), want 4", o, ok)
	}
	b.requireNoPanic()
}

// TestDiskFull fills the broker's disk (a small tmpfs) with acks=all
// produces. The broker must answer (an error, not an acknowledgement, once
// it cannot write; no hang), and no acknowledged record may be lost: after
// the disk is grown and the broker restarted, every acknowledged record is
// there once and in order, and new writes succeed. Whether the broker keeps
// running on a full disk or stops (as Kafka does when its only log
// directory fails) is logged, not judged.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	testutil.MountTmpfs(t, dir, 12<<20)
	b := startBrokerIn(t, dir, "--segment-bytes", strconv.Itoa(1<<20))
	const topic = "full"
	b.createTopic(topic, 1)
	cl := b.client(kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordDeliveryTimeout(5*time.Second),
		kgo.RetryTimeout(5*time.Second))

	var acked []string
	filler := strings.Repeat("f", 1000)
	var firstErr error
	for batch := 0; batch < 300 && firstErr == nil; batch++ { // at most ~30 MB
		recs := make([]*kgo.Record, 100)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "%06d-%s", batch*100+i, filler)}
		}
		done := make(chan kgo.ProduceResults, 1)
		go func() { done <- cl.ProduceSync(context.Background(), recs...) }()
		var res kgo.ProduceResults
		select {
		case res = <-done:
		case <-time.After(90 * time.Second):
			t.Fatalf("a produce on a full disk got no answer within 90s (the broker hangs); %d records acknowledged so far", len(acked))
		}
		for _, r := range res {
			if r.Err != nil {
				if firstErr == nil {
					firstErr = r.Err
				}
				continue
			}
			acked = append(acked, string(r.Record.Value[:6]))
		}
	}
	if firstErr == nil {
		t.Fatalf("wrote %d records (~%d MB) to a 12 MB disk without an error", len(acked), len(acked)/1000)
	}
	t.Logf("disk full after %d acknowledged records; first error: %v; broker running: %v", len(acked), firstErr, b.Proc.Running())
	cl.Close()

	check := func(when string) {
		t.Helper()
		var got []string
		for _, v := range b.readAll(topic)[0] {
			got = append(got, v[:6])
		}
		requireAckedStored(t, when, got, acked)
	}
	if b.Proc.Running() {
		check("on the full disk")
	}

	testutil.ResizeTmpfs(t, dir, 64<<20)
	if b.Proc.Running() {
		b.kill()
	}
	b.restart()
	check("after growing the disk and restarting")
	produceSync(t, b.client(), topic, []string{"999999-after"})
	b.requireNoPanic()
}

// requireAckedStored fails the test unless every acknowledged value is in
// stored, once and in order. Values whose produce failed may or may not
// be stored; values are zero-padded counters, so stored must be sorted
// and without repeats.
func requireAckedStored(t *testing.T, what string, stored, acked []string) {
	t.Helper()
	i := 0
	for _, v := range stored {
		if i < len(acked) && v == acked[i] {
			i++
		}
	}
	if i != len(acked) {
		t.Fatalf("%s: acknowledged value %s (number %d of %d) is missing; %d stored", what, acked[i], i, len(acked), len(stored))
	}
	if !slices.IsSorted(stored) || len(slices.Compact(slices.Clone(stored))) != len(stored) {
		t.Fatalf("%s: stored values are out of order or duplicated", what)
	}
}

// TestFsyncPolicies: each --fsync policy serves produce and fetch, and a
// SIGKILL (a process crash, not a power cut: the page cache survives) loses
// no acknowledged record under any of them.
func TestFsyncPolicies(t *testing.T) {
	for _, policy := range []string{"every-batch", "interval", "none"} {
		t.Run(policy, func(t *testing.T) {
			b := startBroker(t, "--fsync", policy, "--fsync-interval", "50ms")
			const topic = "fsync"
			b.createTopic(topic, 1)
			want := seqValues(policy+"-", 1000)
			produceSync(t, b.client(), topic, want)
			b.kill()
			b.restart()
			requireSameValues(t, "records after SIGKILL", b.readAll(topic)[0], want)
			b.requireNoPanic()
		})
	}
}

// TestStateCheckpointLoss: once retention has removed the WAL entries that
// created a topic, the broker's state lives in its checkpoint. If that file
// is corrupt or missing at start-up, the broker must either refuse to start
// (naming the problem) or come back with the full state, never start with
// topics or committed offsets silently missing.
func TestStateCheckpointLoss(t *testing.T) {
	for _, damage := range []string{"corrupt", "missing"} {
		t.Run(damage, func(t *testing.T) {
			const segment, retention = 1 << 20, 2 << 20
			b := startBroker(t, "--segment-bytes", strconv.Itoa(segment), "--log-retention-bytes", strconv.Itoa(retention),
				"--log-retention-check-interval", "100ms")
			const topic = "kept"
			b.createTopic(topic, 1)
			kcl := b.client(kgo.ProducerBatchCompression(kgo.NoCompression()))
			adm := kadm.NewClient(kcl)
			offs := kadm.Offsets{}
			offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 7, LeaderEpoch: -1})
			if err := adm.CommitAllOffsets(ctxTimeout(t, 10*time.Second), "kept-group", offs); err != nil {
				t.Fatalf("commit: %v", err)
			}
			pad := strings.Repeat("k", 1000)
			for i := 0; i < 6000; i += 200 {
				vals := make([]string, 200)
				for j := range vals {
					vals[j] = fmt.Sprintf("%d-%s", i+j, pad)
				}
				produceSync(t, kcl, topic, vals)
			}
			// Wait until the segment holding the topic's creation is gone.
			testutil.Eventually(t, 20*time.Second, func() error {
				if first := filepath.Base(b.walSegments()[0]); first == "00000000000000000001.wal" {
					return fmt.Errorf("first WAL segment is still %s", first)
				}
				return nil
			})
			if err := b.Proc.Stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			cp := filepath.Join(b.DataDir, "state-checkpoint.json")
			if damage == "missing" {
				if err := os.Remove(cp); err != nil {
					t.Fatalf("remove the checkpoint: %v", err)
				}
			} else {
				data, err := os.ReadFile(cp)
				if err != nil {
					t.Fatalf("read the checkpoint: %v", err)
				}
				if err := os.WriteFile(cp, data[:len(data)/2], 0o644); err != nil {
					t.Fatal(err)
				}
			}

			b.Proc.MustRestart()
			if err := b.ready(); err != nil {
				t.Logf("the broker refused to start on a %s checkpoint: %v", damage, err)
				if b.Proc.Running() {
					t.Fatalf("the broker is running but not serving")
				}
				if !strings.Contains(b.Proc.LogTail(20), "state-checkpoint.json") {
					t.Errorf("the broker's last log lines do not name state-checkpoint.json:\n%s", b.Proc.LogTail(20))
				}
				return
			}
			if n := partitionCount(t, b.client(), topic); n != 1 {
				t.Errorf("started on a %s checkpoint without topic %s (Metadata lists %d partitions)", damage, topic, n)
			}
			fo, err := b.admin().FetchOffsets(ctxTimeout(t, 10*time.Second), "kept-group")
			if o, ok := fo.Lookup(topic, 0); err != nil || !ok || o.At != 7 {
				t.Errorf("started on a %s checkpoint without kept-group's committed offset (got %+v, found %v, err %v)", damage, o, ok, err)
			}
		})
	}
}
