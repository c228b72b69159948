package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestClientQuotasAcrossNodes: a producer quota set through a follower
// (kadm's AlterClientQuotas goes to any broker) reaches every node; a
// kafka-python producer with that client id is held to it by the leader
// (it takes seconds to send what an unthrottled one sends at once) and
// loses nothing; removing the quota through the other follower removes it
// everywhere.
func TestClientQuotasAcrossNodes(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	const topic, client = "metered", "metered-app"
	c.createTopic(topic)
	ctx := ctxTimeout(t, 3*time.Minute)
	name := client
	entity := kadm.ClientQuotaEntity{{Type: "client-id", Name: &name}}
	const rate = 100_000 // bytes/s
	alter := func(via int, remove bool) {
		t.Helper()
		adm := kadm.NewClient(kclient(t, []string{c.node(via).kafka}))
		res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
			Entity: entity, Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: rate, Remove: remove}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Err != nil {
			t.Fatalf("AlterClientQuotas through node %d: %+v", via, res)
		}
	}
	// quotasOn is what one node says its quotas are.
	quotasOn := func(n *node) (string, error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(n.kafka))
		if err != nil {
			return "", err
		}
		defer cl.Close()
		req := kmsg.NewPtrDescribeClientQuotasRequest()
		resp, err := req.RequestWith(ctx, cl.SeedBrokers()[0]) // this node, not any broker
		if err != nil {
			return "", err
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return "", err
		}
		out := ""
		for _, e := range resp.Entries {
			for _, ent := range e.Entity {
				out += ent.Type + "=" + *ent.Name
			}
			for _, v := range e.Values {
				out += fmt.Sprintf(" %s=%.0f", v.Key, v.Value)
			}
		}
		return out, nil
	}
	everyNodeHas := func(want string) {
		t.Helper()
		for _, n := range c.nodes {
			testutil.Eventually(t, 20*time.Second, func() error {
				got, err := quotasOn(n)
				if err == nil && got != want {
					err = fmt.Errorf("node %s has quotas %q, want %q", n.kafka, got, want)
				}
				return err
			})
		}
	}

	alter(2, false)
	everyNodeHas("client-id=metered-app producer_byte_rate=" + strconv.Itoa(rate))

	// 150 records of 10 KB: the window lets about 10 s worth (1 MB) go at
	// once; the rest must wait until that burst has left the 11 s window
	// (about 11 s in all, as with Kafka's windows).
	start := time.Now()
	var res pyProduceResult
	runScript(t, 120*time.Second, &res, python, clientScript(t, "kafka_python_produce.py"),
		"--bootstrap", c.node(3).kafka, "--topic", topic, "--count", "150", "--acks", "all",
		"--prefix", "q-", "--value-bytes", "10000", "--client-id", client)
	took := time.Since(start)
	if res.Sent != 150 {
		t.Fatalf("kafka-python sent %d of 150", res.Sent)
	}
	if took < 3*time.Second {
		t.Fatalf("1.5 MB at a quota of %d B/s took %v: not throttled", rate, took)
	}
	t.Logf("kafka-python sent 1.5 MB under a %d B/s quota in %v", rate, took.Round(100*time.Millisecond))

	// The same through another client id: no quota.
	runScript(t, 120*time.Second, &res, python, clientScript(t, "kafka_python_produce.py"),
		"--bootstrap", c.node(3).kafka, "--topic", topic, "--count", "150", "--acks", "all",
		"--prefix", "free-", "--value-bytes", "10000")
	want := append(seqValues("q-", 150), seqValues("free-", 150)...)
	c.caughtUp(30*time.Second, 1, 2, 3)
	got := readValues(t, c, 2, topic)
	if len(got) != len(want) {
		t.Fatalf("node 2 has %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if len(got[i]) != 10000 || got[i][:len(want[i])] != want[i] {
			t.Fatalf("record %d is %.20q..., want %q padded to 10000 bytes", i, got[i], want[i])
		}
	}

	alter(3, true)
	everyNodeHas("")
}
