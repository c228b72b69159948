package group

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzHandlers decodes arbitrary bytes as a group API request (key and
// version from the first three bytes, at versions in Versions) and feeds it
// to one coordinator. The coordinator must not panic or hang, and every
// response must carry the request's version and survive an encode/decode
// round trip (no nil in a non-nullable field).
func FuzzHandlers(f *testing.F) {
	seed := func(r kmsg.Request) {
		b := r.AppendTo(nil)
		f.Add(append([]byte{byte(r.Key()), 0, byte(r.GetVersion())}, b...))
	}
	for key, vr := range Versions {
		for v := vr[0]; v <= vr[1]; v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			switch r := req.(type) {
			case *kmsg.JoinGroupRequest:
				*r = *joinReq(v, "g", "", joinOpts{})
			case *kmsg.SyncGroupRequest:
				*r = *syncReq(v, "g", "m", 1, map[string]string{"m": "x"})
			case *kmsg.HeartbeatRequest:
				r.Group, r.MemberID, r.Generation = "g", "m", 1
			case *kmsg.LeaveGroupRequest:
				r.Group, r.MemberID = "g", "m"
				r.Members = []kmsg.LeaveGroupRequestMember{{MemberID: "m"}}
			case *kmsg.OffsetCommitRequest:
				*r = *commitReq(v, "g", "", -1, map[string]map[int32]int64{"a": {0: 1}})
			case *kmsg.OffsetFetchRequest:
				*r = *fetchReq(v, "g", map[string][]int32{"a": {0}})
			case *kmsg.DescribeGroupsRequest:
				r.Groups = []string{"g", ""}
			case *kmsg.ListGroupsRequest:
				r.StatesFilter = []string{"Stable"}
			case *kmsg.DeleteGroupsRequest:
				r.Groups = []string{"g", "", "x"}
			case *kmsg.OffsetDeleteRequest:
				r.Group = "g"
				r.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "a", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
			case *kmsg.ConsumerGroupHeartbeatRequest:
				r.Group, r.MemberID, r.RebalanceTimeoutMillis = "c", "m", 1000
				r.SubscribedTopicNames, r.Topics = []string{"a"}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
			case *kmsg.ConsumerGroupDescribeRequest:
				r.Groups = []string{"c", "g", ""}
			}
			seed(req)
		}
	}

	c := New(Config{
		Logger:            hclog.NewNullLogger(),
		Persister:         &memPersister{},
		Topics:            func() []TopicInfo { return []TopicInfo{{Name: "a", ID: [16]byte{1}, Partitions: 3}} },
		MinSessionTimeout: time.Millisecond,
		MaxSessionTimeout: time.Minute,
	})
	f.Cleanup(func() { _ = c.Close() })

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		key := int16(data[0])
		vr, ok := Versions[key]
		if !ok {
			return
		}
		v := int16(data[1])<<8 | int16(data[2])
		if v < vr[0] || v > vr[1] {
			return
		}
		req := kmsg.RequestForKey(key)
		req.SetVersion(v)
		if err := req.ReadFrom(data[3:]); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		var resp kmsg.Response
		switch r := req.(type) {
		case *kmsg.JoinGroupRequest:
			resp = c.JoinGroup(ctx, r)
		case *kmsg.SyncGroupRequest:
			resp = c.SyncGroup(ctx, r)
		case *kmsg.HeartbeatRequest:
			resp = c.Heartbeat(ctx, r)
		case *kmsg.LeaveGroupRequest:
			resp = c.LeaveGroup(ctx, r)
		case *kmsg.OffsetCommitRequest:
			resp = c.OffsetCommit(ctx, r)
		case *kmsg.OffsetFetchRequest:
			resp = c.OffsetFetch(ctx, r)
		case *kmsg.DescribeGroupsRequest:
			resp = c.DescribeGroups(ctx, r)
		case *kmsg.ListGroupsRequest:
			resp = c.ListGroups(ctx, r)
		case *kmsg.DeleteGroupsRequest:
			resp = c.DeleteGroups(ctx, r)
		case *kmsg.OffsetDeleteRequest:
			resp = c.OffsetDelete(ctx, r)
		case *kmsg.ConsumerGroupHeartbeatRequest:
			resp = c.ConsumerGroupHeartbeat(ctx, r)
		case *kmsg.ConsumerGroupDescribeRequest:
			resp = c.ConsumerGroupDescribe(ctx, r)
		default:
			t.Fatalf("no handler for key %d", key)
		}
		if resp.GetVersion() != v {
			t.Fatalf("key %d: response version %d, want %d", key, resp.GetVersion(), v)
		}
		enc := resp.AppendTo(nil)
		back := kmsg.ResponseForKey(key)
		back.SetVersion(v)
		if err := back.ReadFrom(enc); err != nil {
			t.Fatalf("key %d v%d: response does not decode: %v", key, v, err)
		}
	})
}
