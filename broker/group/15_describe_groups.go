package group

// DescribeGroups (API key 15), versions 0-6.
//
// For each named group: its state ("Empty", "PreparingRebalance",
// "CompletingRebalance", "Stable", "Dead"), protocol type, protocol and
// members (member id, group.instance.id, client id, client host). As in
// Kafka, member metadata and assignments and the protocol name are only
// reported while the group is Stable. An unknown group is reported as
// "Dead" with no error before v6 and with GROUP_ID_NOT_FOUND from v6.
// A group of the consumer protocol (KIP-848) is described as Kafka does it
// for older tools: its state ("Empty", "Assigning", "Reconciling",
// "Stable"), protocol type "consumer", its server assignor as the
// protocol, and each member's subscription and current assignment in the
// classic consumer encoding.

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups handles a DescribeGroups request. It never blocks.
func (c *Coordinator) DescribeGroups(_ context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := kmsg.NewPtrDescribeGroupsResponse()
	resp.Version = req.Version
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		if code := c.unavailableLocked(); code != 0 {
			dg.ErrorCode = code
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		g := c.getGroupLocked(name)
		if g == nil {
			dg.State = Dead.String()
			if req.Version >= 6 {
				dg.ErrorCode = kerr.GroupIDNotFound.Code
				dg.ErrorMessage = strPtr("group " + name + " not found")
			}
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		if g.cg != nil {
			describeConsumerLocked(g, &dg)
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		dg.State = g.state.String()
		dg.ProtocolType = g.protocolType
		if g.state == Stable {
			dg.Protocol = g.protocol
		}
		for _, m := range g.sortedMembers() {
			dm := kmsg.NewDescribeGroupsResponseGroupMember()
			dm.MemberID = m.id
			if m.instanceID != "" {
				dm.InstanceID = strPtr(m.instanceID)
			}
			dm.ClientID = m.clientID
			dm.ClientHost = m.clientHost
			dm.ProtocolMetadata = []byte{}
			dm.MemberAssignment = []byte{}
			if g.state == Stable {
				dm.ProtocolMetadata = m.metadataFor(g.protocol)
				if m.assignment != nil {
					dm.MemberAssignment = m.assignment
				}
			}
			dg.Members = append(dg.Members, dm)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

// describeConsumerLocked fills dg for a group of the consumer protocol.
func describeConsumerLocked(g *group, dg *kmsg.DescribeGroupsResponseGroup) {
	cg := g.cg
	dg.State = cg.stateName()
	dg.ProtocolType = ConsumerProtocolType
	dg.Protocol = cg.assignor
	names := cg.topicNames()
	for _, m := range cg.sortedMembers() {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID = m.id
		if m.instanceID != "" {
			dm.InstanceID = strPtr(m.instanceID)
		}
		dm.ClientID, dm.ClientHost = m.clientID, m.clientHost
		meta := kmsg.NewConsumerMemberMetadata()
		meta.Version = 3
		meta.Topics = slices.Clone(m.topics)
		for _, t := range m.subscribedTopics(cg.subscribed) {
			if !slices.Contains(meta.Topics, t.Name) {
				meta.Topics = append(meta.Topics, t.Name)
			}
		}
		if m.rackID != "" {
			meta.Rack = strPtr(m.rackID)
		}
		dm.ProtocolMetadata = meta.AppendTo(nil)
		as := kmsg.NewConsumerMemberAssignment()
		as.Version = 3
		for _, id := range m.assigned.sortedIDs() {
			at := kmsg.NewConsumerMemberAssignmentTopic()
			at.Topic, at.Partitions = names[id], slices.Clone(m.assigned[id])
			as.Topics = append(as.Topics, at)
		}
		dm.MemberAssignment = as.AppendTo(nil)
		dg.Members = append(dg.Members, dm)
	}
}
