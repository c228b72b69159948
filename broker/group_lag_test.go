package broker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tandem_broker_consumer_group_lag shows, per group and topic, how many
// records lie between the group's committed offsets and the high
// watermarks: it grows as producers write, shrinks as the group commits,
// and goes when the topic does.
func TestConsumerGroupLagMetric(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	ctx := t.Context()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("orders"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	produce := func(part int32, n int) {
		t.Helper()
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: part, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit := func(group string, at map[int32]int64) {
		t.Helper()
		var os kadm.Offsets
		for p, o := range at {
			os.AddOffset("orders", p, o, -1)
		}
		if err := adm.CommitAllOffsets(ctx, group, os); err != nil {
			t.Fatal(err)
		}
	}
	// lags reads the metric: group/topic -> lag.
	lags := func() map[string]float64 {
		t.Helper()
		mfs, err := b.metrics.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "tandem_broker_consumer_group_lag" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				out[labels["group"]+"/"+labels["topic"]] = m.GetGauge().GetValue()
			}
		}
		return out
	}
	check := func(when string, want map[string]float64) {
		t.Helper()
		got := lags()
		if len(got) != len(want) {
			t.Fatalf("%s: lag %v, want %v", when, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: lag %v, want %v", when, got, want)
			}
		}
	}

	check("with no group", map[string]float64{})
	produce(0, 6)
	produce(1, 4)
	commit("billing", map[int32]int64{0: 4, 1: 4})
	commit("audit", map[int32]int64{0: 0})
	check("after the commits", map[string]float64{"billing/orders": 2, "audit/orders": 6})
	produce(1, 3)
	check("after three more records", map[string]float64{"billing/orders": 5, "audit/orders": 6})
	commit("billing", map[int32]int64{0: 6, 1: 7})
	check("after billing caught up", map[string]float64{"billing/orders": 0, "audit/orders": 6})
	if _, err := adm.DeleteTopic(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	check("after the topic was deleted", map[string]float64{})
}
