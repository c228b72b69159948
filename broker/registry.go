package broker

import (
	"context"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A handler serves one request. It runs on the connection's read loop, in
// request order, so everything that must happen in order (appending a
// produced batch, for one) happens there. It returns the function that
// produces the response; the connection's write loop calls these functions
// in request order and may block in them (an acks=-1 produce waiting for the
// commit point, a long-polling fetch, a JoinGroup waiting for its rebalance).
// A nil function means "no response" (acks=0 produce).
type handler func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response

// reqCtx is what a handler knows about the request beyond its body.
type reqCtx struct {
	ctx      context.Context // ends when the connection closes
	clientID string
	host     string // client's IP, for DescribeGroups
	version  int16

	auth *connAuth // the connection's SASL state (17_sasl.go)
	size int       // the request frame's bytes (client quotas)

	// closeConn, set by a handler, closes the connection once the answers
	// to the requests before this one are sent, reading nothing more (a
	// failed acks=0 produce: the client learns of it only that way).
	closeConn bool
}

type api struct {
	key      int16
	min, max int16
	handle   handler
}

// apis is the registry: every supported API, filled by init() in the
// NN_name.go files. ApiVersions is derived from it.
var apis = map[int16]api{}

func register(key, min, max int16, h handler) {
	if _, dup := apis[key]; dup {
		panic("broker: API registered twice: " + kmsg.NameForKey(key))
	}
	apis[key] = api{key: key, min: min, max: max, handle: h}
}

// sortedAPIs lists the registry by key.
func sortedAPIs() []api {
	out := make([]api, 0, len(apis))
	for _, a := range apis {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// timeoutCtx bounds the work of an admin request by the timeout it carries
// (30 s when it carries none).
func (rc *reqCtx) timeoutCtx(timeoutMillis int32) (context.Context, context.CancelFunc) {
	d := time.Duration(timeoutMillis) * time.Millisecond
	if d <= 0 {
		d = 30 * time.Second
	}
	return context.WithTimeout(rc.ctx, d)
}

// now wraps a response that is already complete.
func now(resp kmsg.Response) func() kmsg.Response {
	return func() kmsg.Response { return resp }
}
