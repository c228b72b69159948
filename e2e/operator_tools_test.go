package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestOperatorToolsOnCluster: what an operator sees of a real three-node
// cluster through `tandemctl topics`, `groups`, `offsets`, `log-dirs` and
// the brokers' /metrics, asking followers:
//   - a topic created through a follower with min.insync.replicas=2 has
//     every node as a replica and in its ISR;
//   - after a kafka-python consumer group read and committed part of it,
//     `tandemctl groups` and every node's tandem_broker_consumer_group_lag
//     give the same lag;
//   - with one follower SIGKILLed, every partition shows under-replicated
//     and at min.insync.replicas (the list and kafka-topics.sh's partition
//     filters), and kafka-python's acks=all writes still succeed (two in
//     sync); back, none is;
//   - a reset of the group to the earliest offsets makes the next
//     kafka-python consumer of the group read everything;
//   - `tandemctl offsets` gives the partitions' offsets, and deleting one
//     partition's records leaves a new group only the others' records;
//   - `tandemctl log-dirs` shows every node holding the same bytes of each
//     partition.
func TestOperatorToolsOnCluster(t *testing.T) {
	metrics := map[int]string{1: testutil.FreeAddr(t), 2: testutil.FreeAddr(t), 3: testutil.FreeAddr(t)}
	c := startCluster(t, clusterOpts{
		brokerFlagsFor: func(id int) []string { return []string{"--metrics-listen", metrics[id]} },
		sidecarFlags:   []string{"--replica-lag-time-max", "2s"},
	})
	const topic, group = "ops", "ops-readers"
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(testutil.Bin(t, "tandemctl"), append([]string{"--timeout", "30s"}, args...)...).CombinedOutput()
		t.Logf("tandemctl %s\n%s", strings.Join(args, " "), out)
		return string(out), err
	}
	mustCtl := func(args ...string) string {
		t.Helper()
		out, err := ctl(args...)
		if err != nil {
			t.Fatalf("tandemctl %v: %v", args, err)
		}
		return out
	}
	f2, f3 := c.node(2).kafka, c.node(3).kafka

	out := mustCtl("topics", "--bootstrap", f2, "--create", topic, "--partitions", "3", "--config", "min.insync.replicas=2")
	if !strings.Contains(out, "3 partition(s), replication factor 3") {
		t.Fatalf("create printed %q", out)
	}
	// The list line of the topic: partitions, replicas, min.insync.replicas
	// and under-replicated partitions.
	topicLine := func(under int) error {
		out, err := ctl("topics", "--bootstrap", f3)
		if err != nil {
			return err
		}
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%s +3 +3 +2 +%d$`, topic, under)).MatchString(out) {
			return fmt.Errorf("the topic list does not show %d under-replicated partitions:\n%s", under, out)
		}
		return nil
	}
	testutil.Eventually(t, 20*time.Second, func() error { return topicLine(0) })

	follower := &broker{t: t, Addr: f2}
	pyProduce(t, follower, topic, 30, "all", "a-")
	read := pyConsume(t, follower, topic, 10, group)
	if read.Count != 10 {
		t.Fatalf("the group's consumer read %d records, want 10", read.Count)
	}
	// tandemctl groups, asked of a follower, describes the group per
	// partition: what it committed (kafka-python commits the partitions it
	// read from), the end (10 records each: 30 written) and the lag. A
	// partition it did not commit on has no lag ("-"), as Kafka's
	// kafka-consumer-groups.sh shows it (until 2026-12-07 it counted from
	// the partition's start), and the group's total leaves it out.
	out = mustCtl("groups", "--bootstrap", f2, group)
	rows := regexp.MustCompile(`(?m)^`+topic+` +(\d) +(\S+) +(\d+) +(\S+) `).FindAllStringSubmatch(out, -1)
	if len(rows) != 3 {
		t.Fatalf("the describe shows %d partitions, want 3", len(rows))
	}
	var committedLag, end int64
	for _, r := range rows {
		var e, l int64
		fmt.Sscan(r[3], &e)
		want, ok := read.Committed[r[1]]
		if ok {
			fmt.Sscan(r[4], &l)
		}
		switch {
		case ok && r[2] != fmt.Sprint(want):
			t.Fatalf("partition %s: committed %s, the consumer committed %d", r[1], r[2], want)
		case ok && l != e-want:
			t.Fatalf("partition %s: lag %s, want %d - %d", r[1], r[4], e, want)
		case !ok && (r[2] != "-" || r[4] != "-"):
			t.Fatalf("partition %s (no commit): committed %s, lag %s; want - and -", r[1], r[2], r[4])
		case ok:
			committedLag += l
		}
		end += e
	}
	if end != 30 {
		t.Fatalf("the partitions end at %d records in all, want 30", end)
	}
	out = mustCtl("groups", "--bootstrap", f3)
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^%s +classic +Empty +0 +%d$`, group, committedLag)).MatchString(out) {
		t.Fatalf("the group list does not show lag %d (the partitions it committed on)", committedLag)
	}
	// Every node's /metrics reports the lag of the partitions the group
	// committed on.
	sample := fmt.Sprintf(`tandem_broker_consumer_group_lag{group=%q,topic=%q}`, group, topic)
	testutil.Eventually(t, 20*time.Second, func() error {
		for id, addr := range metrics {
			m, err := scrape(addr)
			if err != nil {
				return err
			}
			if m[sample] != float64(committedLag) {
				return fmt.Errorf("node %d: %s = %v, want %d", id, sample, m[sample], committedLag)
			}
		}
		return nil
	})

	// One follower dies: every partition is under-replicated, and acks=all
	// writes go on with two nodes in sync.
	c.node(3).killPair()
	f3 = c.node(1).kafka
	testutil.Eventually(t, 30*time.Second, func() error { return topicLine(3) })
	// tandemctl log-dirs names the node that does not answer, and fails.
	if out, err := ctl("log-dirs", "--bootstrap", f2); err == nil ||
		!regexp.MustCompile(`(?m)^3 +.*connection refused$`).MatchString(out) {
		t.Fatalf("log-dirs with node 3 down: %v", err)
	}
	// kafka-topics.sh's filters name them: each has 3 replicas and an ISR
	// of the two live nodes, which is min.insync.replicas: one more loss
	// and acks=all writes fail. None is under the minimum yet.
	partitionRows := func(out string) (n int) {
		for _, m := range regexp.MustCompile(`(?m)^`+topic+` +\d +\d +(\S+) +(\S+) +2$`).FindAllStringSubmatch(out, -1) {
			if len(strings.Split(m[1], ",")) == 3 && len(strings.Split(m[2], ",")) == 2 && !strings.Contains(m[2], "3") {
				n++
			}
		}
		return n
	}
	for _, filter := range []string{"--under-replicated-partitions", "--at-min-isr-partitions"} {
		if out := mustCtl("topics", "--bootstrap", f2, filter); partitionRows(out) != 3 {
			t.Fatalf("topics %s does not list the 3 partitions with ISR of nodes 1 and 2", filter)
		}
	}
	if out := mustCtl("topics", "--bootstrap", f2, "--under-min-isr-partitions"); !strings.HasPrefix(out, "no partition is under min.insync.replicas") {
		t.Fatalf("with 2 of 3 in sync and min.insync.replicas=2, --under-min-isr-partitions printed %q", out)
	}
	pyProduce(t, follower, topic, 10, "all", "b-")
	c.node(3).startPair()
	f3 = c.node(3).kafka
	testutil.Eventually(t, 30*time.Second, func() error { return topicLine(0) })
	if out := mustCtl("topics", "--bootstrap", f2, "--under-replicated-partitions"); !strings.HasPrefix(out, "no partition is under-replicated") {
		t.Fatalf("with every node back in sync, --under-replicated-partitions printed %q", out)
	}

	// Reset to the earliest offsets: the group's next consumer reads all 40.
	if out := mustCtl("groups", "--bootstrap", f2, group, "--reset-offsets", "earliest", "--all-topics"); !strings.Contains(out, "not committed") {
		t.Fatalf("the dry run printed %q", out)
	}
	out = mustCtl("groups", "--bootstrap", f2, group, "--reset-offsets", "earliest", "--all-topics", "--execute")
	if !strings.Contains(out, "committed:") {
		t.Fatalf("the reset printed %q", out)
	}
	again := pyConsume(t, follower, topic, 40, group)
	if again.Count != 40 {
		t.Fatalf("after the reset the group's consumer read %d records, want 40", again.Count)
	}
	seen := map[string]bool{}
	for _, r := range again.Records {
		seen[r.Value] = true
	}
	for _, v := range append(seqValues("a-", 30), seqValues("b-", 10)...) {
		if !seen[v] {
			t.Fatalf("after the reset the group's consumer did not read %s", v)
		}
	}

	// tandemctl offsets, asked of followers, gives the leader's offsets:
	// the 40 records start at 0 and are all stable (no transaction).
	offsetRows := func(bootstrap string) map[string][3]int64 {
		t.Helper()
		out := mustCtl("offsets", "--bootstrap", bootstrap, topic)
		rows := map[string][3]int64{}
		for _, m := range regexp.MustCompile(`(?m)^`+topic+` +(\d) +(\d+) +(\d+) +(\d+)$`).FindAllStringSubmatch(out, -1) {
			var r [3]int64
			for i := range r {
				r[i], _ = strconv.ParseInt(m[2+i], 10, 64)
			}
			rows[m[1]] = r
		}
		if len(rows) != 3 {
			t.Fatalf("offsets lists %d partitions of %s, want 3", len(rows), topic)
		}
		return rows
	}
	var total int64
	for p, r := range offsetRows(f2) {
		if r[0] != 0 || r[1] != r[2] {
			t.Fatalf("partition %s: earliest %d, stable %d, latest %d; want 0 and stable = latest", p, r[0], r[1], r[2])
		}
		total += r[2]
	}
	if total != 40 {
		t.Fatalf("the partitions' latest offsets add up to %d, want 40", total)
	}
	// Deleting partition 0's records through a follower: a consumer of a
	// new group reads only the other partitions' records.
	deleted := offsetRows(f3)["0"][2]
	out = mustCtl("offsets", "--bootstrap", f3, "--delete-records-before", "latest", "--execute", topic+":0")
	if !strings.Contains(out, fmt.Sprintf("deleted: the records now start at %s/0 from %d", topic, deleted)) {
		t.Fatalf("the deletion printed %q", out)
	}
	if r := offsetRows(f2)["0"]; r[0] != deleted || r[2] != deleted {
		t.Fatalf("after the deletion partition 0 has earliest %d, latest %d; want both %d", r[0], r[2], deleted)
	}
	fresh := pyConsume(t, follower, topic, int(40-deleted), group+"-fresh")
	if fresh.Count != int(40-deleted) {
		t.Fatalf("after the deletion a new group read %d records, want %d", fresh.Count, 40-deleted)
	}
	for _, r := range fresh.Records {
		if r.Partition == 0 {
			t.Fatalf("after the deletion a new group read %s from partition 0", r.Value)
		}
	}

	// tandemctl log-dirs, asked of a follower: every node answers for its
	// own replicas, and holds as many bytes of each partition as the
	// others (none of partition 0 now).
	testutil.Eventually(t, 20*time.Second, func() error {
		out, err := ctl("log-dirs", "--bootstrap", f2, "--json", topic)
		if err != nil {
			return err
		}
		var nodes []struct {
			Node       int32 `json:"node"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				SizeBytes int64 `json:"size_bytes"`
			} `json:"partitions"`
		}
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			return err
		}
		if len(nodes) != 3 {
			return fmt.Errorf("%d nodes answered, want 3", len(nodes))
		}
		sizes := map[int32][]int64{}
		for _, n := range nodes {
			for _, p := range n.Partitions {
				sizes[p.Partition] = append(sizes[p.Partition], p.SizeBytes)
			}
		}
		for p := range int32(3) {
			s := sizes[p]
			if len(s) != 3 || s[0] != s[1] || s[1] != s[2] || (p == 0) != (s[0] == 0) {
				return fmt.Errorf("partition %d: bytes per node %v, want 3 equal sizes (0 for partition 0 only)", p, s)
			}
		}
		return nil
	})
}
