// TestGoBrokerConforms runs the LinkService conformance suite against the
// real Go broker binary.

package conformance_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker/link/conformance"
	"github.com/tandem-io/tandem/internal/testutil"
)

// TestGoBrokerConforms runs the suite against the real broker binary
// (bin/tandem-broker, built by scripts/build.sh): the process attaches to
// the suite's fake sidecar through --sidecar, and records produced with
// franz-go become the entries the suite checks.
func TestGoBrokerConforms(t *testing.T) {
	kafka := testutil.FreeAddr(t)
	conformance.Run(t, conformance.Target{
		NodeID: 7,
		Start: func(t testing.TB, sock string) {
			testutil.Start(t, testutil.ProcessConfig{
				Name: "broker-7",
				Path: testutil.Bin(t, "tandem-broker"),
				Args: []string{"--node-id", "7", "--data-dir", filepath.Join(t.TempDir(), "data"),
					"--listen", kafka, "--advertise", kafka, "--sidecar", sock},
			})
			testutil.WaitTCPFor(t, kafka, 20*time.Second)
		},
		Produce: func(t testing.TB, n int) {
			cl, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.AllowAutoTopicCreation(),
				kgo.RecordDeliveryTimeout(20*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := 0; i < n; i++ {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "conformance", Value: fmt.Appendf(nil, "record %d", i)}).FirstErr(); err != nil {
					t.Fatalf("produce %d: %v", i, err)
				}
			}
		},
		TryProduce: func(t testing.TB) error {
			// franz-go retries NOT_LEADER_OR_FOLLOWER until the delivery
			// timeout: a refused write fails after it.
			cl, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
				kgo.RecordDeliveryTimeout(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return cl.ProduceSync(ctx, &kgo.Record{Topic: "conformance", Value: []byte("while handing over")}).FirstErr()
		},
	})
}
