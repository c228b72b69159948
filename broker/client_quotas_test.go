package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func alterQuota(t *testing.T, adm *kadm.Client, entity kadm.ClientQuotaEntity, key string, value float64, remove bool) {
	t.Helper()
	res, err := adm.AlterClientQuotas(context.Background(), []kadm.AlterClientQuotaEntry{{
		Entity: entity,
		Ops:    []kadm.AlterClientQuotaOp{{Key: key, Value: value, Remove: remove}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("AlterClientQuotas %v: %v %s", entity, r.Err, r.ErrMessage)
		}
	}
}

// throttleCounter counts the throttle times a client is told.
type throttleCounter struct{ n, ms atomic.Int64 }

func (c *throttleCounter) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	c.n.Add(1)
	c.ms.Add(d.Milliseconds())
}

// A producer and a consumer over their client quotas are slowed to about
// the quota (after the burst the 10 s window allows), told so with a
// throttle time, and counted; a client without a quota is not; quotas
// survive a restart and can be removed.
func TestClientQuotasThrottle(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBroker(t, dir)
	ctx := context.Background()
	adm := kadm.NewClient(newClient(t, addr))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "q"); err != nil {
		t.Fatal(err)
	}
	slow := "slow-app"
	const rate = 50_000 // bytes/s
	alterQuota(t, adm, kadm.ClientQuotaEntity{{Type: "client-id", Name: &slow}}, "producer_byte_rate", rate, false)
	alterQuota(t, adm, kadm.ClientQuotaEntity{{Type: "client-id", Name: &slow}}, "consumer_byte_rate", rate, false)

	// 3 s of 10 KB records as fast as the quota lets through. The window
	// allows a burst of 10 s worth (500 KB), then about 50 KB/s: well
	// under 1.5 MB either way; without the quota, hundreds of MB.
	var tc throttleCounter
	prod := newClient(t, addr, kgo.ClientID(slow), kgo.WithHooks(&tc), kgo.ProducerLinger(0))
	value := make([]byte, 10_000)
	rand.Read(value) // incompressible: quotas count the bytes sent
	sent := 0
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "q", Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		sent += len(value)
	}
	if sent > 1_500_000 {
		t.Fatalf("a producer with a %d B/s quota sent %d bytes in 3 s", rate, sent)
	}
	if tc.n.Load() == 0 {
		t.Fatal("the throttled producer was never told a throttle time")
	}
	if n := promtest.ToFloat64(b.metrics.throttled.WithLabelValues("producer_byte_rate")); n == 0 {
		t.Fatal("tandem_broker_throttled_requests_total{quota=producer_byte_rate} is 0")
	}

	// The same bytes through a client without a quota: never throttled.
	var free throttleCounter
	fast := newClient(t, addr, kgo.ClientID("fast-app"), kgo.WithHooks(&free), kgo.ProducerLinger(0))
	for range sent / len(value) {
		// One batch each, as the throttled producer's, so that the
		// consumer below cannot get many records in one batch.
		if err := fast.ProduceSync(ctx, &kgo.Record{Topic: "q", Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if free.n.Load() != 0 {
		t.Fatalf("a client without a quota was throttled %d times", free.n.Load())
	}

	// The consumer: small fetches, 3 s, far less than the topic holds.
	var ct throttleCounter
	cons := newClient(t, addr, kgo.ClientID(slow), kgo.WithHooks(&ct), kgo.ConsumeTopics("q"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<10), kgo.FetchMaxPartitionBytes(64<<10))
	read := 0
	deadline = time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithDeadline(ctx, deadline)
		fs := cons.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { read += len(r.Value) })
	}
	if read >= 2*sent || read > 1_500_000 || ct.n.Load() == 0 {
		t.Fatalf("a consumer with a %d B/s quota read %d of %d bytes in 3 s, throttled %d times", rate, read, 2*sent, ct.n.Load())
	}

	// Restart: the quotas come back from the WAL; DescribeClientQuotas
	// lists them.
	b.Close()
	_, addr = startBroker(t, dir)
	adm = kadm.NewClient(newClient(t, addr))
	described, err := adm.DescribeClientQuotas(ctx, false, []kadm.DescribeClientQuotaComponent{{Type: "client-id", MatchName: &slow}})
	if err != nil {
		t.Fatal(err)
	}
	if len(described) != 1 || len(described[0].Values) != 2 {
		t.Fatalf("after a restart: %+v", described)
	}
	alterQuota(t, adm, kadm.ClientQuotaEntity{{Type: "client-id", Name: &slow}}, "producer_byte_rate", 0, true)
	described, err = adm.DescribeClientQuotas(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(described) != 1 || len(described[0].Values) != 1 || described[0].Values[0].Key != "consumer_byte_rate" {
		t.Fatalf("after removing the producer quota: %+v", described)
	}
}

// Unsupported quotas and entity types are refused with a reason, entry by
// entry; with ValidateOnly nothing is stored.
func TestAlterClientQuotasValidates(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	req := kmsg.NewPtrAlterClientQuotasRequest()
	entry := func(typ string, name *string, key string, v float64) kmsg.AlterClientQuotasRequestEntry {
		e := kmsg.NewAlterClientQuotasRequestEntry()
		ent := kmsg.NewAlterClientQuotasRequestEntryEntity()
		ent.Type, ent.Name = typ, name
		e.Entity = append(e.Entity, ent)
		op := kmsg.NewAlterClientQuotasRequestEntryOp()
		op.Key, op.Value = key, v
		e.Ops = append(e.Ops, op)
		return e
	}
	alice := "alice"
	req.Entries = []kmsg.AlterClientQuotasRequestEntry{
		entry("user", &alice, "request_percentage", 50),
		entry("ip", nil, "connection_creation_rate", 5),
		entry("user", &alice, "producer_byte_rate", 0.5),
		entry("user", nil, "producer_byte_rate", 1<<20),
	}
	req.ValidateOnly = true
	resp, err := req.RequestWith(context.Background(), newClient(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"not supported", "ip quotas", "whole number", ""} {
		e := resp.Entries[i]
		if want == "" {
			if e.ErrorCode != 0 {
				t.Errorf("entry %d: %v", i, kerr.ErrorForCode(e.ErrorCode))
			}
			continue
		}
		if !errors.Is(kerr.ErrorForCode(e.ErrorCode), kerr.InvalidRequest) || e.ErrorMessage == nil || !strings.Contains(*e.ErrorMessage, want) {
			t.Errorf("entry %d: %v %v, want INVALID_REQUEST mentioning %q", i, kerr.ErrorForCode(e.ErrorCode), e.ErrorMessage, want)
		}
	}
	if b.quotas.Len() != 0 {
		t.Fatalf("ValidateOnly stored %d entities", b.quotas.Len())
	}
}
