package main

import (
	"errors"
	"testing"
	"time"

	"github.com/tandem-io/tandem/sidecar"
)

func TestParseFlags(t *testing.T) {
	base := []string{"--node-id", "2", "--cluster-id", "c", "--broker-socket", "/run/t/s.sock", "--listen", "127.0.0.1:9193",
		"--peers", "1=127.0.0.1:9192,2=127.0.0.1:9193,3=127.0.0.1:9194", "--leader", "1"}
	cfg, lo, err := parseFlags(append(base, "--heartbeat-interval", "2s", "--peer-timeout", "7s", "--log-level", "debug", "--log-json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID != 2 || cfg.LeaderID != 1 || len(cfg.Peers) != 3 || cfg.HeartbeatInterval != 2*time.Second ||
		cfg.PeerTimeout != 7*time.Second || cfg.ReplicaLagTimeMax != 10*time.Second || !lo.JSON || lo.Level != "debug" {
		t.Errorf("config = %+v, log options = %+v", cfg, lo)
	}
	tests := []struct {
		name string
		args []string
		want error
	}{
		{"etcd lease too short", append(base, "--etcd-endpoints", "http://127.0.0.1:2379", "--lease-ttl", "1s"), sidecar.ErrConfig},
		{"no cluster id", []string{"--node-id", "1", "--broker-socket", "/s", "--listen", "127.0.0.1:1"}, sidecar.ErrConfig},
		{"bad peers", append(base[:len(base)-4:len(base)-4], "--peers", "1:9192"), sidecar.ErrConfig},
		{"leader not a peer", append(base, "--leader", "9"), sidecar.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := parseFlags(tt.args); !errors.Is(err, tt.want) {
				t.Errorf("parseFlags(%v) = %v, want %v", tt.args, err, tt.want)
			}
		})
	}
}
