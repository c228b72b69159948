package broker

// Authorization of the consumer group APIs (with --acls; 29_acls.go), in
// front of the group coordinator, as Kafka's KafkaApis does it:
//
//	FindCoordinator, DescribeGroups, OffsetFetch   DESCRIBE on the group
//	JoinGroup, SyncGroup, Heartbeat, LeaveGroup     READ on the group
//	ConsumerGroupHeartbeat                          READ on the group
//	ConsumerGroupDescribe                           DESCRIBE on the group
//	OffsetCommit                                    READ on the group and on each topic
//	OffsetFetch                                     DESCRIBE on each topic (listing all: only those)
//	DeleteGroups                                    DELETE on the group
//	OffsetDelete                                    DELETE on the group, READ on each topic
//	ListGroups                                      DESCRIBE on the cluster, or only the groups it may describe
//
// A refused group gets GROUP_AUTHORIZATION_FAILED and never reaches the
// coordinator; a refused topic gets TOPIC_AUTHORIZATION_FAILED and is
// taken out of the request first.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/acl"
)

// groupRefused answers a request on one group that the principal may not
// perform, or returns nil when it may.
func (b *Broker) groupRefused(rc *reqCtx, req kmsg.Request) kmsg.Response {
	code := kerr.GroupAuthorizationFailed.Code
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		if !b.allowedGroup(rc, kmsg.ACLOperationRead, r.Group) {
			resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
			resp.ErrorCode, resp.Generation = code, -1
			return resp
		}
	case *kmsg.SyncGroupRequest:
		if !b.allowedGroup(rc, kmsg.ACLOperationRead, r.Group) {
			resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
			resp.ErrorCode = code
			return resp
		}
	case *kmsg.HeartbeatRequest:
		if !b.allowedGroup(rc, kmsg.ACLOperationRead, r.Group) {
			resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
			resp.ErrorCode = code
			return resp
		}
	case *kmsg.LeaveGroupRequest:
		if !b.allowedGroup(rc, kmsg.ACLOperationRead, r.Group) {
			resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
			resp.ErrorCode = code
			return resp
		}
	case *kmsg.ConsumerGroupHeartbeatRequest:
		if !b.allowedGroup(rc, kmsg.ACLOperationRead, r.Group) {
			resp := r.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
			resp.ErrorCode = code
			return resp
		}
	case *kmsg.OffsetDeleteRequest:
		if !b.allowedGroup(rc, kmsg.ACLOperationDelete, r.Group) {
			resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
			resp.ErrorCode = code
			return resp
		}
	case *kmsg.OffsetCommitRequest:
		if !b.allowedGroup(rc, kmsg.ACLOperationRead, r.Group) {
			resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
			for _, t := range r.Topics {
				rt := kmsg.NewOffsetCommitResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetCommitResponseTopicPartition()
					rp.Partition, rp.ErrorCode = p.Partition, code
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp
		}
	}
	return nil
}

// groupCall authorizes one group request and runs it on the coordinator.
func (b *Broker) groupCall(rc *reqCtx, req kmsg.Request, call func(kmsg.Request) kmsg.Response) kmsg.Response {
	if b.authz == nil {
		return call(req)
	}
	if resp := b.groupRefused(rc, req); resp != nil {
		return resp
	}
	switch r := req.(type) {
	case *kmsg.OffsetCommitRequest:
		return b.offsetCommitTopics(rc, r, call)
	case *kmsg.OffsetDeleteRequest:
		return b.offsetDeleteTopics(rc, r, call)
	case *kmsg.OffsetFetchRequest:
		return b.offsetFetchAuthorized(rc, r, call)
	case *kmsg.DescribeGroupsRequest:
		resp := call(r).(*kmsg.DescribeGroupsResponse)
		for i, g := range resp.Groups {
			if !b.allowedGroup(rc, kmsg.ACLOperationDescribe, g.Group) {
				ng := kmsg.NewDescribeGroupsResponseGroup()
				ng.Group, ng.ErrorCode = g.Group, kerr.GroupAuthorizationFailed.Code
				resp.Groups[i] = ng
			}
		}
		return resp
	case *kmsg.ConsumerGroupDescribeRequest:
		resp := call(r).(*kmsg.ConsumerGroupDescribeResponse)
		for i, g := range resp.Groups {
			if !b.allowedGroup(rc, kmsg.ACLOperationDescribe, g.Group) {
				ng := kmsg.NewConsumerGroupDescribeResponseGroup()
				ng.Group, ng.ErrorCode = g.Group, kerr.GroupAuthorizationFailed.Code
				resp.Groups[i] = ng
			}
		}
		return resp
	case *kmsg.ListGroupsRequest:
		resp := call(r).(*kmsg.ListGroupsResponse)
		if b.quietlyAllowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, acl.ClusterName) {
			return resp
		}
		kept := resp.Groups[:0]
		for _, g := range resp.Groups {
			if b.quietlyAllowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, g.Group) {
				kept = append(kept, g)
			}
		}
		resp.Groups = kept
		return resp
	case *kmsg.DeleteGroupsRequest:
		var refused []string
		allowed := r.Groups[:0:0]
		for _, g := range r.Groups {
			if b.allowedGroup(rc, kmsg.ACLOperationDelete, g) {
				allowed = append(allowed, g)
			} else {
				refused = append(refused, g)
			}
		}
		r.Groups = allowed
		resp := call(r).(*kmsg.DeleteGroupsResponse)
		for _, g := range refused {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, rg)
		}
		return resp
	}
	return call(req)
}

