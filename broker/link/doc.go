// Package link is the broker's side of tandem.link.v1: the gRPC stream that
// joins a broker to the sidecar running next to it (see
// proto/tandem/link/v1/link.proto for the message-level contract).
//
// The broker calls Run with the sidecar's Unix socket. Run dials the socket,
// opens one Attach stream, says hello (node id, Kafka address, WAL first,
// last and durable LSN, epoch history) and then does what the sidecar asks:
//
//   - Leader: pushes every entry that becomes durable in the WAL, starting
//     where the sidecar asked (SubscribeCommitted), and answers replay
//     requests for older entries from the WAL, in chunks of bounded size.
//   - Follower: appends the leader's entries unchanged (Broker.ApplyEntries)
//     and reports how far it got; truncates or resets the WAL when the
//     sidecar says the log diverged or must be re-cloned.
//   - Any role: passes the cluster view and the commit point to the broker
//     and answers checksum requests.
//
// When the broker stops on purpose (Stopper) while it leads, the link tells
// the sidecar, which hands the leadership to an in-sync follower, and Run
// returns once the sidecar ends the stream (Kafka's controlled shutdown).
//
// When the stream breaks, Run reconnects with capped exponential backoff and
// jitter; meanwhile the broker keeps serving with the last view it got. The
// sidecar keeps no state about the broker across attachments: each new
// stream starts with a fresh hello, so nothing is skipped or applied twice.
//
// Goroutines per attachment: one receives (and dispatches), one sends, one
// pushes committed entries (leader only), one serves replay and checksum
// requests, one applies follower operations in order, one sends each
// AppliedUpTo once its entries are durable (the acker), and, when the
// sidecar asks for it in its cluster view, one reports whether the WAL
// takes writes and where it starts (storageWatcher), and, for a broker that
// stops on purpose, one that waits for the stop (stopWatcher). Only the
// sender calls stream.Send.
package link
