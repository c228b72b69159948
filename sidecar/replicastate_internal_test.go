package sidecar

import (
	"testing"
	"time"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
)

// A follower that reached the leader's end since it connected stays
// "streaming" while new writes keep it behind (PostgreSQL's meaning); one
// that has not yet, or last did before this stream opened, is catching up.
func TestReplicaState(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		connected    bool
		connectedAt  time.Time
		lastCaughtUp time.Time
		want         adminv1.ReplicaState
	}{
		{"never connected", false, time.Time{}, time.Time{}, adminv1.ReplicaState_REPLICA_STATE_DISCONNECTED},
		{"away after being caught up", false, t0, t0.Add(time.Second), adminv1.ReplicaState_REPLICA_STATE_DISCONNECTED},
		{"new, never caught up", true, t0, time.Time{}, adminv1.ReplicaState_REPLICA_STATE_CATCHUP},
		{"back, last caught up before it left", true, t0, t0.Add(-time.Minute), adminv1.ReplicaState_REPLICA_STATE_CATCHUP},
		{"at the end when it connected", true, t0, t0, adminv1.ReplicaState_REPLICA_STATE_STREAMING},
		{"caught up since, behind now", true, t0, t0.Add(time.Second), adminv1.ReplicaState_REPLICA_STATE_STREAMING},
	}
	for _, tt := range tests {
		if got := replicaState(tt.connected, tt.connectedAt, tt.lastCaughtUp); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