// offsetCommitTopics commits the topics the principal may read and
// refuses the others.
func (b *Broker) offsetCommitTopics(rc *reqCtx, r *kmsg.OffsetCommitRequest, call func(kmsg.Request) kmsg.Response) kmsg.Response {
	var refused []kmsg.OffsetCommitResponseTopic
	kept := r.Topics[:0:0]
	for _, t := range r.Topics {
		if b.allowedTopic(rc, kmsg.ACLOperationRead, t.Topic) {
			kept = append(kept, t)
			continue
		}
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		refused = append(refused, rt)
	}
	r.Topics = kept
	resp := call(r).(*kmsg.OffsetCommitResponse)
	resp.Topics = append(resp.Topics, refused...)
	return resp
}

// offsetDeleteTopics deletes the offsets of the topics the principal may
// read and refuses the others.
func (b *Broker) offsetDeleteTopics(rc *reqCtx, r *kmsg.OffsetDeleteRequest, call func(kmsg.Request) kmsg.Response) kmsg.Response {
	var refused []kmsg.OffsetDeleteResponseTopic
	kept := r.Topics[:0:0]
	for _, t := range r.Topics {
		if b.allowedTopic(rc, kmsg.ACLOperationRead, t.Topic) {
			kept = append(kept, t)
			continue
		}
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		refused = append(refused, rt)
	}
	r.Topics = kept
	resp := call(r).(*kmsg.OffsetDeleteResponse)
	resp.Topics = append(resp.Topics, refused...)
	return resp
}

// offsetFetchAuthorized fetches committed offsets of the groups the
// principal may describe, for the topics it may describe.
func (b *Broker) offsetFetchAuthorized(rc *reqCtx, r *kmsg.OffsetFetchRequest, call func(kmsg.Request) kmsg.Response) kmsg.Response {
	gcode, tcode := kerr.GroupAuthorizationFailed.Code, kerr.TopicAuthorizationFailed.Code
	if r.Version < 8 {
		if !b.allowedGroup(rc, kmsg.ACLOperationDescribe, r.Group) {
			resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
			resp.ErrorCode = gcode
			for _, t := range r.Topics { // v0-v1 carry errors per partition only
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.ErrorCode = p, -1, gcode
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp
		}
		var refused []kmsg.OffsetFetchResponseTopic
		if r.Topics != nil {
			kept := r.Topics[:0:0]
			for _, t := range r.Topics {
				if b.allowedTopic(rc, kmsg.ACLOperationDescribe, t.Topic) {
					kept = append(kept, t)
					continue
				}
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.ErrorCode = p, -1, tcode
					rt.Partitions = append(rt.Partitions, rp)
				}
				refused = append(refused, rt)
			}
			r.Topics = kept
		}
		all := r.Topics == nil
		resp := call(r).(*kmsg.OffsetFetchResponse)
		if all {
			kept := resp.Topics[:0]
			for _, t := range resp.Topics {
				if b.quietlyAllowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t.Topic) {
					kept = append(kept, t)
				}
			}
			resp.Topics = kept
		}
		resp.Topics = append(resp.Topics, refused...)
		return resp
	}

	// v8+: several groups, each with its topics (nil: all).
	var refusedGroups []kmsg.OffsetFetchResponseGroup
	refusedTopics := map[string][]kmsg.OffsetFetchResponseGroupTopic{}
	wantAll := map[string]bool{}
	kept := r.Groups[:0:0]
	for _, g := range r.Groups {
		if !b.allowedGroup(rc, kmsg.ACLOperationDescribe, g.Group) {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, gcode
			refusedGroups = append(refusedGroups, rg)
			continue
		}
		if g.Topics == nil {
			wantAll[g.Group] = true
		} else {
			topics := g.Topics[:0:0]
			for _, t := range g.Topics {
				if b.allowedTopic(rc, kmsg.ACLOperationDescribe, t.Topic) {
					topics = append(topics, t)
					continue
				}
				rt := kmsg.NewOffsetFetchResponseGroupTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					rp.Partition, rp.Offset, rp.ErrorCode = p, -1, tcode
					rt.Partitions = append(rt.Partitions, rp)
				}
				refusedTopics[g.Group] = append(refusedTopics[g.Group], rt)
			}
			g.Topics = topics
		}
		kept = append(kept, g)
	}
	r.Groups = kept
	var resp *kmsg.OffsetFetchResponse
	if len(kept) > 0 {
		resp = call(r).(*kmsg.OffsetFetchResponse)
	} else {
		resp = r.ResponseKind().(*kmsg.OffsetFetchResponse)
	}
	for i := range resp.Groups {
		g := &resp.Groups[i]
		if wantAll[g.Group] {
			topics := g.Topics[:0]
			for _, t := range g.Topics {
				if b.quietlyAllowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t.Topic) {
					topics = append(topics, t)
				}
			}
			g.Topics = topics
		}
		g.Topics = append(g.Topics, refusedTopics[g.Group]...)
	}
	resp.Groups = append(resp.Groups, refusedGroups...)
	return resp
}
