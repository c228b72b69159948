// Package grpcwire holds the HTTP/2 transport settings shared by every gRPC
// connection that carries WAL entries: the broker's link to its sidecar
// (Unix socket) and the replication stream between sidecars (TCP).
//
// gRPC-Go by default starts each connection with a 64 KiB flow-control
// window and grows it with a bandwidth-delay estimator that sends an HTTP/2
// PING with the data it receives and waits for the answer. On a replication
// stream that is an extra round of packets and goroutine wake-ups for every
// small batch (most of the CPU an acks=-1 produce costs at low load), and a
// window that starts too small for a follower catching up in 1 MiB batches.
// Setting the windows explicitly turns the estimator off: the windows below
// are large enough that HTTP/2 flow control never binds before Tandem's own
// per-follower window (--window-bytes, 16 MiB by default) does. A window is
// a limit, not an allocation: a connection only holds what was sent and not
// yet read.
package grpcwire

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
)

const (
	// StreamWindow is each stream's receive window.
	StreamWindow = 32 << 20
	// ConnWindow is each connection's receive window (all streams).
	ConnWindow = 64 << 20
	// BufferBytes is the size of each connection's read and write buffers:
	// a 1 MiB batch goes out in a few syscalls instead of thirty-two.
	BufferBytes = 256 << 10
)

// ServerOptions are the transport options of a server that receives or
// sends WAL entries.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(StreamWindow),
		grpc.InitialConnWindowSize(ConnWindow),
		grpc.WriteBufferSize(BufferBytes),
		grpc.ReadBufferSize(BufferBytes),
		experimental.BufferPool(Pool),
		grpc.ForceServerCodecV2(Codec),
	}
}

// DialOptions are the same settings for a client.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(StreamWindow),
		grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithWriteBufferSize(BufferBytes),
		grpc.WithReadBufferSize(BufferBytes),
		experimental.WithBufferPool(Pool),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec)),
	}
}
