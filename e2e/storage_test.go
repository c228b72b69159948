package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"

	"github.com/tandem-io/tandem/internal/testutil"
)

// usedBytes is how much of the file system holding dir is in use.
func usedBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return (fs.Blocks - fs.Bfree) * uint64(fs.Bsize)
}

// TestLeaderWithFullDiskHandsOver: automatic failover through etcd, each
// node's data directory on a tmpfs of its own. The leader's file system is
// shrunk to a few MiB above what it holds, and acks=all writes
// (min.insync.replicas=2) fill it. The leader's broker reports that it
// cannot write its WAL; the leader's sidecar says so (tandemctl status,
// readiness) and resigns after a lease TTL; an in-sync follower is elected
// and the same producer's writes go on there. No acknowledged write is
// lost or duplicated. Once the old leader's file system is grown, the node
// follows the new leader, catches up and holds the same log.
func TestLeaderWithFullDiskHandsOver(t *testing.T) {
	url := startEtcd(t)
	c := startCluster(t, clusterOpts{
		sidecarFlags: etcdSidecarFlags(url),
		brokerFlags:  []string{"--min-insync-replicas", "2", "--segment-bytes", strconv.Itoa(1 << 20)},
		prepare:      func(n *node) { testutil.MountTmpfs(t, filepath.Join(n.dir, "data"), 256<<20) },
	})
	old, _ := c.waitLeader(30 * time.Second)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(old) })
	c.waitElectable(url)
	const topic = "full-disk"
	c.createTopicRetry(topic)

	cl := kclient(t, c.kafkaAddrs(), plain, kgo.RecordDeliveryTimeout(90*time.Second), kgo.RetryTimeout(90*time.Second))
	filler := strings.Repeat("x", 2000)
	var acked []string
	failed := 0
	produce := func(from, n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "v-%06d-%s", from+i, filler)}
		}
		for _, r := range cl.ProduceSync(ctxTimeout(t, 2*time.Minute), recs...) {
			if r.Err != nil {
				failed++
				continue
			}
			acked = append(acked, string(r.Record.Value[:8]))
		}
	}
	produce(0, 100)
	if len(acked) != 100 {
		t.Fatalf("%d of the first 100 writes acknowledged, want all", len(acked))
	}

	data := filepath.Join(c.node(old).dir, "data")
	testutil.ResizeTmpfs(t, data, usedBytes(t, data)+3<<20)
	t.Logf("node %d leads; its file system now has about 3 MiB free", old)

	// Write until another node leads. Each batch waits while the leader
	// refuses writes (KAFKA_STORAGE_ERROR is retriable): the producer goes
	// on once the new leader takes them.
	next, leader := 100, 0
	deadline := time.Now().Add(2 * time.Minute)
	for leader == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no other node leads 2 minutes after node %d's disk filled (%d writes acknowledged, %d failed)", old, len(acked), failed)
		}
		produce(next, 200)
		next += 200
		if id, _ := c.leaderNow(time.Second); id != 0 && id != old {
			leader = id
		}
	}
	t.Logf("node %d leads after %d writes (%d acknowledged, %d failed)", leader, next, len(acked), failed)
	if log := c.node(old).side.Log(); !strings.Contains(log, "resigning so that an in-sync follower can lead") {
		t.Fatalf("node %d's sidecar did not resign for its broker's storage; its log ends:\n%s", old, c.node(old).side.LogTail(30))
	}

	// The old leader says why it is out of service.
	st, err := c.status(old)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.GetStorageError(), "no space left on device") || st.GetStorageFailingSince() == nil || st.GetReady() {
		t.Fatalf("node %d with a full disk: storage error %q since %v, ready %v; want ENOSPC, a time, not ready",
			old, st.GetStorageError(), st.GetStorageFailingSince(), st.GetReady())
	}
	out, err := exec.Command(testutil.Bin(t, "tandemctl"), "--sidecar", c.node(old).sidecar, "status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "STORAGE FAILING") || !strings.Contains(string(out), "no space left on device") {
		t.Fatalf("tandemctl status of node %d: %v\n%s\nwant STORAGE FAILING ... no space left on device", old, err, out)
	}

	produce(next, 200)
	next += 200
	check := func(id int) {
		t.Helper()
		var got []string
		for _, v := range readValues(t, c, id, topic) {
			got = append(got, v[:8])
		}
		requireAckedStored(t, fmt.Sprintf("node %d", id), got, acked)
	}
	check(leader)

	// Room again: the old leader follows, catches up and verifies identical.
	testutil.ResizeTmpfs(t, data, 256<<20)
	testutil.Eventually(t, 90*time.Second, func() error {
		st, err := c.status(old)
		if err != nil {
			return err
		}
		if st.GetStorageError() != "" {
			return fmt.Errorf("node %d still reports %q", old, st.GetStorageError())
		}
		return c.inSync(leader)
	})
	produce(next, 10)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	c.mustVerify(leader)
	check(old)
	if failed > 0 {
		t.Logf("%d writes failed (the client gave up on them; none was acknowledged)", failed)
	}
}
