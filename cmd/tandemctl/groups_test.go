package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// `tandemctl groups` lists a consumer group with its lag, describes it per
// partition, refuses to reset or delete it while it has members, resets
// its offsets (dry run first, then to a time, an offset clamped to the
// partition's end, and the earliest offset) so that a consumer of the
// group starts where the reset put it, and deletes it.
func TestGroupsCommand(t *testing.T) {
	addr := startKafkaBroker(t, nil)
	groups := func(args ...string) string {
		t.Helper()
		out, err := ctl(t, append([]string{"--timeout", "30s", "groups", "--bootstrap", addr}, args...)...)
		if err != nil {
			t.Fatalf("groups %v: %v", args, err)
		}
		return out
	}
	ctx := t.Context()
	if out := groups(); out != "no groups\n" {
		t.Fatalf("with no group: %q", out)
	}

	// orders/0 gets 6 records, the first 3 of them stamped two hours ago;
	// orders/1 gets 4.
	p, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("orders"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := kadm.NewClient(p).CreateTopic(ctx, 2, -1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	for i := range 10 {
		r := &kgo.Record{Partition: int32(i / 6), Value: []byte{byte('a' + i)}}
		if i < 3 {
			r.Timestamp = old
		}
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	consumer := func(more ...kgo.Opt) *kgo.Client {
		t.Helper()
		opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"),
			kgo.ClientID("billing-app"), kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
		c, err := kgo.NewClient(append(opts, more...)...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// poll reads until it has n records (by partition) or 20 s passed.
	poll := func(c *kgo.Client, n int) map[int32]int {
		t.Helper()
		got, total := map[int32]int{}, 0
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for total < n {
			fs := c.PollFetches(pctx)
			if pctx.Err() != nil {
				t.Fatalf("read %d of %d records: %v", total, n, got)
			}
			fs.EachRecord(func(r *kgo.Record) { got[r.Partition]++; total++ })
		}
		return got
	}
	c := consumer()
	poll(c, 10)
	var commitErr error
	c.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{
		"orders": {0: {Epoch: -1, Offset: 4}, 1: {Epoch: -1, Offset: 4}},
	}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		commitErr = err
	})
	if commitErr != nil {
		t.Fatal(commitErr)
	}

	if out := groups(); !regexp.MustCompile(`(?m)^GROUP +TYPE +STATE +MEMBERS +LAG\nbilling +classic +Stable +1 +2\n$`).MatchString(out) {
		t.Fatalf("the list printed\n%s", out)
	}
	out := groups("billing")
	for _, row := range []string{
		`group billing: Stable, protocol type "consumer", assignor \S+, coordinator node 1, 1 member\(s\)`,
		`TOPIC +PARTITION +COMMITTED +END +LAG +MEMBER +CLIENT ID +HOST`,
		`orders +0 +4 +6 +2 +\S+ +billing-app +\S+`,
		`orders +1 +4 +4 +0 +\S+ +billing-app +\S+`,
	} {
		if !regexp.MustCompile(`(?m)^` + row + `$`).MatchString(out) {
			t.Errorf("describe lacks a line matching %s", row)
		}
	}
	// --json gives the same facts to scripts.
	var listed []struct {
		Group   string `json:"group"`
		Type    string `json:"type"`
		State   string `json:"state"`
		Members *int   `json:"members"`
		Lag     *int64 `json:"lag"`
	}
	if err := json.Unmarshal([]byte(groups("--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].Group != "billing" || listed[0].Type != "classic" || listed[0].State != "Stable" ||
		listed[0].Members == nil || *listed[0].Members != 1 || listed[0].Lag == nil || *listed[0].Lag != 2 {
		t.Fatalf("groups --json: %+v", listed)
	}
	var described []struct {
		Group      string `json:"group"`
		Exists     bool   `json:"exists"`
		Lag        *int64 `json:"lag"`
		Partitions []struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			Committed *int64 `json:"committed"`
			End       *int64 `json:"end"`
			Lag       *int64 `json:"lag"`
			ClientID  string `json:"client_id"`
		} `json:"partitions"`
		MemberDetails []struct {
			ClientID string             `json:"client_id"`
			Assigned map[string][]int32 `json:"assigned"`
		} `json:"member_details"`
	}
	if err := json.Unmarshal([]byte(groups("--json", "billing", "nobody")), &described); err != nil {
		t.Fatal(err)
	}
	if len(described) != 2 || !described[0].Exists || *described[0].Lag != 2 || len(described[0].Partitions) != 2 || described[1].Exists {
		t.Fatalf("groups --json billing nobody: %+v", described)
	}
	if p0 := described[0].Partitions[0]; p0.Topic != "orders" || p0.Partition != 0 || *p0.Committed != 4 || *p0.End != 6 || *p0.Lag != 2 || p0.ClientID != "billing-app" {
		t.Fatalf("groups --json billing: orders/0 is %+v", p0)
	}
	if ms := described[0].MemberDetails; len(ms) != 1 || ms[0].ClientID != "billing-app" || fmt.Sprint(ms[0].Assigned) != "map[orders:[0 1]]" {
		t.Fatalf("groups --json billing: members %+v", ms)
	}
	// --members: one line per member, with what it consumes.
	out = groups("billing", "--members")
	for _, row := range []string{
		`group billing: Stable, 1 member\(s\)`,
		`MEMBER +INSTANCE +CLIENT ID +HOST +PARTITIONS +ASSIGNED`,
		`\S+ +- +billing-app +\S+ +2 +orders:0,1`,
	} {
		if !regexp.MustCompile(`(?m)^` + row + `$`).MatchString(out) {
			t.Errorf("--members lacks a line matching %s in\n%s", row, out)
		}
	}

	for _, args := range [][]string{{"--reset-offsets", "earliest", "--all-topics", "billing"}, {"--delete", "billing"}} {
		if _, err := ctl(t, append([]string{"groups", "--bootstrap", addr}, args...)...); err == nil ||
			!strings.Contains(err.Error(), "stop its consumers first") {
			t.Errorf("groups %v with a member: err %v, want a refusal that says to stop the consumers", args, err)
		}
	}
	c.Close() // leaves the group
	if out := groups("billing"); !strings.Contains(out, "group billing: Empty") || !strings.Contains(out, "0 member(s)") {
		t.Fatalf("after the consumer left:\n%s", out)
	}

	// A dry run changes nothing.
	out = groups("billing", "--reset-offsets", "earliest", "--all-topics")
	if !regexp.MustCompile(`(?m)^orders +0 +4 +0\norders +1 +4 +0\nnot committed`).MatchString(out) {
		t.Fatalf("the dry run printed\n%s", out)
	}
	committed := func() map[int32]int64 {
		t.Helper()
		os, err := kadm.NewClient(p).FetchOffsets(ctx, "billing")
		if err != nil {
			t.Fatal(err)
		}
		got := map[int32]int64{}
		os.Each(func(o kadm.OffsetResponse) { got[o.Partition] = o.At })
		return got
	}
	if got := committed(); got[0] != 4 || got[1] != 4 {
		t.Fatalf("after the dry run the group committed %v, want 4 and 4", got)
	}
	// To 90 minutes ago: the first record of orders/0 stamped since then.
	groups("billing", "--reset-offsets", "90m", "--topic", "orders:0", "--execute")
	if got := committed(); got[0] != 3 || got[1] != 4 {
		t.Fatalf("after the reset to 90m ago: %v, want 3 and 4", got)
	}
	// An offset past the end goes to the end.
	groups("billing", "--reset-offsets", "100", "--topic", "orders", "--execute")
	if got := committed(); got[0] != 6 || got[1] != 4 {
		t.Fatalf("after the reset to offset 100: %v, want 6 and 4", got)
	}
	// Back two records, and forward past the end (to the end).
	groups("billing", "--reset-offsets", "-2", "--topic", "orders:0", "--execute")
	groups("billing", "--reset-offsets", "+5", "--topic", "orders:1", "--execute")
	if got := committed(); got[0] != 4 || got[1] != 4 {
		t.Fatalf("after the shifts by -2 and +5: %v, want 4 and 4", got)
	}
	groups("billing", "--reset-offsets", "+2", "--topic", "orders:0", "--execute")
	groups("--reset-offsets", "earliest", "--topic", "orders:1", "--execute", "billing")
	if got := committed(); got[0] != 6 || got[1] != 0 {
		t.Fatalf("after the reset of orders/1 to the earliest: %v, want 6 and 0", got)
	}
	// The group's next consumer starts there: orders/1 again, nothing of
	// orders/0.
	c = consumer()
	got := poll(c, 4)
	c.Close()
	if got[0] != 0 || got[1] != 4 {
		t.Fatalf("after the resets a consumer of the group read %v, want 4 records of orders/1 only", got)
	}

	// A group of the consumer protocol (KIP-848) is listed and described
	// alike.
	c = consumer(kgo.ConsumerGroup("ledger"), kgo.ServerSideBalancer())
	poll(c, 10)
	// It has committed nothing yet: no lag, as Kafka's tool shows it.
	if out := groups(); !regexp.MustCompile(`(?m)^ledger +consumer +Stable +1 +-\n`).MatchString(out) {
		t.Errorf("the list with a consumer-protocol group printed\n%s", out)
	}
	if out := groups("ledger"); !regexp.MustCompile(`(?m)^orders +1 +- +4 +- +\S+ +billing-app +\S+$`).MatchString(out) {
		t.Errorf("describing the consumer-protocol group printed\n%s", out)
	}
	if out := groups("ledger", "--members"); !regexp.MustCompile(`(?m)^\S+ +- +billing-app +\S+ +2 +orders:0,1$`).MatchString(out) {
		t.Errorf("--members of the consumer-protocol group printed\n%s", out)
	}
	c.Close()

	// A group that does not exist yet: described as such, a shift has
	// nothing to move from, and a reset gives it offsets (Kafka's tool
	// does the same).
	if out := groups("fresh"); out != "group fresh: does not exist\n" {
		t.Fatalf("describing a group that does not exist printed %q", out)
	}
	if _, err := ctl(t, "groups", "--bootstrap", addr, "fresh", "--reset-offsets", "-1", "--topic", "orders", "--execute"); err == nil ||
		!strings.Contains(err.Error(), "no committed offset") {
		t.Fatalf("a shift of a group without offsets: err %v", err)
	}
	groups("fresh", "--reset-offsets", "latest", "--topic", "orders", "--execute")
	if out := groups("fresh"); !regexp.MustCompile(`(?m)^orders +0 +6 +6 +0 +- +- +-\norders +1 +4 +4 +0 `).MatchString(out) {
		t.Fatalf("after the reset of a new group:\n%s", out)
	}

	if out := groups("--delete", "billing"); out != "deleted group billing\n" {
		t.Fatalf("delete printed %q", out)
	}
	if out := groups(); strings.Contains(out, "billing") {
		t.Fatalf("after the delete the list printed\n%s", out)
	}
	for _, args := range [][]string{
		{"--reset-offsets", "earliest", "billing"},                            // no partitions named
		{"--reset-offsets", "soon", "--all-topics", "billing"},                // no target
		{"--reset-offsets", "earliest", "--all-topics", "--topic", "x", "g"},  // both
		{"--reset-offsets", "earliest", "--topic", "orders:x", "billing"},     // bad partition
		{"--reset-offsets", "earliest", "--all-topics", "billing", "another"}, // two groups
		{"--delete"},                         // nothing to delete
		{"--execute", "billing"},             // no reset
		{"--members"},                        // no group
		{"--members", "--delete", "billing"}, // members of a change
		{"--json", "--delete", "billing"},    // JSON of a change
		{"--json", "--reset-offsets", "earliest", "--all-topics", "billing"}, // JSON of a change
	} {
		if _, err := ctl(t, append([]string{"groups", "--bootstrap", addr}, args...)...); err == nil {
			t.Errorf("groups %v was accepted", args)
		}
	}
}
