package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// kafkaClusterID asks the broker at addr for the Kafka cluster id
// (Metadata).
func kafkaClusterID(t *testing.T, addr string) string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ClusterID == nil {
		return ""
	}
	return *resp.ClusterID
}

// dirDigest hashes every file under dir (names and contents).
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", strings.TrimPrefix(path, dir), len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// A broker whose data directory belongs to another cluster (a volume
// reused for a new cluster, or mounted on the wrong node) is refused by the
// sidecar before anything is streamed: followed, the other cluster's
// leader would truncate that data and write its own over it. The data stays
// as it was, and the broker attaches again once it runs beside a sidecar of
// its own cluster. Kafka clients see each cluster's own id.
func TestDataDirOfAnotherClusterIsRefused(t *testing.T) {
	blue := startCluster(t, clusterOpts{clusterID: "blue"})
	kgoProduce(t, blue.kafkaAddrs(), "colors", "blue-", 0, 20, kgo.AllISRAcks())
	green := startCluster(t, clusterOpts{clusterID: "green"})
	kgoProduce(t, green.kafkaAddrs(), "colors", "green-", 0, 50, kgo.AllISRAcks())
	for _, c := range []*cluster{blue, green} {
		for _, n := range c.nodes {
			if got := kafkaClusterID(t, n.kafka); got != c.opts.clusterID {
				t.Fatalf("node %d of cluster %s reports Kafka cluster id %q", n.id, c.opts.clusterID, got)
			}
		}
	}
	blue.caughtUp(30*time.Second, 1, 2, 3)

	// Blue's node 3 stops; its data directory is given to green's node 3.
	bn3, gn3 := blue.node(3), green.node(3)
	if err := bn3.stopPair(); err != nil {
		t.Fatal(err)
	}
	if err := gn3.broker.Stop(); err != nil {
		t.Fatal(err)
	}
	blueData := filepath.Join(bn3.dir, "data")
	walBefore := dirDigest(t, filepath.Join(blueData, "wal"))
	intruderAddr := testutil.FreeAddr(t)
	intruder := testutil.Start(t, testutil.ProcessConfig{
		Name: "broker-blue-3-under-green",
		Path: brokerPath(t),
		Args: []string{"--node-id", "3", "--data-dir", blueData, "--listen", intruderAddr, "--advertise", intruderAddr,
			"--sidecar", gn3.sock},
	})
	testutil.WaitTCPFor(t, intruderAddr, 20*time.Second)
	testutil.Eventually(t, 20*time.Second, func() error {
		if !strings.Contains(gn3.side.Log(), `belongs to cluster \"blue\", but this sidecar serves cluster \"green\"`) {
			return fmt.Errorf("green's sidecar 3 has not refused the broker yet")
		}
		if !strings.Contains(intruder.Log(), "do not belong together") {
			return fmt.Errorf("the broker has not logged the refusal yet")
		}
		return nil
	})
	// tandemctl status (the sidecar's readiness) says why node 3 is not ready.
	if st, err := green.status(3); err != nil || st.GetReady() || !strings.Contains(st.GetNotReadyReason(), `belongs to cluster "blue"`) {
		t.Fatalf("green's node 3 status while it refuses the broker: ready %v, reason %q (error %v); want not ready, naming cluster blue",
			st.GetReady(), st.GetNotReadyReason(), err)
	}
	if got := kafkaClusterID(t, intruderAddr); got != "blue" {
		t.Fatalf("the refused broker reports Kafka cluster id %q, want its data's blue", got)
	}
	if err := intruder.Stop(); err != nil {
		t.Fatal(err)
	}
	if after := dirDigest(t, filepath.Join(blueData, "wal")); after != walBefore {
		t.Fatal("blue's WAL on node 3 changed while its broker ran beside green's sidecar")
	}

	// Back where it belongs, it catches up and matches blue's other nodes.
	bn3.startPair()
	kgoProduce(t, blue.kafkaAddrs(), "colors", "blue-", 20, 30, kgo.AllISRAcks())
	blue.waitInSync(30 * time.Second)
	blue.caughtUp(30*time.Second, 1, 2, 3)
	blue.mustVerify(1)
	expectSequence(t, consumeFrom(t, bn3.kafka, "colors", 30), "blue-", 30)
	// And green's node 3 with its own data is welcome again.
	gn3.broker.MustRestart()
	green.waitInSync(30 * time.Second)
	green.mustVerify(1)
}
