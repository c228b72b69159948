package sidecar

import (
	"context"
	"fmt"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tandem-io/tandem/internal/grpcwire"
	tlog "github.com/tandem-io/tandem/internal/logging"
)

// clientOptions are the dial options of the sidecar's gRPC clients: size
// limits, logging and panic recovery.
func clientOptions(s *Sidecar, name string) []grpc.DialOption {
	opts := append(ClientOptions(s.log.Named("grpc-"+name+"-client"), s.cfg.MaxMessageBytes), s.metrics.dialOptions()...)
	if s.tls.client != nil {
		opts = append(opts, grpc.WithTransportCredentials(s.tls.client)) // replaces the plaintext default
	} else {
		opts = append(opts, grpc.WithChainStreamInterceptor(plaintextHint))
	}
	return opts
}

// ClientOptions returns dial options for a Tandem gRPC client (sidecar
// peers, tandemctl): plaintext, message size limit maxMsg, the
// go-grpc-middleware logging interceptor writing through log (successful
// calls at debug level) and a recovery interceptor that turns a panic in
// the client call path into an INTERNAL error.
func ClientOptions(log hclog.Logger, maxMsg int) []grpc.DialOption {
	glog := tlog.GRPC(log)
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			if c == codes.OK || c == codes.Canceled {
				return logging.LevelDebug
			}
			return logging.LevelWarn
		}),
	}
	return append(grpcwire.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)),
		grpc.WithChainUnaryInterceptor(recoverUnaryClient(log), logging.UnaryClientInterceptor(glog, logOpts...)),
		grpc.WithChainStreamInterceptor(recoverStreamClient(log), logging.StreamClientInterceptor(glog, logOpts...)),
	)
}

// go-grpc-middleware's recovery package only has server interceptors; these
// are their client-side counterparts.
func recoverUnaryClient(log hclog.Logger) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in gRPC client call", "method", method, "panic", fmt.Sprint(p))
				err = status.Errorf(codes.Internal, "panic in client call %s", method)
			}
		}()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func recoverStreamClient(log hclog.Logger) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (cs grpc.ClientStream, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in gRPC client stream", "method", method, "panic", fmt.Sprint(p))
				err = status.Errorf(codes.Internal, "panic in client stream %s", method)
			}
		}()
		return streamer(ctx, desc, cc, method, opts...)
	}
}
