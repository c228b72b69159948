package sidecar

import (
	"context"
	"net"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
)

// adminServer implements tandem.admin.v1.AdminService.
type adminServer struct {
	adminv1.UnimplementedAdminServiceServer
	s *Sidecar
}

// Status reports this node and, on the leader, every follower.
func (a *adminServer) Status(ctx context.Context, _ *adminv1.StatusRequest) (*adminv1.StatusResponse, error) {
	return a.s.Status(), nil
}

// Status builds the admin status of this node.
func (s *Sidecar) Status() *adminv1.StatusResponse {
	cfg := s.cfg
	out := &adminv1.StatusResponse{NodeId: cfg.NodeID, ClusterId: cfg.ClusterID}
	for id, addr := range cfg.Peers {
		out.Peers = append(out.Peers, &adminv1.Peer{NodeId: id, Address: addr})
	}
	slices.SortFunc(out.Peers, func(a, b *adminv1.Peer) int { return int(a.NodeId) - int(b.NodeId) })
	bc, _ := s.currentBroker()
	out.Linked = bc != nil
	if bc != nil {
		if msg, since := bc.storageFailure(); msg != "" {
			out.StorageError, out.StorageFailingSince = msg, timestamppb.New(since)
		}
	}
	out.Ready, out.NotReadyReason = s.readiness()
	out.UncleanPromotions = s.uncleanPromotions.Load()
	switch {
	case cfg.Standalone():
		out.FailoverMode = "standalone"
	case len(cfg.EtcdEndpoints) > 0:
		out.FailoverMode = "etcd"
	default:
		out.FailoverMode = "static"
	}
	l, f := s.roles()
	if l != nil {
		out.Role = adminv1.Role_ROLE_LEADER
		out.LeaderId = cfg.NodeID
		now := time.Now()
		l.mu.Lock()
		out.Epoch, out.FirstLsn, out.LastLsn, out.DurableLsn, out.CommitLsn = l.epoch, l.firstLocked(), l.durable, l.durable, l.commit
		out.Isr = slices.Clone(l.isr)
		out.WalLastEpoch = l.history.lastEpoch()
		durable := l.durable
		type snap struct {
			r      replica // a copy taken under l.mu
			broker string
		}
		var snaps []snap
		for _, r := range l.replicas {
			sn := snap{r: *r}
			if r.broker != nil {
				sn.broker = hostPort(r.broker.GetHost(), r.broker.GetPort())
			}
			snaps = append(snaps, sn)
		}
		l.mu.Unlock()
		for _, sn := range snaps {
			r := sn.r
			rep := &adminv1.Replica{
				NodeId: r.id, Address: r.addr, Connected: r.connected,
				SentLsn: r.sent, WrittenLsn: r.written, FlushedLsn: r.flushed, AppliedLsn: r.applied,
				InIsr: r.inISR, KafkaAddress: sn.broker, ApplyLagSeconds: r.applyLag.Seconds(),
				State: replicaState(r.connected, r.connectedAt, r.lastCaughtUp),
			}
			if durable > r.flushed {
				rep.LagEntries = durable - r.flushed
				rep.LagBytes = l.cache.bytesBetween(r.flushed, durable)
				if !r.lastCaughtUp.IsZero() {
					rep.LagSeconds = now.Sub(r.lastCaughtUp).Seconds()
				}
			}
			if !r.lastHeard.IsZero() {
				rep.LastHeartbeat = timestamppb.New(r.lastHeard)
			}
			if !r.lastCaughtUp.IsZero() {
				rep.LastCaughtUp = timestamppb.New(r.lastCaughtUp)
			}
			out.Replicas = append(out.Replicas, rep)
		}
		slices.SortFunc(out.Replicas, func(a, b *adminv1.Replica) int { return int(a.NodeId) - int(b.NodeId) })
		return out
	}
	out.Role = adminv1.Role_ROLE_FOLLOWER
	out.LeaderId = f.leaderID
	if bc != nil {
		out.FirstLsn = bc.firstLSN()
		out.LastLsn, out.WalLastEpoch = bc.logEnd()
	}
	if at := f.heardAt.Load(); at != 0 {
		out.LastHeardFromLeader = timestamppb.New(time.Unix(0, at))
	}
	f.mu.Lock()
	out.Epoch, out.CommitLsn, out.Streaming = f.epoch, f.commit, f.streaming
	out.DurableLsn = f.applied
	if bc != nil {
		out.DurableLsn = min(out.DurableLsn, out.LastLsn)
	} else {
		// Unknown while no broker is attached; the last LSN applied is
		// the best guess (linked is false, so peers do not rely on it).
		out.LastLsn = f.applied
	}
	if f.cluster != nil {
		out.Isr = slices.Clone(f.cluster.GetIsr())
	}
	f.mu.Unlock()
	return out
}

func hostPort(host string, port int32) string {
	if host == "" {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// Checksum asks the broker for a WAL checksum over [from, to].
func (a *adminServer) Checksum(ctx context.Context, req *adminv1.ChecksumRequest) (*adminv1.ChecksumResponse, error) {
	from, to := req.GetFromLsn(), req.GetToLsn()
	if from == 0 || to < from {
		return nil, status.Errorf(codes.InvalidArgument, "invalid LSN range [%d, %d]", from, to)
	}
	bc, _ := a.s.currentBroker()
	if bc == nil {
		return nil, status.Error(codes.Unavailable, "the broker is not attached to this sidecar")
	}
	r, err := bc.checksum(ctx, from, to)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "asking the broker for a checksum: %v", err)
	}
	if r.GetError() != "" {
		return nil, status.Errorf(codes.OutOfRange, "checksum of [%d, %d] on node %d (WAL holds [%d, %d]): %s",
			from, to, a.s.cfg.NodeID, r.GetFirstLsn(), r.GetLastLsn(), r.GetError())
	}
	return &adminv1.ChecksumResponse{
		NodeId: a.s.cfg.NodeID, FromLsn: from, ToLsn: to, Checksum: r.GetChecksum(),
		FirstLsn: r.GetFirstLsn(), LastLsn: r.GetLastLsn(),
	}, nil
}

// replicaState is pg_stat_replication.state for one follower: catching up
// from when its stream opens until it first reaches the leader's end, then
// streaming, even while writes keep it a few entries behind (the leader
// counts a follower as caught up each time its flushed LSN reaches the
// leader's durable one).
func replicaState(connected bool, connectedAt, lastCaughtUp time.Time) adminv1.ReplicaState {
	switch {
	case !connected:
		return adminv1.ReplicaState_REPLICA_STATE_DISCONNECTED
	case lastCaughtUp.IsZero() || lastCaughtUp.Before(connectedAt):
		return adminv1.ReplicaState_REPLICA_STATE_CATCHUP
	default:
		return adminv1.ReplicaState_REPLICA_STATE_STREAMING
	}
}
