package sidecar

import (
	"fmt"
	"testing"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// A node without a leader's view lists itself and every peer broker it has
// seen in a view, with the latest address, and nothing that is not a peer.
func TestKnownBrokers(t *testing.T) {
	s := &Sidecar{cfg: Config{NodeID: 1, Peers: map[int32]string{1: "a:1", 2: "b:1", 3: "c:1"}}}
	self := &linkv1.BrokerInfo{NodeId: 1, Host: "h1", Port: 9092}
	if got := s.knownBrokers(self); len(got) != 1 || got[0] != self {
		t.Fatalf("nothing seen yet: %v, want only self", got)
	}
	s.noteBrokers([]*linkv1.BrokerInfo{
		{NodeId: 1, Host: "old-self", Port: 1},
		{NodeId: 3, Host: "h3", Port: 9092},
		{NodeId: 9, Host: "stranger", Port: 9092}, // not in --peers
	})
	s.noteBrokers([]*linkv1.BrokerInfo{{NodeId: 2, Host: "h2", Port: 9092, Rack: "r2"}}) // 3 gone from this view
	s.noteBrokers([]*linkv1.BrokerInfo{{NodeId: 3, Host: "h3-moved", Port: 9093}})
	got := s.knownBrokers(self)
	want := []string{"1 h1:9092 ", "2 h2:9092 r2", "3 h3-moved:9093 "}
	if len(got) != len(want) {
		t.Fatalf("known brokers %v, want %v", got, want)
	}
	for i, b := range got {
		if s := brokerString(b); s != want[i] {
			t.Fatalf("known broker %d is %q, want %q", i, s, want[i])
		}
	}
}

func brokerString(b *linkv1.BrokerInfo) string {
	return fmt.Sprintf("%d %s:%d %s", b.GetNodeId(), b.GetHost(), b.GetPort(), b.GetRack())
}
