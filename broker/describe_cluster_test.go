package broker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeCluster (AdminClient.describeCluster) answers the cluster id,
// controller and brokers that Metadata answers; a request for controller
// endpoints is refused.
func TestDescribeCluster(t *testing.T) {
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.Rack = "r1" })
	cl := newClient(t, addr)
	meta, err := kmsg.NewPtrMetadataRequest().RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	for v := int16(0); v <= 2; v++ {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.Version = v
		kresp, err := cl.Broker(1).Request(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		resp := kresp.(*kmsg.DescribeClusterResponse)
		if resp.ErrorCode != 0 || resp.ClusterID != *meta.ClusterID || resp.ControllerID != meta.ControllerID ||
			len(resp.Brokers) != 1 || len(meta.Brokers) != 1 {
			t.Fatalf("v%d: %+v; Metadata says cluster %s, controller %d, brokers %+v", v, resp, *meta.ClusterID, meta.ControllerID, meta.Brokers)
		}
		got, want := resp.Brokers[0], meta.Brokers[0]
		if got.NodeID != want.NodeID || got.Host != want.Host || got.Port != want.Port || got.Rack == nil || *got.Rack != "r1" || got.IsFenced {
			t.Fatalf("v%d broker %+v; Metadata lists %+v, rack r1", v, got, want)
		}
	}
	req := kmsg.NewPtrDescribeClusterRequest()
	req.Version, req.EndpointType = 1, 2
	kresp, err := cl.Broker(1).Request(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if c := kresp.(*kmsg.DescribeClusterResponse).ErrorCode; c != kerr.UnsupportedEndpointType.Code {
		t.Fatalf("controller endpoints: %v; want UNSUPPORTED_ENDPOINT_TYPE", kerr.ErrorForCode(c))
	}
}
