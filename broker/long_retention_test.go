package broker

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// createTopicWith creates a one-partition topic with the given configs.
func createTopicWith(t *testing.T, adm *kadm.Client, name string, configs map[string]string) {
	t.Helper()
	c := map[string]*string{}
	for k, v := range configs {
		c[k] = kadm.StringPtr(v)
	}
	resp, err := adm.CreateTopic(context.Background(), 1, 1, c, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

// A topic whose retention.ms is -1 (forever, as Kafka Streams sets on its
// repartition topics) or longer than the node's log.retention.ms keeps
// every record when node-wide retention deletes the WAL segments they were
// written to, also when log.retention.bytes is what deletes them, and
// after a restart that replays the copies without the originals. Its own
// retention.ms still applies, and so does DeleteRecords. Topics without
// an override, or with a shorter one, lose their records with the
// segments, as before.
func TestLongRetentionTopicsOutliveNodeRetention(t *testing.T) {
	dir := t.TempDir()
	segBytes := func(c *Config) { c.SegmentBytes = 1 << 20 }
	b, addr := startBrokerWith(t, dir, segBytes)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	adm := kadm.NewClient(cl)
	day := int64(24 * time.Hour / time.Millisecond)
	createTopicWith(t, adm, "forever", map[string]string{"retention.ms": "-1"})
	createTopicWith(t, adm, "two-months", map[string]string{"retention.ms": strconv.FormatInt(60*day, 10)})
	createTopicWith(t, adm, "one-day", map[string]string{"retention.ms": strconv.FormatInt(day, 10)})
	createTopicWith(t, adm, "plain", nil)
	createTopic(t, cl, "busy", 1)

	forever := writeTable(ctx, t, addr, "forever", 20, 5)
	twoMonths := writeTable(ctx, t, addr, "two-months", 10, 3)
	writeTable(ctx, t, addr, "one-day", 10, 2)
	writeTable(ctx, t, addr, "plain", 10, 2)
	lastLSN := b.wal.LastLSN()

	check := func(b *Broker, addr, when string, wantTwoMonths []stored) {
		t.Helper()
		if got := readTopic(t, addr, "forever", false); !slices.Equal(got, forever) {
			t.Fatalf("%s, the retention.ms=-1 topic holds\n%v\nwant every record written\n%v", when, got, forever)
		}
		gone := map[string]int64{"one-day": 20, "plain": 20} // topic: records written
		if wantTwoMonths == nil {
			gone["two-months"] = 30
		} else if got := readTopic(t, addr, "two-months", false); !slices.Equal(got, wantTwoMonths) {
			t.Fatalf("%s, the topic with retention.ms of 60 days holds\n%v\nwant\n%v", when, got, wantTwoMonths)
		}
		for topic, n := range gone {
			if start, _, next := b.partition(topic, 0).watermarks(); start != n || next != n {
				t.Fatalf("%s, topic %s has log start %d and log end %d; want its %d records gone (%d, %d)", when, topic, start, next, n, n, n)
			}
		}
	}

	// Time retention (the node keeps 7 days; fillAndRetain judges the
	// segments 30 days later).
	fillAndRetain(ctx, t, b, addr, "the topics' original batches")
	if first := b.wal.FirstLSN(); first <= lastLSN {
		t.Fatalf("retention kept the WAL from LSN %d; the test needs the topics' batches (up to LSN %d) deleted", first, lastLSN)
	}
	check(b, addr, "after retention", twoMonths)

	// A restart replays the copies, without the originals; then size
	// retention (every sealed segment it may) deletes the copies' own
	// segments after copying them forward again.
	cl.Close()
	b.Close()
	b, addr = startBrokerWith(t, dir, func(c *Config) { segBytes(c); c.RetentionBytes = 0 })
	check(b, addr, "after a restart", twoMonths)
	lastLSN = b.wal.LastLSN()
	prod := newClient(t, addr, kgo.DefaultProduceTopic("busy"), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := 0; i < 350; i++ {
		if err := prod.ProduceSync(ctx, kgo.StringRecord(strings.Repeat("x", 10<<10))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.enforceRetention(time.Now()); err != nil || n == 0 {
		t.Fatalf("size retention deleted %d segments (%v)", n, err)
	}
	if first := b.wal.FirstLSN(); first <= lastLSN {
		t.Fatalf("size retention kept the WAL from LSN %d; the test needs it past %d", first, lastLSN)
	}
	check(b, addr, "after size retention", twoMonths)

	// Ninety days on, the two-month topic's own retention removes its
	// records; the forever topic keeps them. DeleteRecords still moves
	// the forever topic's log start (Kafka Streams purges its repartition
	// topics that way), and retention then lets those records go.
	b.trimTopics(time.Now().Add(90 * 24 * time.Hour))
	purge := forever[len(forever)/2].offset
	cl = newClient(t, addr)
	adm = kadm.NewClient(cl)
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "forever", Partition: 0, At: purge})
	res, err := adm.DeleteRecords(ctx, offs)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	forever = slices.DeleteFunc(forever, func(s stored) bool { return s.offset < purge })
	fillAndRetain(ctx, t, b, addr, "the copies")
	check(b, addr, "after the two-month topic expired and the forever topic was purged", nil)
	if hold, _ := b.compactionHold(); hold == 0 || hold < b.wal.FirstLSN() {
		t.Fatalf("the forever topic's records point at LSN %d, before the WAL's first LSN %d", hold, b.wal.FirstLSN())
	}
}

// A follower's retention holds the segments a long-retention topic's
// records are in until the leader's copies arrive, as for a compacted
// topic (TestCompactionOnFollower).
func TestLongRetentionOnFollower(t *testing.T) {
	leader, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.SegmentBytes = 1 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	createTopicWith(t, kadm.NewClient(cl), "forever", map[string]string{"retention.ms": "-1"})
	createTopic(t, cl, "busy", 1)
	forever := writeTable(ctx, t, addr, "forever", 10, 4)
	f := retainOnFollower(ctx, t, leader, addr, "the topic")
	want := make([]stored, len(forever))
	for i, s := range forever {
		want[i] = stored{s.offset, s.key, "?"}
		if s.value == "<nil>" {
			want[i].value = s.value
		}
	}
	for _, br := range []*Broker{leader, f} {
		if got := servedRecords(t, br, "forever"); !slices.Equal(got, want) {
			t.Fatalf("node %d serves %v; want %v", br.cfg.NodeID, got, want)
		}
	}
}
