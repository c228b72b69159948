package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// flood opens n TCP connections to addr and holds them until the test
// ends or the returned function is called. Connections the broker closes
// at once stay open on this side; that costs it nothing.
func flood(t *testing.T, addr string, n int) (release func()) {
	t.Helper()
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if errors.Is(err, syscall.ECONNRESET) {
			// Refused over a connection limit: the broker reset it
			// before the dial returned. The flood goes on.
			continue
		}
		if err != nil {
			// The checks after the flood say what became of the broker.
			t.Logf("flood: connection %d of %d: %v; stopped dialing", i+1, n, err)
			break
		}
		conns = append(conns, c)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, c := range conns {
				c.Close()
			}
		})
	}
	t.Cleanup(release)
	return release
}

// TestConnectionFlood: a broker whose open-file limit is 512 (prlimit)
// gets 1,024 connections at once while a producer that connected before
// writes acks=all through 1 MiB WAL segments. Without a connection limit
// the flood took the last file descriptor and the broker stopped ("accept:
// too many open files"). Now the automatic --max-connections refuses the
// flood's extra connections, the WAL keeps rolling to new segments, no
// write fails, and once the flood goes every acknowledged record is read
// back in order by a new client.
func TestConnectionFlood(t *testing.T) {
	const nofile = 512
	metrics := testutil.FreeAddr(t)
	b := startBrokerWrapped(t, t.TempDir(), []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"},
		"--segment-bytes", strconv.Itoa(1<<20), "--metrics-listen", metrics)
	if !strings.Contains(b.Proc.Log(), "the open-file limit leaves room for few client connections") {
		t.Errorf("the broker did not warn about its low open-file limit; log:\n%s", b.Proc.LogTail(20))
	}
	const topic = "flood"
	b.createTopic(topic, 1)
	prod := b.client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	pad := strings.Repeat("p", 4000)
	var (
		mu       sync.Mutex
		acked    []string
		firstErr error
	)
	produce := func(from int) int {
		recs := make([]*kgo.Record, 16)
		for i := range recs {
			recs[i] = &kgo.Record{Value: fmt.Appendf(nil, "%07d-%s", from+i, pad)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res := prod.ProduceSync(ctx, recs...)
		mu.Lock()
		defer mu.Unlock()
		for _, r := range res {
			if r.Err != nil {
				if firstErr == nil {
					firstErr = r.Err
				}
				continue
			}
			acked = append(acked, string(r.Record.Value[:7]))
		}
		return from + len(recs)
	}
	next := produce(0) // the producer's connections are up before the flood

	release := flood(t, b.Addr, 2*nofile)
	b.requireAlive()
	segsAtFlood := len(b.walSegments())
	deadline := time.Now().Add(60 * time.Second)
	for start := time.Now(); time.Since(start) < 3*time.Second || len(b.walSegments()) < segsAtFlood+3; {
		if time.Now().After(deadline) {
			t.Fatalf("the WAL rolled from %d to only %d segments in 60 s of writes during the flood", segsAtFlood, len(b.walSegments()))
		}
		next = produce(next)
		time.Sleep(50 * time.Millisecond) // about 1.3 MB/s: a segment every second or so
	}
	b.requireAlive()
	m, err := scrape(metrics)
	if err != nil {
		t.Fatalf("scraping the broker during the flood: %v", err)
	}
	refused := m[`tandem_broker_connections_refused_total{reason="max_connections"}`]
	held, limit := m["tandem_broker_connections"], m["tandem_broker_max_connections"]
	t.Logf("during the flood: %v connections held (limit %v), %v refused, %v accept errors, %d segments (%d at the start of the flood), %d records acknowledged",
		held, limit, refused, m["tandem_broker_accept_errors_total"], len(b.walSegments()), segsAtFlood, len(acked))
	// The limit leaves the reserve (256) and the WAL's segments out of the
	// open-file limit; it falls as segments are added.
	if refused == 0 || limit <= 0 || held > nofile-256 || limit > nofile-256-float64(len(b.walSegments())) {
		t.Errorf("want connections refused, and the limit and the connections held below the open-file limit %d less the reserve (256) and the segments", nofile)
	}
	if firstErr != nil {
		t.Fatalf("a write failed during the flood: %v", firstErr)
	}

	release()
	b.requireAlive()
	var got []string
	for _, v := range b.readAll(topic)[0] { // a new client, after the flood
		got = append(got, v[:7])
	}
	requireAckedStored(t, "after the flood", got, acked)
	if len(got) != len(acked) {
		t.Fatalf("read %d records, %d were acknowledged and none failed", len(got), len(acked))
	}
}

// TestConnectionFloodPastFileLimit: with --max-connections set above the
// open-file limit, the flood does run the broker out of file descriptors.
// Accepting then fails with EMFILE; the broker logs it, waits and accepts
// again (before, it stopped), and serves new clients once the flood goes.
func TestConnectionFloodPastFileLimit(t *testing.T) {
	const nofile = 256
	metrics := testutil.FreeAddr(t)
	b := startBrokerWrapped(t, t.TempDir(), []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"},
		"--max-connections", "100000", "--metrics-listen", metrics)
	const topic = "past-limit"
	b.createTopic(topic, 1)
	produceSync(t, b.client(), topic, []string{"before"})

	release := flood(t, b.Addr, 2*nofile)
	if err := testutil.Poll(20*time.Second, func() error {
		if !strings.Contains(b.Proc.Log(), "accepting Kafka connections failed; retrying") {
			return fmt.Errorf("no failed accept logged")
		}
		return nil
	}); err != nil {
		t.Fatalf("%v; log:\n%s", err, b.Proc.LogTail(20))
	}
	b.requireAlive()
	release()

	if err := testutil.Poll(20*time.Second, func() error {
		m, err := scrape(metrics)
		if err != nil {
			return err
		}
		if m["tandem_broker_accept_errors_total"] == 0 {
			return fmt.Errorf("tandem_broker_accept_errors_total is 0")
		}
		return nil
	}); err != nil {
		t.Fatalf("after the flood: %v", err)
	}
	produceSync(t, b.client(), topic, []string{"after"})
	if got := b.readAll(topic)[0]; strings.Join(got, ",") != "before,after" {
		t.Fatalf("read %q, want [before after]", got)
	}
	b.requireAlive()
}
