package broker

// Metadata (key 3), v0-v12.
//
// Lists every broker of the cluster (from the sidecar's cluster view; just
// this node when standalone) and, for each topic, its partitions with the
// current leader, the leader epoch, the replicas (every node replicates every
// partition: the WAL is node-wide) and the in-sync replicas. A client that
// bootstraps from any node therefore finds the leader and sends its writes
// there.
//
// Unknown topics are created on the spot when auto.create.topics.enable is
// true, the request allows it (v4+), and this node is the leader. A follower
// asks the leader to create them (a CreateTopics request, as a Kafka client
// would) and answers once the creation has replicated to it, or
// LEADER_NOT_AVAILABLE (retriable) if that takes more than a few seconds.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/acl"
	"github.com/tandem-io/tandem/broker/link"
)

func init() { register(kmsg.Metadata.Int16(), 0, 12, handleMetadata) }

func handleMetadata(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.MetadataRequest)
	var resp *kmsg.MetadataResponse
	b.readWhole(rc.ctx, func() { resp = b.metadata(rc, r) })
	return now(resp)
}

// metadata answers r from the state as it is now.
func (b *Broker) metadata(rc *reqCtx, r *kmsg.MetadataRequest) *kmsg.MetadataResponse {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	view := b.clusterView()
	for _, bi := range view.Brokers {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID = bi.NodeID
		mb.Host = bi.Host
		mb.Port = bi.Port
		if bi.Rack != "" {
			rack := bi.Rack
			mb.Rack = &rack
		}
		resp.Brokers = append(resp.Brokers, mb)
	}
	cid := b.clusterID()
	resp.ClusterID = &cid
	resp.ControllerID = view.LeaderID

	var names []string
	allowAuto := r.AllowAutoTopicCreation || r.Version < 4
	switch {
	case r.Topics == nil || (r.Version == 0 && len(r.Topics) == 0):
		// Every topic the principal may describe, as Kafka lists them.
		for _, n := range b.topicNames() {
			if b.quietlyAllowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, n) {
				names = append(names, n)
			}
		}
		allowAuto = false
	default:
		for _, t := range r.Topics {
			switch {
			case t.Topic != nil:
				names = append(names, *t.Topic)
			case t.TopicID != [16]byte{}:
				if n, ok := b.topicByID(t.TopicID); ok {
					names = append(names, n)
				} else {
					mt := kmsg.NewMetadataResponseTopic()
					mt.TopicID = t.TopicID
					mt.ErrorCode = kerr.UnknownTopicID.Code
					resp.Topics = append(resp.Topics, mt)
				}
			}
		}
	}
	for _, name := range names {
		if b.authz != nil && !b.metadataAllowed(rc, name, allowAuto) {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = &name
			mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		mt := b.metadataTopic(rc.ctx, name, allowAuto, view)
		if r.Version >= 8 && r.IncludeTopicAuthorizedOperations && mt.ErrorCode == 0 {
			mt.AuthorizedOperations = b.authorizedOps(rc, kmsg.ACLResourceTypeTopic, name)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	if r.Version >= 8 && r.Version <= 10 && r.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = b.authorizedOps(rc, kmsg.ACLResourceTypeCluster, acl.ClusterName)
	}
	return resp
}

// metadataAllowed reports whether the principal may see the topic
// (DESCRIBE) and, if the request would auto-create it, create it.
func (b *Broker) metadataAllowed(rc *reqCtx, name string, allowAuto bool) bool {
	if !b.allowedTopic(rc, kmsg.ACLOperationDescribe, name) {
		return false
	}
	if _, exists := b.topicSnap(name); exists || !allowAuto || !b.cfg.AutoCreateTopics {
		return true
	}
	return b.allowedCreateTopic(rc, name)
}

func (b *Broker) metadataTopic(ctx context.Context, name string, allowAuto bool, view link.ClusterView) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	n := name
	mt.Topic = &n
	snap, ok := b.topicSnap(name)
	if !ok && allowAuto && b.cfg.AutoCreateTopics && validTopicName(name) {
		if b.isLeader() {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			code, msg := b.createTopic(cctx, name, -1, nil, false)
			cancel()
			if code != nil && code != kerr.TopicAlreadyExists {
				b.log.Warn("auto-creating topic failed", "topic", name, "error", msg)
			}
			snap, ok = b.topicSnap(name)
		} else {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ok = b.forwardCreateTopic(cctx, name)
			cancel()
			if ok {
				snap, ok = b.topicSnap(name)
			}
			if !ok {
				mt.ErrorCode = kerr.LeaderNotAvailable.Code
				return mt
			}
		}
	}
	if !ok {
		mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
		if !validTopicName(name) {
			mt.ErrorCode = kerr.InvalidTopicException.Code
		}
		return mt
	}
	mt.TopicID = snap.id
	var replicas []int32
	for _, bi := range view.Brokers {
		replicas = append(replicas, bi.NodeID)
	}
	for i := range snap.partitions {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = int32(i)
		mp.Leader = view.LeaderID
		mp.LeaderEpoch = int32(view.Epoch)
		mp.Replicas = replicas
		mp.ISR = view.ISR
		if view.LeaderID < 0 {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}

// clusterID is what Metadata reports as the Kafka cluster id.
func (b *Broker) clusterID() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.clusterName != "" {
		return b.clusterName
	}
	return "tandem"
}

// forwardCreateTopic asks the leader to create a topic and waits until the
// creation has been applied here. It reports whether the topic exists.
func (b *Broker) forwardCreateTopic(ctx context.Context, name string) bool {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 5000
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic = name
	t.NumPartitions = -1
	t.ReplicationFactor = -1
	req.Topics = append(req.Topics, t)
	if _, err := b.askLeader(ctx, req); err != nil {
		b.log.Warn("asking the leader to create a topic failed", "topic", name, "error", err)
		return false
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, ok := b.topicSnap(name); ok {
			return true
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
}
