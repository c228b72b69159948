package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// `tandemctl topics` creates a topic with configs, lists and describes
// it, changes its configs and partition count, refuses bad configs and a
// second topic of the same name, does not create a topic it is asked to
// describe, and deletes it.
func TestTopicsCommand(t *testing.T) {
	addr := startKafkaBroker(t, nil)
	topics := func(args ...string) string {
		t.Helper()
		out, err := ctl(t, append([]string{"--timeout", "30s", "topics", "--bootstrap", addr}, args...)...)
		if err != nil {
			t.Fatalf("topics %v: %v", args, err)
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		_, err := ctl(t, append([]string{"topics", "--bootstrap", addr}, args...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("topics %v: err %v, want one that says %q", args, err, want)
		}
	}
	matches := func(out string, lines ...string) { t.Helper(); matchLines(t, out, lines...) }
	if out := topics(); out != "no topics\n" {
		t.Fatalf("with no topic: %q", out)
	}
	out := topics("--create", "orders", "--partitions", "2", "--config", "min.insync.replicas=1", "--config", "cleanup.policy=compact")
	if out != "created topic orders: 2 partition(s), replication factor 1\n" {
		t.Fatalf("create printed %q", out)
	}
	matches(topics(), `TOPIC +PARTITIONS +REPLICAS +MIN.INSYNC +UNDER-REPLICATED`, `orders +2 +1 +1 +0`)
	matches(topics("orders"),
		`topic orders: 2 partition\(s\), replication factor 1, min.insync.replicas 1, id \S+`,
		`configs: cleanup.policy=compact min.insync.replicas=1`,
		`PARTITION +LEADER +REPLICAS +ISR`, `0 +1 +1 +1`, `1 +1 +1 +1`)

	// --json gives the same facts to scripts.
	var infos []struct {
		Topic             string            `json:"topic"`
		PartitionCount    int               `json:"partition_count"`
		ReplicationFactor int               `json:"replication_factor"`
		MinInsyncReplicas int               `json:"min_insync_replicas"`
		Configs           map[string]string `json:"configs"`
		Partitions        []struct {
			Partition int32   `json:"partition"`
			Leader    int32   `json:"leader"`
			Replicas  []int32 `json:"replicas"`
			ISR       []int32 `json:"isr"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(topics("--json")), &infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Topic != "orders" || infos[0].PartitionCount != 2 || infos[0].ReplicationFactor != 1 ||
		infos[0].MinInsyncReplicas != 1 || infos[0].Configs["cleanup.policy"] != "compact" || len(infos[0].Partitions) != 2 ||
		infos[0].Partitions[1].Partition != 1 || infos[0].Partitions[1].Leader != 1 || fmt.Sprint(infos[0].Partitions[1].ISR) != "[1]" {
		t.Fatalf("topics --json: %+v", infos)
	}

	// kafka-topics.sh's partition filters. One replica, in sync, with
	// min.insync.replicas 1: at the minimum, and neither under-replicated
	// nor under the minimum.
	if out := topics("--under-replicated-partitions"); out != "no partition is under-replicated (fewer in-sync replicas than replicas)\n" {
		t.Fatalf("--under-replicated-partitions printed %q", out)
	}
	matches(topics("--at-min-isr-partitions"), `TOPIC +PARTITION +LEADER +REPLICAS +ISR +MIN.INSYNC`, `orders +0 +1 +1 +1 +1`, `orders +1 +1 +1 +1 +1`)
	topics("--create", "strict", "--config", "min.insync.replicas=2")
	out = topics("--under-min-isr-partitions")
	matches(out, `strict +0 +1 +1 +1 +2`)
	if strings.Contains(out, "orders") {
		t.Fatalf("--under-min-isr-partitions lists a partition of orders:\n%s", out)
	}
	if out := topics("--under-min-isr-partitions", "--json", "orders"); out != "[]\n" {
		t.Fatalf("--under-min-isr-partitions --json orders printed %q", out)
	}
	if out := topics("--unavailable-partitions"); !strings.HasPrefix(out, "no partition is without a leader") {
		t.Fatalf("--unavailable-partitions printed %q", out)
	}
	topics("--delete", "strict")

	out = topics("orders", "--alter", "--config", "retention.ms=3600000", "--delete-config", "cleanup.policy", "--partitions", "3")
	if out != "changed the configs of topic orders\ntopic orders has 3 partitions\n" {
		t.Fatalf("alter printed %q", out)
	}
	matches(topics("orders"),
		`topic orders: 3 partition\(s\), replication factor 1, min.insync.replicas 1, id \S+`,
		`configs: min.insync.replicas=1 retention.ms=3600000`, `2 +1 +1 +1`)
	topics("--alter", "orders", "--delete-config", "min.insync.replicas", "--delete-config", "retention.ms")
	matches(topics("orders"), `configs: none set on the topic \(the nodes' defaults apply\)`)

	fails("INVALID_CONFIG", "--alter", "orders", "--config", "cleanup.policy=sometimes")
	fails("TOPIC_ALREADY_EXISTS", "--create", "orders")
	fails("INVALID_PARTITIONS", "--alter", "orders", "--partitions", "2")
	fails("nope", "nope")
	if out := topics(); strings.Contains(out, "nope") {
		t.Fatalf("describing a missing topic created it:\n%s", out)
	}
	if out := topics("--delete", "orders"); out != "deleted topic orders\n" {
		t.Fatalf("delete printed %q", out)
	}
	if out := topics(); out != "no topics\n" {
		t.Fatalf("after the delete: %q", out)
	}
	fails("UNKNOWN_TOPIC", "--delete", "orders")

	for _, args := range [][]string{
		{"--create"},                                                 // no topic
		{"--create", "a", "b"},                                       // two topics
		{"--create", "a", "--delete"},                                // two modes
		{"--create", "a", "--partitions", "0"},                       // no partition
		{"--create", "a", "--config", "novalue"},                     // not KEY=VALUE
		{"--create", "a", "--config", "x=1", "--config", "x=2"},      // twice
		{"--alter", "a"},                                             // nothing to change
		{"--delete-config", "x", "a"},                                // without --alter
		{"--partitions", "3", "a"},                                   // without --create or --alter
		{"--create", "a", "--json"},                                  // JSON of a change
		{"--under-replicated-partitions", "--delete", "a"},           // a filter on a change
		{"--under-replicated-partitions", "--at-min-isr-partitions"}, // two filters
	} {
		if _, err := ctl(t, append([]string{"topics", "--bootstrap", addr}, args...)...); !isUsage(err) {
			t.Errorf("topics %v: err %v, want a usage error", args, err)
		}
	}
}

// isUsage reports whether err is a command-line mistake.
func isUsage(err error) bool {
	_, ok := err.(usageError)
	return ok
}

// matchLines fails t for each regular expression in lines that matches no
// whole line of out.
func matchLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !regexp.MustCompile(`(?m)^` + l + `$`).MatchString(out) {
			t.Errorf("no line matches %s in\n%s", l, out)
		}
	}
}
