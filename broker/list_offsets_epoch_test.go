package broker

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/internal/testutil"
)

// TestNewLeaderEndOffsetWaitsForItsHighWatermark: a follower elected
// leader holds records of the old leader's that it cannot yet call
// committed (its followers have not acked them in the new epoch), so its
// high watermark is below the end the old leader may already have given
// out. Until that settles, ListOffsets "latest" (and lookups that find
// nothing committed) answers OFFSET_NOT_AVAILABLE, LEADER_NOT_AVAILABLE
// before v5, as Kafka does (KIP-207): a consumer told to start at the end
// asks again and starts at the real end, instead of reading again records
// that were there before it started. Partitions without such records, the
// earliest offset and lookups that find a committed record answer at once.
func TestNewLeaderEndOffsetWaitsForItsHighWatermark(t *testing.T) {
	b, ln, committing := leaderWithoutFollowers(t)
	commitAll := func() {
		t.Helper()
		committing.set(true)
		testutil.Eventually(t, 10*time.Second, func() error {
			if c, l := b.CommitLSN(), b.wal.LastLSN(); c < l {
				return fmt.Errorf("commit point %d, last LSN %d", c, l)
			}
			return nil
		})
	}

	ctx := t.Context()
	cl := newClient(t, ln.Addr().String(), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(0))
	createTopic(t, cl, "kip207", 1)
	createTopic(t, cl, "settled", 1)
	old := time.Now().Add(-time.Hour)
	for i := 0; i < 5; i++ {
		for _, topic := range []string{"kip207", "settled"} {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("committed"), Timestamp: old}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	commitAll()
	committing.set(false)
	// Offsets 5-7 of kip207: acknowledged with acks=1 by the old leader,
	// not yet committed.
	for i := 0; i < 3; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kip207", Value: []byte("tail")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A failover: this node follows, then is elected in epoch 2.
	b.SetClusterView(link.ClusterView{Role: link.RoleFollower, LeaderID: 3, Epoch: 1, Brokers: selfOnly(b, ln)})
	b.SetClusterView(link.ClusterView{Role: link.RoleLeader, LeaderID: b.cfg.NodeID, Epoch: 2, Brokers: selfOnly(b, ln)})

	// One client per ListOffsets version (a client sends the highest
	// version both sides know).
	pinned := map[int16]*kgo.Broker{}
	for _, v := range []int16{0, 4, 7} {
		versions := kversion.Stable()
		versions.SetMaxKeyVersion(kmsg.ListOffsets.Int16(), v)
		pinned[v] = newClient(t, ln.Addr().String(), kgo.MaxVersions(versions)).SeedBrokers()[0]
	}
	list := func(version int16, topic string, ts int64, isolation, replica int8) (int64, error) {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = int32(replica)
		req.IsolationLevel = isolation
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = ts
		rp.MaxNumOffsets = 1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := pinned[version].Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		sp := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
		if version == 0 {
			if len(sp.OldStyleOffsets) > 0 {
				return sp.OldStyleOffsets[0], kerr.ErrorForCode(sp.ErrorCode)
			}
			return -1, kerr.ErrorForCode(sp.ErrorCode)
		}
		return sp.Offset, kerr.ErrorForCode(sp.ErrorCode)
	}
	check := func(what string, gotOff int64, gotErr error, wantOff int64, wantErr error) {
		t.Helper()
		if gotErr != wantErr || (wantErr == nil && gotOff != wantOff) {
			t.Errorf("%s: offset %d, error %v; want offset %d, error %v", what, gotOff, gotErr, wantOff, wantErr)
		}
	}
	const committed = 0 // isolation level read_uncommitted

	off, err := list(7, "kip207", -1, committed, -1)
	check("latest (v7)", off, err, -1, kerr.OffsetNotAvailable)
	off, err = list(7, "kip207", -1, 1, -1)
	check("latest, read_committed (v7)", off, err, -1, kerr.OffsetNotAvailable)
	off, err = list(4, "kip207", -1, committed, -1)
	check("latest (v4)", off, err, -1, kerr.LeaderNotAvailable)
	off, err = list(0, "kip207", -1, committed, -1)
	check("latest (v0)", off, err, -1, kerr.LeaderNotAvailable)
	off, err = list(7, "kip207", -3, committed, -1)
	check("max timestamp", off, err, -1, kerr.OffsetNotAvailable)
	off, err = list(7, "kip207", time.Now().Add(-time.Minute).UnixMilli(), committed, -1)
	check("a timestamp only the uncommitted records reach", off, err, -1, kerr.OffsetNotAvailable)
	off, err = list(7, "kip207", old.Add(-time.Minute).UnixMilli(), committed, -1)
	check("a timestamp a committed record reaches", off, err, 0, nil)
	off, err = list(7, "kip207", -2, committed, -1)
	check("earliest", off, err, 0, nil)
	off, err = list(7, "settled", -1, committed, -1)
	check("latest of a partition with nothing uncommitted", off, err, 5, nil)
	off, err = list(7, "kip207", -1, committed, -2)
	check("latest for Kafka's debugging replica id", off, err, 5, nil)

	// Consumers told to start at the end, started now, ask until the
	// answer comes: they must start at offset 8, after the old leader's
	// records. franz-go's first record must be the one written once it
	// fetches; kcat must reach the end at 8; kafka-python's position must
	// be 8.
	var hook consumerHook
	cons := newClient(t, ln.Addr().String(), kgo.ConsumeTopics("kip207"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }),
		kgo.WithHooks(&hook))
	first := make(chan *kgo.Record, 1)
	go func() {
		for ctx.Err() == nil {
			if rs := cons.PollFetches(ctx).Records(); len(rs) > 0 {
				first <- rs[0]
				return
			}
		}
	}()
	// kcat says (debug context topic) when it asks again, and exits at the
	// end (-e), saying where that is.
	kcat := outputLines(t, "kcat", "-C", "-b", ln.Addr().String(), "-t", "kip207", "-o", "end", "-e", "-d", "topic")
	// kafka-python (ListOffsets v1) logs each retry as a warning.
	python := outputLines(t, "/usr/bin/python3", "-c", `
import kafka, logging, sys
class Retry(logging.Handler):
    def emit(self, record):
        if "LeaderNotAvailable" in record.getMessage():
            print("retrying", flush=True)
logging.getLogger("kafka.consumer.fetcher").addHandler(Retry())
c = kafka.KafkaConsumer(bootstrap_servers=sys.argv[1])
tp = kafka.TopicPartition("kip207", 0)
c.assign([tp])
c.seek_to_end(tp)
print("position", c.position(tp), flush=True)
`, ln.Addr().String())
	// Each has asked once while the records were not committed.
	testutil.Eventually(t, 20*time.Second, func() error {
		if hook.listed.Load() == 0 {
			return fmt.Errorf("franz-go has not had a ListOffsets answer")
		}
		return nil
	})
	if l := waitLine(t, kcat, "Leader not available", "Reached end"); strings.Contains(l, "Reached end") {
		t.Errorf("kcat, started at the end while the old leader's records were not committed: %s", l)
	}
	if l := waitLine(t, python, "retrying", "position"); l != "retrying" {
		t.Errorf("kafka-python, started at the end while the old leader's records were not committed: %s", l)
	}

	commitAll()
	off, err = list(7, "kip207", -1, committed, -1)
	check("latest once the old leader's records are committed", off, err, 8, nil)
	if l := waitLine(t, kcat, "Reached end"); !strings.Contains(l, "at offset 8") {
		t.Errorf("kcat, started at the end: %s; want the end at offset 8", l)
	}
	if l := waitLine(t, python, "position"); l != "position 8" {
		t.Errorf("kafka-python, started at the end: %s; want position 8", l)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if hook.fetches.Load() == 0 {
			return fmt.Errorf("franz-go has not fetched")
		}
		return nil
	})
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kip207", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	commitAll()
	select {
	case r := <-first:
		if r.Offset != 8 || string(r.Value) != "after" {
			t.Fatalf("franz-go, started at the end, read offset %d (%q) first; want offset 8, the record written after it started", r.Offset, r.Value)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("franz-go, started at the end, read nothing in 15 s")
	}
}

