package e2e

import (
	"slices"
	"sort"
	"testing"
	"time"
)

// librdkafka's transactional producer (confluent-kafka-python on Debian's
// librdkafka) on three real nodes: bootstrapped on a follower, it finds the
// leader as its coordinator, commits and aborts transactions that also
// carry a consumer group's offsets (send_offsets_to_transaction), and
// librdkafka consumers on the other follower read exactly the committed
// values with read_committed and every value with read_uncommitted. The
// group's offset is the one of the last committed transaction.
func TestTransactionsLibrdkafka(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	const topic = "txn-librdkafka"
	createTxnTopic(t, c, topic, 3)
	script := clientScript(t, "librdkafka_transactions.py")
	var produced struct {
		Committed []string `json:"committed"`
		Aborted   []string `json:"aborted"`
	}
	runScript(t, 120*time.Second, &produced, python, script, "--bootstrap", c.node(2).kafka, "--topic", topic,
		"--id", "rdk-app", "--plan", "cacac", "--per-txn", "4", "--group", "rdk-group", "--input", topic)
	if len(produced.Committed) != 12 || len(produced.Aborted) != 8 {
		t.Fatalf("the producer reports %d committed and %d aborted values, want 12 and 8", len(produced.Committed), len(produced.Aborted))
	}
	type consumed struct {
		Values   []string `json:"values"`
		TimedOut bool     `json:"timed_out"`
	}
	read := func(uncommitted bool) []string {
		t.Helper()
		args := []string{python, script, "--bootstrap", c.node(3).kafka, "--topic", topic, "--consume",
			"--count", "100", "--timeout", "8"}
		if uncommitted {
			args = append(args, "--uncommitted")
		}
		var got consumed
		runScript(t, 60*time.Second, &got, args...)
		sort.Strings(got.Values)
		return got.Values
	}
	want := slices.Clone(produced.Committed)
	sort.Strings(want)
	if got := read(false); !slices.Equal(got, want) {
		t.Fatalf("read_committed on node 3 got %d values %v, want the %d committed ones %v", len(got), got, len(want), want)
	}
	all := append(slices.Clone(produced.Committed), produced.Aborted...)
	sort.Strings(all)
	if got := read(true); !slices.Equal(got, all) {
		t.Fatalf("read_uncommitted on node 3 got %d values, want all %d", len(got), len(all))
	}
	var off struct {
		Offset int64 `json:"offset"`
	}
	runScript(t, 60*time.Second, &off, python, script, "--bootstrap", c.node(3).kafka, "--topic", topic,
		"--offsets", "--group", "rdk-group")
	if off.Offset != 5 {
		t.Fatalf("rdk-group's committed offset %d, want 5 (the last committed transaction's; aborted ones sent 2 and 4)", off.Offset)
	}
}
