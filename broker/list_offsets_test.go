package broker

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// latestOffsetRequest asks for the latest offset of partition 0 of topic.
func latestOffsetRequest(topic string) *kmsg.ListOffsetsRequest {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// A follower answers a consumer's ListOffsets with NOT_LEADER_OR_FOLLOWER,
// as Kafka does, so that a client whose metadata names it as the leader
// refreshes instead of taking its (possibly trailing) watermarks; Kafka's
// debugging replica id (-2) gets its own offsets.
func TestListOffsetsOnlyFromTheLeader(t *testing.T) {
	leader, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "t", 1)
	produceRecords(t, cl, "t", rawBatch(-1, -1, 0, 3))

	cfg := DefaultConfig()
	cfg.NodeID = 2
	cfg.DataDir = t.TempDir()
	cfg.SidecarSocket = filepath.Join(t.TempDir(), "none.sock") // follower role, never attached
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "follower", Output: testWriter{t}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.Advertise = ln.Addr().String(), ln.Addr().String()
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.ServeListener(ln) }()
	t.Cleanup(func() {
		f.Close()
		<-done
	})
	follow(t, f, leader)
	f.SetCommitLSN(f.wal.LastLSN())

	ask := func(addr string, replica int32) *kmsg.ListOffsetsResponseTopicPartition {
		t.Helper()
		req := latestOffsetRequest("t")
		req.ReplicaID = replica
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Straight to that node, not where the client's metadata points.
		resp, err := newClient(t, addr).SeedBrokers()[0].Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return &resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
	}
	if sp := ask(addr, -1); sp.ErrorCode != 0 || sp.Offset != 3 {
		t.Fatalf("the leader answered a consumer with %v, offset %d; want 3", kerr.ErrorForCode(sp.ErrorCode), sp.Offset)
	}
	if sp := ask(f.cfg.Advertise, -1); sp.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("a follower answered a consumer with %v, offset %d; want NOT_LEADER_OR_FOLLOWER", kerr.ErrorForCode(sp.ErrorCode), sp.Offset)
	}
	if sp := ask(f.cfg.Advertise, -2); sp.ErrorCode != 0 || sp.Offset != 3 {
		t.Fatalf("a follower answered the debugging replica id with %v, offset %d; want its own high watermark 3", kerr.ErrorForCode(sp.ErrorCode), sp.Offset)
	}
}
