package link

import (
	"time"

	"google.golang.org/protobuf/proto"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"

	"github.com/tandem-io/tandem/broker/wal"
)

// EntryToProto converts a WAL entry for the wire, with its payload's
// checksum when the entry has one (read from the WAL). The payload is
// shared, not copied.
func EntryToProto(e wal.Entry) *linkv1.Entry {
	pe := &linkv1.Entry{Lsn: e.LSN, Epoch: e.Epoch, Type: linkv1.EntryType(e.Type), Payload: e.Payload}
	if e.HasCRC {
		pe.PayloadCrc32C = proto.Uint32(e.PayloadCRC)
	}
	return pe
}

// EntryFromProto converts a wire entry to a WAL entry; a checksum that came
// with it is checked when the WAL appends it. The payload is shared, not
// copied.
func EntryFromProto(e *linkv1.Entry) wal.Entry {
	we := wal.Entry{LSN: e.GetLsn(), Epoch: e.GetEpoch(), Type: wal.EntryType(e.GetType()), Payload: e.GetPayload()}
	if e.PayloadCrc32C != nil {
		we.PayloadCRC, we.HasCRC = *e.PayloadCrc32C, true
	}
	return we
}

// EpochsToProto converts an epoch history for the wire.
func EpochsToProto(h []wal.EpochStart) []*linkv1.EpochStart {
	out := make([]*linkv1.EpochStart, len(h))
	for i, es := range h {
		out[i] = &linkv1.EpochStart{Epoch: es.Epoch, StartLsn: es.StartLSN}
	}
	return out
}

// RoleToProto converts a role for the wire.
func RoleToProto(r Role) linkv1.Role {
	switch r {
	case RoleLeader:
		return linkv1.Role_ROLE_LEADER
	case RoleFollower:
		return linkv1.Role_ROLE_FOLLOWER
	}
	return linkv1.Role_ROLE_STANDALONE
}

// RoleFromProto converts a wire role; unknown values mean standalone.
func RoleFromProto(r linkv1.Role) Role {
	switch r {
	case linkv1.Role_ROLE_LEADER:
		return RoleLeader
	case linkv1.Role_ROLE_FOLLOWER:
		return RoleFollower
	}
	return RoleStandalone
}

// ViewFromProto converts a wire cluster view.
func ViewFromProto(v *linkv1.ClusterView) ClusterView {
	out := ClusterView{
		Role:     RoleFromProto(v.GetRole()),
		LeaderID: v.GetLeaderId(),
		Epoch:    v.GetEpoch(),
		ISR:      append([]int32(nil), v.GetIsr()...),
		// Only a leader hands over; in any other role the flag means
		// nothing (a follower appends nothing of its own anyway).
		HandingOver: v.GetHandingOver() && v.GetRole() == linkv1.Role_ROLE_LEADER,
		FenceAfter:  time.Duration(v.GetFenceAfterMs()) * time.Millisecond,

		HeartbeatEvery: time.Duration(v.GetHeartbeatIntervalMs()) * time.Millisecond,
	}
	for _, b := range v.GetBrokers() {
		out.Brokers = append(out.Brokers, BrokerInfo{NodeID: b.GetNodeId(), Host: b.GetHost(), Port: b.GetPort(), Rack: b.GetRack()})
	}
	return out
}

// ViewToProto converts a cluster view for the wire.
func ViewToProto(v ClusterView) *linkv1.ClusterView {
	out := &linkv1.ClusterView{
		Role:     RoleToProto(v.Role),
		LeaderId: v.LeaderID,
		Epoch:    v.Epoch,
		Isr:      append([]int32(nil), v.ISR...),

		HandingOver:  v.HandingOver,
		FenceAfterMs: uint32(v.FenceAfter / time.Millisecond),

		HeartbeatIntervalMs: uint32(v.HeartbeatEvery / time.Millisecond),
	}
	for _, b := range v.Brokers {
		out.Brokers = append(out.Brokers, &linkv1.BrokerInfo{NodeId: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack})
	}
	return out
}
