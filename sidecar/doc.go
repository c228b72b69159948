// Package sidecar is Tandem's replication process: one runs next to every
// broker.
//
// A sidecar serves tandem.link.v1 to its own broker on a Unix socket, and
// tandem.replication.v1, tandem.admin.v1 and grpc.health.v1 on TCP. The
// leader's sidecar takes the entries that become durable in its broker's WAL
// and streams them to every follower's sidecar, which hands them to its
// broker to append unchanged; PostgreSQL-style log shipping with Kafka's ISR
// rules.
//
// Leader (leader.go): keeps the newest entries in a bounded in-memory cache
// (cache.go) and asks the broker to replay older ones from its WAL. Each
// follower has its own stream goroutine, its own position and a bounded
// window of unacknowledged bytes, so a slow follower slows only itself. The
// follower's hello carries its position and epoch history; the leader
// computes where the two logs agree (divergence.go, Kafka KIP-101/279) and
// tells the follower to truncate there (or to wipe its WAL when the leader
// no longer holds what it needs). The ISR holds the followers caught up to
// the leader's end within --replica-lag-time-max; the commit point is the
// lowest flushed LSN of the ISR (the leader included; with etcd, also of
// the members of the ISR last published there). Both flow to the local
// broker and to the followers.
//
// Follower (follower.go): while its broker is attached, dials the leader,
// says hello with the broker's position, repairs the log as told, then hands
// every batch to the broker and acknowledges written/flushed/applied LSNs.
// Heartbeats flow both ways; silence for --peer-timeout ends the stream, and
// the follower reconnects with capped exponential backoff and jitter from
// its own position.
//
// Failover (role.go, promote.go, election.go): a sidecar's role can change
// while it runs. Promote (tandemctl promote) makes an in-sync follower the
// leader of a new epoch; every sidecar polls its peers for a newer epoch
// (--epoch-poll-interval) and follows it, and with --etcd-endpoints a
// lease-backed etcd election among in-sync replicas picks the leader. A
// node that leaves leadership fences its broker first (a follower view the
// broker confirms), then the broker re-attaches and the log is repaired
// from the epoch histories. The last (leader, epoch) is kept in
// sidecar-state.json in --data-dir. docs/operations.md is the runbook.
//
// Health: the empty service name is liveness; "tandem.Readiness"
// (ReadinessService) is readiness: attached to a broker that can write its
// WAL; on a leader, the broker leads (the check of the peers at attachment
// is over); on a follower, the sidecar streams within the lag bound.
//
// Message size limits: every gRPC message is at most --max-message-bytes
// (default 68 MiB, the largest WAL entry plus framing) on the --listen and
// broker-socket servers and all clients, and 64 KiB on --health-listen;
// entries travel in batches of about 1 MiB.
package sidecar
