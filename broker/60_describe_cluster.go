package broker

// DescribeCluster (key 60), v0-v2.
//
// What Kafka's AdminClient.describeCluster asks brokers that support it
// (KIP-700): the cluster id, the controller and the brokers, as Metadata
// lists them. The controller is the cluster's leader, which takes topic
// and config changes. Only broker endpoints exist here: a request for
// controller endpoints (v1+, KIP-919) gets UNSUPPORTED_ENDPOINT_TYPE. No
// broker is ever reported fenced.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/acl"
)

func init() { register(kmsg.DescribeCluster.Int16(), 0, 2, handleDescribeCluster) }

func handleDescribeCluster(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DescribeClusterRequest)
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = 1 // brokers
	if r.Version >= 1 && r.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		msg := "this cluster has broker endpoints only"
		resp.ErrorMessage = &msg
		return now(resp)
	}
	view := b.clusterView()
	resp.ClusterID = b.clusterID()
	resp.ControllerID = view.LeaderID
	resp.ClusterAuthorizedOperations = -2147483648 // not asked for: Kafka's "omitted"
	if r.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = b.authorizedOps(rc, kmsg.ACLResourceTypeCluster, acl.ClusterName)
	}
	for _, bi := range view.Brokers {
		rb := kmsg.NewDescribeClusterResponseBroker()
		rb.NodeID, rb.Host, rb.Port = bi.NodeID, bi.Host, bi.Port
		if bi.Rack != "" {
			rack := bi.Rack
			rb.Rack = &rack
		}
		resp.Brokers = append(resp.Brokers, rb)
	}
	return now(resp)
}
