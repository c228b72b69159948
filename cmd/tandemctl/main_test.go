package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

func ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	t.Logf("tandemctl %s\n%s%s(err: %v)", strings.Join(args, " "), out.String(), errOut.String(), err)
	return out.String(), err
}

func TestStatusAndVerify(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	c.WaitLeader().Produce(t, 50, 100)
	c.WaitCaughtUp(50)

	// The followers' brokers hold the 50 entries; their acks reach the
	// leader a moment later.
	var out string
	testutil.Eventually(t, 10*time.Second, func() error {
		var err error
		if out, err = ctl(t, "--sidecar", c.Peers[1], "status"); err != nil {
			return err
		}
		if n := strings.Count(out, "streaming"); n != 2 {
			return fmt.Errorf("status shows %d streaming replicas, want 2", n)
		}
		return nil
	})
	for _, want := range []string{"role leader", "commit 50", "NODE", "LAG_ENTRIES", "IN_ISR"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q", want)
		}
	}

	out, err := ctl(t, "--sidecar", c.Peers[2], "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"role follower", "streaming yes", "heard from leader ", "last 50 (epoch 1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("follower status output lacks %q", want)
		}
	}
	if strings.Contains(out, "heard from leader never") {
		t.Error("a streaming follower says it never heard from its leader")
	}

	out, err = ctl(t, "--sidecar", c.Peers[2], "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st adminv1.StatusResponse
	if err := protojson.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json is not a StatusResponse: %v", err)
	}
	if st.GetRole() != adminv1.Role_ROLE_FOLLOWER || st.GetLastLsn() != 50 {
		t.Errorf("follower status = %v", &st)
	}

	out, err = ctl(t, "--sidecar", c.Peers[1], "verify")
	if err != nil || !strings.Contains(out, "identical: 3 nodes, LSNs 1..50") {
		t.Fatalf("verify: %v", err)
	}
	if _, err := ctl(t, "--sidecar", c.Peers[1], "verify", "--upto", "20"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl(t, "--sidecar", c.Peers[1], "verify", "--upto", "51"); err == nil {
		t.Fatal("verify beyond the common end succeeded")
	}
}

func TestVerifyDetectsDifference(t *testing.T) {
	a := sidecartest.NewCluster(t, 1, 1, nil)
	b := sidecartest.NewCluster(t, 1, 1, nil)
	c := sidecartest.NewCluster(t, 1, 1, nil)
	a.StartAll()
	b.StartAll()
	c.StartAll()
	a.WaitLeader().Produce(t, 10, 100)
	c.WaitLeader().Produce(t, 10, 100)
	bl := b.WaitLeader()
	bl.Produce(t, 9, 100)
	bl.Produce(t, 1, 101) // one entry differs
	a.WaitCaughtUp(10)
	b.WaitCaughtUp(10)
	c.WaitCaughtUp(10)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", a.Peers[1], b.Peers[1], c.Peers[1])
	out, err := ctl(t, "verify", "--peers", peers)
	if !errors.Is(err, errDiffer) || !strings.Contains(out, "DIFFERENT") {
		t.Fatalf("verify of different WALs: %v", err)
	}
	// It finds the entry that differs, and who holds which version.
	if !strings.Contains(out, "the first entry that differs is LSN 10: node(s) 1,3 hold one version of it, node(s) 2 another") ||
		!strings.Contains(err.Error(), "from LSN 10") {
		t.Fatalf("verify did not name LSN 10:\n%s%v", out, err)
	}
	if _, err := ctl(t, "verify", "--peers", peers, "--upto", "9"); err != nil {
		t.Fatalf("verify of the identical prefix: %v", err)
	}
}

func TestPromoteStandaloneRefused(t *testing.T) {
	c := sidecartest.NewCluster(t, 1, 1, nil)
	c.StartAll()
	_, err := ctl(t, "--sidecar", c.Peers[1], "promote", "--force")
	if err == nil || !strings.Contains(err.Error(), "FailedPrecondition") || !strings.Contains(err.Error(), "standalone") {
		t.Fatalf("promote: %v, want FailedPrecondition for a standalone node", err)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"status", "extra"},
		{"forget-isr", "--cluster-id", "c"},
		{"forget-isr", "--etcd-endpoints", "http://127.0.0.1:2379"},
		{"forget-isr", "--etcd-endpoints", "http://127.0.0.1:2379", "--cluster-id", "c", "--etcd-prefix", "/p/"},
		{"forget-isr", "--etcd-endpoints", "http://127.0.0.1:2379", "--cluster-id", "c", "--wait", "-1s"}} {
		if _, err := ctl(t, args...); !errors.As(err, new(usageError)) {
			t.Errorf("tandemctl %v: %v, want a usage error", args, err)
		}
	}
}

// The STATE column is the sidecar's Replica.state; a sidecar from before
// that field leaves it unset, and the column falls back to what the
// positions say.
func TestReplicaStateColumn(t *testing.T) {
	tests := []struct {
		r    *adminv1.Replica
		want string
	}{
		{&adminv1.Replica{Connected: true, LagEntries: 3, State: adminv1.ReplicaState_REPLICA_STATE_STREAMING}, "streaming"},
		{&adminv1.Replica{Connected: true, State: adminv1.ReplicaState_REPLICA_STATE_CATCHUP}, "catchup"},
		{&adminv1.Replica{State: adminv1.ReplicaState_REPLICA_STATE_DISCONNECTED}, "disconnected"},
		{&adminv1.Replica{Connected: true, LagEntries: 3}, "catchup"},
		{&adminv1.Replica{Connected: true}, "streaming"},
		{&adminv1.Replica{}, "disconnected"},
	}
	for _, tt := range tests {
		if got := replicaState(tt.r); got != tt.want {
			t.Errorf("replicaState(%v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}
