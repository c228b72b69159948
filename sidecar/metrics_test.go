package sidecar_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// gather returns every sample of a registry as "name{k=v,...}" -> value.
func gather(t *testing.T, s *sidecar.Sidecar) map[string]float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			if len(m.GetLabel()) > 0 {
				key += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						key += ","
					}
					key += l.GetName() + "=" + l.GetValue()
				}
				key += "}"
			}
			out[key] = value(mf.GetType(), m)
		}
	}
	return out
}

func value(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

func TestMetricsFollowReplication(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		cfg.ReplicaLagTimeMax = 500 * time.Millisecond
		cfg.HeartbeatInterval = 100 * time.Millisecond
		cfg.PeerTimeout = time.Second
	})
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 50, 1000)
	c.WaitCaughtUp(50)

	ls := c.Nodes[1].Sidecar
	testutil.Eventually(t, 10*time.Second, func() error {
		m := gather(t, ls)
		want := map[string]float64{
			"tandem_sidecar_commit_lsn":                                          50,
			"tandem_sidecar_last_lsn":                                            50,
			"tandem_sidecar_isr_size":                                            3,
			"tandem_sidecar_replicas":                                            3,
			"tandem_sidecar_under_replicated":                                    0,
			"tandem_sidecar_follower_in_isr{follower=2}":                         1,
			"tandem_sidecar_follower_catching_up{follower=2}":                    0,
			"tandem_sidecar_follower_lag_entries{follower=3}":                    0,
			"tandem_sidecar_follower_flushed_lsn{follower=2}":                    50,
			"tandem_sidecar_info{cluster_id=test-cluster,node_id=1,role=leader}": 1,
		}
		for k, v := range want {
			if got, ok := m[k]; !ok || got != v {
				return fmt.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
			}
		}
		if m["tandem_sidecar_streamed_bytes_total{follower=2}"] < 50*1000 {
			return fmt.Errorf("streamed bytes to 2 = %v, want >= 50000", m["tandem_sidecar_streamed_bytes_total{follower=2}"])
		}
		for _, f := range []string{"2", "3"} {
			// Acks that moved the follower's applied LSN were measured.
			if n := m["tandem_sidecar_follower_apply_lag_seconds{follower="+f+"}"]; n < 1 {
				return fmt.Errorf("apply lag of follower %s measured %v times, want >= 1", f, n)
			}
		}
		if m["tandem_sidecar_isr_expands_total{follower=2}"] < 1 {
			return fmt.Errorf("no ISR expansion counted for follower 2")
		}
		if m["grpc_server_handled_total{grpc_code=OK,grpc_method=Status,grpc_service=tandem.admin.v1.AdminService,grpc_type=unary}"] < 1 &&
			m["grpc_server_started_total{grpc_method=Stream,grpc_service=tandem.replication.v1.ReplicationService,grpc_type=bidi_stream}"] < 1 {
			return fmt.Errorf("no gRPC server metrics")
		}
		return nil
	})
	// tandemctl status shows the same measurement, each follower's last.
	st, err := c.Admin(1).Status(context.Background(), &adminv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.GetReplicas() {
		if lag := r.GetApplyLagSeconds(); lag <= 0 || lag > 10 {
			t.Errorf("status: follower %d apply lag %v s, want a measured one", r.GetNodeId(), lag)
		}
	}
	fm := gather(t, c.Nodes[2].Sidecar)
	if fm["tandem_sidecar_received_bytes_total"] < 50*1000 || fm["tandem_sidecar_streaming"] != 1 {
		t.Errorf("follower: received %v bytes, streaming %v", fm["tandem_sidecar_received_bytes_total"], fm["tandem_sidecar_streaming"])
	}
	if age, ok := fm["tandem_sidecar_leader_heartbeat_age_seconds"]; !ok || age > 1 {
		t.Errorf("follower: leader heartbeat age %v (present %v)", age, ok)
	}
	if fm["grpc_client_started_total{grpc_method=Stream,grpc_service=tandem.replication.v1.ReplicationService,grpc_type=bidi_stream}"] < 1 {
		t.Errorf("follower: no gRPC client metrics")
	}

	// A stopped follower leaves the ISR: counted, under-replicated, and
	// its own sidecar counts the reconnect when it comes back.
	c.StopBroker(3)
	leader.Produce(t, 5, 100)
	testutil.Eventually(t, 10*time.Second, func() error {
		m := gather(t, ls)
		if m["tandem_sidecar_isr_shrinks_total{follower=3}"] < 1 || m["tandem_sidecar_under_replicated"] != 1 || m["tandem_sidecar_isr_size"] != 2 {
			return fmt.Errorf("shrinks %v, under-replicated %v, isr %v", m["tandem_sidecar_isr_shrinks_total{follower=3}"],
				m["tandem_sidecar_under_replicated"], m["tandem_sidecar_isr_size"])
		}
		if m["tandem_sidecar_follower_lag_entries{follower=3}"] != 5 {
			return fmt.Errorf("lag entries of 3 = %v, want 5", m["tandem_sidecar_follower_lag_entries{follower=3}"])
		}
		return nil
	})
	c.StartBroker(3)
	c.WaitCaughtUp(55)
	testutil.Eventually(t, 10*time.Second, func() error {
		m := gather(t, ls)
		if m["tandem_sidecar_isr_expands_total{follower=3}"] < 2 || m["tandem_sidecar_under_replicated"] != 0 {
			return fmt.Errorf("expands %v, under-replicated %v", m["tandem_sidecar_isr_expands_total{follower=3}"], m["tandem_sidecar_under_replicated"])
		}
		if m["tandem_sidecar_follower_connects_total{follower=3}"] < 2 {
			return fmt.Errorf("connects of 3 = %v, want 2", m["tandem_sidecar_follower_connects_total{follower=3}"])
		}
		return nil
	})
	if got := gather(t, c.Nodes[3].Sidecar)["tandem_sidecar_reconnects_total"]; got < 1 {
		t.Errorf("follower 3 reconnects = %v, want >= 1", got)
	}
}
