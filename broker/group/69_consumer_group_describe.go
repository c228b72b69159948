package group

// ConsumerGroupDescribe (API key 69), versions 0-1.
//
// Describes groups of the consumer protocol (KIP-848; Kafka's
// Admin.describeConsumerGroups asks this first): the group's state
// ("Empty", "Assigning", "Reconciling", "Stable"), epoch, target
// assignment epoch and server assignor, and for each member its epoch,
// client, rack, subscription, current assignment and target assignment.
// A classic group, or an unknown one, gets GROUP_ID_NOT_FOUND (tools then
// fall back to DescribeGroups, as they do with Kafka). Authorized
// operations (KIP-430) are filled in by the broker.

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ConsumerGroupDescribe handles a ConsumerGroupDescribe request. It never blocks.
func (c *Coordinator) ConsumerGroupDescribe(_ context.Context, req *kmsg.ConsumerGroupDescribeRequest) *kmsg.ConsumerGroupDescribeResponse {
	resp := kmsg.NewPtrConsumerGroupDescribeResponse()
	resp.Version = req.Version
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range req.Groups {
		dg := kmsg.NewConsumerGroupDescribeResponseGroup()
		dg.Group = name
		if code := c.unavailableLocked(); code != 0 {
			dg.ErrorCode = code
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		g := c.getGroupLocked(name)
		switch {
		case name == "":
			dg.ErrorCode = kerr.InvalidGroupID.Code
		case g == nil:
			dg.ErrorCode, dg.ErrorMessage = kerr.GroupIDNotFound.Code, strPtr("group "+name+" not found")
		case g.cg == nil:
			dg.ErrorCode, dg.ErrorMessage = kerr.GroupIDNotFound.Code, strPtr("group "+name+" is not a consumer group")
		default:
			describeConsumerGroupLocked(g.cg, &dg)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func describeConsumerGroupLocked(cg *cgroup, dg *kmsg.ConsumerGroupDescribeResponseGroup) {
	dg.State = cg.stateName()
	dg.Epoch, dg.AssignmentEpoch = cg.epoch, cg.assignEpoch
	dg.AssignorName = cg.assignor
	if dg.AssignorName == "" {
		dg.AssignorName = DefaultConsumerAssignor
	}
	names := cg.topicNames()
	toAssignment := func(p partitions) kmsg.Assignment {
		a := kmsg.Assignment{TopicPartitions: []kmsg.AssignmentTopicPartition{}}
		for _, id := range p.sortedIDs() {
			a.TopicPartitions = append(a.TopicPartitions, kmsg.AssignmentTopicPartition{
				TopicID: id, Topic: names[id], Partitions: slices.Clone(p[id]),
			})
		}
		return a
	}
	for _, m := range cg.sortedMembers() {
		dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
		dm.MemberID = m.id
		if m.instanceID != "" {
			dm.InstanceID = strPtr(m.instanceID)
		}
		if m.rackID != "" {
			dm.RackID = strPtr(m.rackID)
		}
		dm.MemberEpoch = m.epoch
		dm.ClientID, dm.ClientHost = m.clientID, m.clientHost
		dm.SubscribedTopics = slices.Clone(m.topics)
		if dm.SubscribedTopics == nil {
			dm.SubscribedTopics = []string{}
		}
		if m.regex != "" {
			dm.SubscribedTopicRegex = strPtr(m.regex)
		}
		dm.Assignment = toAssignment(m.assigned)
		dm.TargetAssignment = toAssignment(cg.target[m.id])
		dm.MemberType = 1 // the consumer protocol (0 would be classic)
		dg.Members = append(dg.Members, dm)
	}
}
