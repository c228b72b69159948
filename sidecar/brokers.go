package sidecar

import (
	"slices"

	"google.golang.org/protobuf/proto"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// The brokers a node lists in its Kafka Metadata come from its cluster
// view: the leader lists itself and its followers (those that have not
// connected to it yet with the address it has seen), a follower what the
// leader last sent. A node that does not know the leader
// yet (it has just stepped down, or started, or been cut off) has no such
// view. Listing only itself then would be harmful: a Kafka client replaces
// the brokers it knows with those in each Metadata answer, so a client
// that asked this node would forget every other broker, and with them the
// leader that the rest of the cluster elected. Such a node lists every
// broker it has seen instead, as a Kafka broker answers from its last
// metadata, and says that the partitions have no leader it knows
// (LEADER_NOT_AVAILABLE, which clients retry elsewhere).

// noteBrokers remembers the peer brokers of a cluster view.
func (s *Sidecar) noteBrokers(bs []*linkv1.BrokerInfo) {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	for _, b := range bs {
		id := b.GetNodeId()
		if id == s.cfg.NodeID || s.cfg.Peers[id] == "" || b.GetHost() == "" {
			continue
		}
		if s.seenBrokers == nil {
			s.seenBrokers = map[int32]*linkv1.BrokerInfo{}
		}
		if old := s.seenBrokers[id]; old == nil || !proto.Equal(old, b) {
			s.seenBrokers[id] = proto.CloneOf(b)
		}
	}
}

// knownBrokers is self and every peer broker seen so far, by node id.
func (s *Sidecar) knownBrokers(self *linkv1.BrokerInfo) []*linkv1.BrokerInfo {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	out := []*linkv1.BrokerInfo{self}
	for _, b := range s.seenBrokers {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *linkv1.BrokerInfo) int { return int(a.GetNodeId()) - int(b.GetNodeId()) })
	return out
}
