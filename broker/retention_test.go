package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// watermarkDump lists every partition's log start offset, high watermark
// and log end offset.
func watermarkDump(b *Broker) string {
	var lines []string
	for _, name := range b.topicNames() {
		snap, _ := b.topicSnap(name)
		for _, p := range snap.partitions {
			start, hw, next := p.watermarks()
			lines = append(lines, fmt.Sprintf("%s/%d start %d hw %d next %d", name, p.id, start, hw, next))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// recloneFollower opens a follower over a fresh directory and re-clones it
// from the leader's first LSN, as the sidecar does for a replica that is
// too far behind: ResetTo, then every entry the leader still has.
func recloneFollower(t *testing.T, leader *Broker) *Broker {
	t.Helper()
	first := leader.wal.FirstLSN()
	cfg := DefaultConfig()
	cfg.NodeID = 2
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.SidecarSocket = filepath.Join(t.TempDir(), "none.sock") // follower role, never attached
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "follower", Output: testWriter{t}})
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.ResetTo(first); err != nil {
		t.Fatal(err)
	}
	follow(t, f, leader) // from first, where the reset WAL now ends
	f.SetCommitLSN(f.wal.LastLSN())
	return f
}

// fillAndRetain writes 3.5 MB to topic "busy" (which must exist) through
// the broker at addr, so that 1 MiB segments roll, and has retention
// delete every segment it may, which must be at least one: what holds the
// entries written before (what) goes.
func fillAndRetain(ctx context.Context, t *testing.T, b *Broker, addr, what string) {
	t.Helper()
	prod := newClient(t, addr, kgo.DefaultProduceTopic("busy"), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	defer prod.Close()
	value := strings.Repeat("x", 10<<10)
	for i := 0; i < 350; i++ {
		if err := prod.ProduceSync(ctx, kgo.StringRecord(value)).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.enforceRetention(time.Now().Add(30 * 24 * time.Hour)); err != nil || n == 0 {
		t.Fatalf("retention deleted %d segments (%v); the test needs %s deleted", n, err, what)
	}
}

// A partition whose batches were all in WAL segments that retention
// deleted keeps its log start and log end offsets across a restart (and on
// a replica re-cloned after the deletion): the state checkpoint holds them.
// Its idempotent producer, whose sequence state went with the segments, is
// accepted where it left off, as Kafka accepts a producer it has no state
// for. A checkpoint of an older version, without offsets, still loads.
func TestOffsetsSurviveRetentionAndRestart(t *testing.T) {
	dir := t.TempDir()
	segBytes := func(c *Config) { c.SegmentBytes = 1 << 20 }
	b, addr := startBrokerWith(t, dir, segBytes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	createTopic(t, cl, "quiet", 1)
	createTopic(t, cl, "busy", 1)
	ip, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctx, cl)
	if err != nil || ip.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", err, kerr.ErrorForCode(ip.ErrorCode))
	}
	pid, epoch := ip.ProducerID, ip.ProducerEpoch
	if r := rawProduce(t, cl, "quiet", pid, epoch, 0, 5); r.ErrorCode != 0 || r.BaseOffset != 0 {
		t.Fatalf("quiet: error %v, base offset %d", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
	}
	fillAndRetain(ctx, t, b, addr, "the quiet partition's batches")
	if s, hw, next := b.partition("quiet", 0).watermarks(); s != 5 || hw != 5 || next != 5 {
		t.Fatalf("before the restart quiet has log start %d, high watermark %d, log end %d; want 5, 5, 5", s, hw, next)
	}
	before := watermarkDump(b)
	cl.Close()
	b.Close()

	// copyDir gives each case the data directory as the broker left it.
	copyDir := func(t *testing.T) string {
		d := t.TempDir()
		if err := os.CopyFS(d, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		name string
		open func(t *testing.T, dir string) *Broker
		want string // "" for the dump before the restart
	}{
		{"restart", func(t *testing.T, dir string) *Broker {
			b, addr := startBrokerWith(t, dir, segBytes)
			// The producer goes on where it left off; so does a plain one.
			cl := newClient(t, addr)
			if r := rawProduce(t, cl, "quiet", pid, epoch, 5, 1); r.ErrorCode != 0 || r.BaseOffset != 5 {
				t.Errorf("idempotent batch after the restart: error %v, base offset %d; want none, 5", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
			}
			if r := rawProduce(t, cl, "quiet", -1, -1, -1, 1); r.ErrorCode != 0 || r.BaseOffset != 6 {
				t.Errorf("plain batch after the restart: error %v, base offset %d; want none, 6", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
			}
			b.appendMu.Lock()
			defer b.appendMu.Unlock()
			p := b.partition("quiet", 0)
			p.mu.Lock()
			defer p.mu.Unlock()
			// Back to the state of before these two batches, for the dump.
			p.next, p.hw, p.batches = 5, 5, nil
			return b
		}, ""},
		{"restart, state rebuilt by a second pass", func(t *testing.T, dir string) *Broker {
			b := openWithoutRecoveryReplay(t, dir)
			t.Cleanup(func() { b.Close() })
			return b
		}, ""},
		{"re-cloned replica", func(t *testing.T, dir string) *Broker {
			b, _ := startBrokerWith(t, dir, segBytes)
			return recloneFollower(t, b)
		}, ""},
		{"checkpoint of an older version", func(t *testing.T, dir string) *Broker {
			path := filepath.Join(dir, checkpointName)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var cp map[string]any
			if err := json.Unmarshal(data, &cp); err != nil {
				t.Fatal(err)
			}
			for _, tp := range cp["topics"].([]any) {
				delete(tp.(map[string]any), "partition_offsets")
			}
			if data, err = json.Marshal(cp); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			b, _ := startBrokerWith(t, dir, segBytes)
			return b
		}, "quiet/0 start 0 hw 0 next 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.open(t, copyDir(t))
			got := watermarkDump(b)
			if tc.want != "" {
				if !strings.Contains(got, tc.want) {
					t.Fatalf("watermarks:\n%s\nwant a line %q", got, tc.want)
				}
				return
			}
			if d := lineDiff(before, got); d != "" {
				t.Fatalf("watermarks differ from before the restart (- before, + after):\n%s", d)
			}
		})
	}
}

// A consumer group's stored membership outlives the WAL segments that held
// it: after retention deletes them, a restarted broker still knows the
// member (its heartbeat in the same generation is accepted), and so does a
// replica re-cloned from the leader's remaining log.
func TestGroupMembershipSurvivesRetention(t *testing.T) {
	dir := t.TempDir()
	segBytes := func(c *Config) { c.SegmentBytes = 1 << 20 }
	b, addr := startBrokerWith(t, dir, segBytes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	createTopic(t, cl, "busy", 1)

	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.ProtocolType = 3, "kept", "consumer"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 30000, 30000
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name, proto.Metadata = "range", []byte("sub")
	join.Protocols = append(join.Protocols, proto)
	jr, err := join.RequestWith(ctx, cl) // kgo sends v4+: the first join gets a member id
	if err == nil && jr.ErrorCode == kerr.MemberIDRequired.Code {
		join.MemberID = jr.MemberID
		jr, err = join.RequestWith(ctx, cl)
	}
	if err != nil || jr.ErrorCode != 0 {
		t.Fatalf("JoinGroup: %v %v", err, kerr.ErrorForCode(jr.ErrorCode))
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version, sync.Group, sync.MemberID, sync.Generation = 3, "kept", jr.MemberID, jr.Generation
	ga := kmsg.NewSyncGroupRequestGroupAssignment()
	ga.MemberID, ga.MemberAssignment = jr.MemberID, []byte("busy/0")
	sync.GroupAssignment = append(sync.GroupAssignment, ga)
	if sr, err := sync.RequestWith(ctx, cl); err != nil || sr.ErrorCode != 0 {
		t.Fatalf("SyncGroup: %v %v", err, kerr.ErrorForCode(sr.ErrorCode))
	}

	fillAndRetain(ctx, t, b, addr, "the group's entry")
	if first := b.wal.FirstLSN(); first <= 3 {
		t.Fatalf("the log still starts at LSN %d, before the group's entry", first)
	}
	want := fmt.Sprintf("%+v", b.groups.StoredGroups())
	if !strings.Contains(want, jr.MemberID) {
		t.Fatalf("stored groups before the restart: %s, want member %s", want, jr.MemberID)
	}
	cl.Close()
	b.Close()

	b2, addr2 := startBrokerWith(t, dir, segBytes)
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version, hb.Group, hb.MemberID, hb.Generation = 3, "kept", jr.MemberID, jr.Generation
	if r, err := hb.RequestWith(ctx, newClient(t, addr2)); err != nil || r.ErrorCode != 0 {
		t.Fatalf("heartbeat after the restart: %v %v; want the member known", err, kerr.ErrorForCode(r.ErrorCode))
	}
	if got := fmt.Sprintf("%+v", recloneFollower(t, b2).groups.StoredGroups()); got != want {
		t.Fatalf("stored groups on a re-cloned replica:\n%s\nwant\n%s", got, want)
	}
}

// --offsets-retention: offsets committed outside any group membership
// expire that long after their last commit, on the leader's retention
// check; the deletion is in the WAL, so they stay gone after a restart.
// A group with a member keeps its offsets.
func TestOffsetsExpire(t *testing.T) {
	dir := t.TempDir()
	short := func(c *Config) { c.OffsetsRetention, c.RetentionCheckInterval = 2*time.Second, 100*time.Millisecond }
	b, addr := startBrokerWith(t, dir, short)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	createTopic(t, cl, "t", 1)
	adm := kadm.NewClient(cl)
	member := newClient(t, addr, kgo.ConsumerGroup("active"), kgo.ConsumeTopics("t"), kgo.DisableAutoCommit())
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	member.PollFetches(pctx) // joins the group
	pcancel()
	var commitErr error
	member.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{"t": {0: {Epoch: -1, Offset: 5}}},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			commitErr = err
		})
	if commitErr != nil {
		t.Fatal(commitErr)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "t", Partition: 0, At: 17, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, "standalone", offs); err != nil {
		t.Fatal(err)
	}
	fetch := func(group string) int64 {
		t.Helper()
		r, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		o, ok := r.Lookup("t", 0)
		if !ok {
			return -1
		}
		return o.At
	}
	if got := fetch("standalone"); got != 17 {
		t.Fatalf("standalone offset %d right after the commit, want 17", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for fetch("standalone") != -1 {
		if time.Now().After(deadline) {
			t.Fatal("the standalone offset did not expire within 20 s of a 2 s retention")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := fetch("active"); got != 5 {
		t.Fatalf("the group with a member has offset %d, want 5", got)
	}
	member.Close()
	cl.Close()
	b.Close()

	_, addr2 := startBrokerWith(t, dir, func(c *Config) { c.OffsetsRetention = 0 })
	r, err := kadm.NewClient(newClient(t, addr2)).FetchOffsets(ctx, "standalone")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := r.Lookup("t", 0); ok && o.At >= 0 {
		t.Fatalf("after a restart the expired offset is back: %d", o.At)
	}
}
