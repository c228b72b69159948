package broker

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/internal/testutil"
)

// unlinkedBroker starts a replicated broker whose sidecar never attaches
// (nothing listens on its socket): the test plays the sidecar's part,
// setting its cluster view and commit point.
func unlinkedBroker(t *testing.T, change func(*Config)) (*Broker, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "no-sidecar.sock")
	return startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.SidecarSocket = sock
		if change != nil {
			change(c)
		}
	})
}

// stalledLeader starts a replicated leader whose sidecar never attaches:
// its commit point moves only when the test moves it (whileCommitting).
func stalledLeader(t *testing.T, change func(*Config)) (*Broker, string) {
	t.Helper()
	b, addr := unlinkedBroker(t, change)
	host, port := b.Advertised()
	b.SetClusterView(link.ClusterView{Role: link.RoleLeader, LeaderID: 1, Epoch: 1,
		Brokers: []link.BrokerInfo{{NodeID: 1, Host: host, Port: port}}, ISR: []int32{1, 2}})
	return b, addr
}

// whileCommitting runs fn, moving b's commit point to the end of its WAL
// (as if every follower had acked everything) until fn returns, and fails
// the test if fn fails.
func whileCommitting(t *testing.T, b *Broker, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	var err error
	testutil.Eventually(t, 20*time.Second, func() bool {
		b.SetCommitLSN(b.wal.DurableLSN())
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func simpleCommit(group, topic string, offset int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = group
	req.Generation = -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Offset = offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// seedGroupOffsets creates topic "oc" and commits offset 3 of it for the
// groups "deleted" and "offset-deleted" (for DeleteGroups and OffsetDelete
// to delete), while b's commit point follows its WAL (the follower acks
// all).
func seedGroupOffsets(t *testing.T, b *Broker, cl *kgo.Client) {
	t.Helper()
	whileCommitting(t, b, func() error {
		ct := kmsg.NewPtrCreateTopicsRequest()
		tt := kmsg.NewCreateTopicsRequestTopic()
		tt.Topic, tt.NumPartitions, tt.ReplicationFactor = "oc", 1, -1
		ct.Topics = append(ct.Topics, tt)
		if resp, err := ct.RequestWith(t.Context(), cl); err != nil || resp.Topics[0].ErrorCode != 0 {
			return fmt.Errorf("CreateTopics: %v %+v", err, resp)
		}
		for _, g := range []string{"deleted", "offset-deleted"} {
			resp, err := cl.SeedBrokers()[0].Request(t.Context(), simpleCommit(g, "oc", 3))
			if err != nil || resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode != 0 {
				return fmt.Errorf("OffsetCommit %s: %v %+v", g, err, resp)
			}
		}
		return nil
	})
}

// A replicated leader whose commit point stops moving (its sidecar is
// gone) answers OffsetCommit, DeleteGroups and OffsetDelete with
// COORDINATOR_NOT_AVAILABLE once offsets.commit.timeout.ms has passed,
// instead of holding them, and every request behind them on the
// connection, until the commit point moves again.
func TestOffsetWritesTimeOutWhenCommitPointStalls(t *testing.T) {
	b, addr := stalledLeader(t, func(c *Config) { c.OffsetsCommitTimeout = 200 * time.Millisecond })
	cl := newClient(t, addr)
	// Requests go straight to the broker: the client's own retries of
	// COORDINATOR_NOT_AVAILABLE are not what is tested.
	br := cl.SeedBrokers()[0]

	seedGroupOffsets(t, b, cl)

	// From here the commit point stays where it is.
	for _, tc := range []struct {
		name string
		req  kmsg.Request
		code func(kmsg.Response) int16
	}{
		{"OffsetCommit", simpleCommit("committed", "oc", 5), func(r kmsg.Response) int16 {
			return r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
		}},
		{"DeleteGroups", &kmsg.DeleteGroupsRequest{Groups: []string{"deleted"}}, func(r kmsg.Response) int16 {
			return r.(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode
		}},
		{"OffsetDelete", &kmsg.OffsetDeleteRequest{Group: "offset-deleted", Topics: []kmsg.OffsetDeleteRequestTopic{
			{Topic: "oc", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}}, func(r kmsg.Response) int16 {
			return r.(*kmsg.OffsetDeleteResponse).ErrorCode
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Far longer than the commit timeout: without it, this expires.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			resp, err := br.Request(ctx, tc.req)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if code := tc.code(resp); code != kerr.CoordinatorNotAvailable.Code {
				t.Fatalf("answered %v, want COORDINATOR_NOT_AVAILABLE", kerr.ErrorForCode(code))
			}
		})
	}
}

// A leader that loses its leadership while group writes wait for the commit
// point answers them NOT_COORDINATOR, as Kafka's coordinator does when it
// loses the offsets topic's partition: the coordinator has moved, and the
// client commits again at the new one. (Until 2026-12-07 they got
// COORDINATOR_NOT_AVAILABLE and were logged at ERROR, once per failover.)
func TestOffsetWritesInFlightAtStepDownAnswerNotCoordinator(t *testing.T) {
	b, addr := stalledLeader(t, nil) // the default commit timeout: far longer than the test waits
	cl := newClient(t, addr)
	seedGroupOffsets(t, b, cl)

	// Each request on a connection of its own, so that all three wait for
	// the commit point at once.
	type answer struct {
		name string
		code int16
		err  error
	}
	answers := make(chan answer, 3)
	send := func(name string, req kmsg.Request, code func(kmsg.Response) int16) {
		br := newClient(t, addr).SeedBrokers()[0]
		go func() {
			resp, err := br.Request(t.Context(), req)
			if err != nil {
				answers <- answer{name, 0, err}
				return
			}
			answers <- answer{name, code(resp), nil}
		}()
	}
	before := b.wal.LastLSN()
	send("OffsetCommit", simpleCommit("committed", "oc", 5), func(r kmsg.Response) int16 {
		return r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	})
	send("DeleteGroups", &kmsg.DeleteGroupsRequest{Groups: []string{"deleted"}}, func(r kmsg.Response) int16 {
		return r.(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode
	})
	send("OffsetDelete", &kmsg.OffsetDeleteRequest{Group: "offset-deleted", Topics: []kmsg.OffsetDeleteRequestTopic{
		{Topic: "oc", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}}, func(r kmsg.Response) int16 {
		return r.(*kmsg.OffsetDeleteResponse).ErrorCode
	})
	// All three are written and wait to be committed.
	testutil.Eventually(t, 10*time.Second, func() bool { return b.wal.LastLSN() >= before+3 })
	select {
	case a := <-answers:
		t.Fatalf("%s answered (%v, %v) before the commit point or a step-down", a.name, kerr.ErrorForCode(a.code), a.err)
	case <-time.After(100 * time.Millisecond):
	}

	// Node 2 is elected; this node follows it.
	host, port := b.Advertised()
	b.SetClusterView(link.ClusterView{Role: link.RoleFollower, LeaderID: 2, Epoch: 2,
		Brokers: []link.BrokerInfo{{NodeID: 1, Host: host, Port: port}, {NodeID: 2, Host: "127.0.0.1", Port: 1}}})
	for range 3 {
		select {
		case a := <-answers:
			if a.err != nil || a.code != kerr.NotCoordinator.Code {
				t.Errorf("%s answered (%v, %v), want NOT_COORDINATOR", a.name, kerr.ErrorForCode(a.code), a.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a group write still waits after the step-down")
		}
	}
}
