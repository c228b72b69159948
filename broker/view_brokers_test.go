package broker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/link"
)

// A view that names no leader it lists (a sidecar that has just started or
// stepped down) keeps the brokers the broker knew: its Metadata answer
// still lists them, so that a Kafka client that asks this node does not
// forget the other brokers. A leader's view replaces the list.
func TestLeaderlessViewKeepsKnownBrokers(t *testing.T) {
	b, addr := unlinkedBroker(t, nil)
	host, port := b.Advertised()
	self := link.BrokerInfo{NodeID: 1, Host: host, Port: port}
	n2 := link.BrokerInfo{NodeID: 2, Host: "node-2", Port: 9092}
	n3 := link.BrokerInfo{NodeID: 3, Host: "node-3", Port: 9092}
	cl := newClient(t, addr)
	metadata := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int32
		for _, mb := range resp.Brokers {
			ids = append(ids, mb.NodeID)
		}
		slices.Sort(ids)
		return fmt.Sprintf("brokers %v controller %d", ids, resp.ControllerID)
	}
	steps := []struct {
		what string
		view link.ClusterView
		want string
	}{
		{"following node 2", link.ClusterView{Role: link.RoleFollower, LeaderID: 2, Epoch: 1, Brokers: []link.BrokerInfo{self, n2, n3}}, "brokers [1 2 3] controller 2"},
		{"no leader known, only itself listed", link.ClusterView{Role: link.RoleFollower, LeaderID: -1, Epoch: 1, Brokers: []link.BrokerInfo{self}}, "brokers [1 2 3] controller -1"},
		{"leader 3 named but not listed", link.ClusterView{Role: link.RoleFollower, LeaderID: 3, Epoch: 2, Brokers: []link.BrokerInfo{self}}, "brokers [1 2 3] controller 3"},
		{"following node 3, which lists only two", link.ClusterView{Role: link.RoleFollower, LeaderID: 3, Epoch: 2, Brokers: []link.BrokerInfo{self, n3}}, "brokers [1 3] controller 3"},
		{"leading alone", link.ClusterView{Role: link.RoleLeader, LeaderID: 1, Epoch: 3, Brokers: []link.BrokerInfo{self}}, "brokers [1] controller 1"},
	}
	for _, s := range steps {
		b.SetClusterView(s.view)
		if got := metadata(); got != s.want {
			t.Fatalf("%s: Metadata has %s, want %s", s.what, got, s.want)
		}
	}
}