// outputLines starts a client (kcat, kafka-python; scripts/test.sh
// installs them) and gives its output, stdout and stderr, line by line.
// It is killed when the test ends.
func outputLines(t *testing.T, name string, args ...string) <-chan string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is missing (scripts/test.sh installs it): %v", name, err)
	}
	cmd := exec.CommandContext(t.Context(), name, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		err := cmd.Wait()
		pw.CloseWithError(fmt.Errorf("%s exited: %v", name, err))
	}()
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		lines <- sc.Err().Error()
	}()
	return lines
}

// waitLine returns the first line from lines that contains one of want
// (the test fails after 20 s, or if the client exits first).
func waitLine(t *testing.T, lines <-chan string, want ...string) string {
	t.Helper()
	var last []string
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("no line with %q; the last lines:\n%s", want, strings.Join(last, "\n"))
			}
			for _, w := range want {
				if strings.Contains(l, w) {
					return l
				}
			}
			last = append(last, l)
			if len(last) > 20 {
				last = last[1:]
			}
		case <-timeout:
			t.Fatalf("no line with %q in 20 s; the last lines:\n%s", want, strings.Join(last, "\n"))
		}
	}
}

// consumerHook counts the ListOffsets answers a client reads and the
// Fetch requests it sends.
type consumerHook struct{ listed, fetches atomic.Int32 }

func (h *consumerHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key == kmsg.ListOffsets.Int16() && e2e.Err() == nil {
		h.listed.Add(1)
	}
}

func (h *consumerHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == kmsg.Fetch.Int16() && err == nil {
		h.fetches.Add(1)
	}
}
