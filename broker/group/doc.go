// Package group is Tandem's consumer-group coordinator: Kafka's classic group
// protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), the consumer group
// protocol of KIP-848 (ConsumerGroupHeartbeat, ConsumerGroupDescribe; see
// consumer_group.go), committed offsets (OffsetCommit, OffsetFetch,
// OffsetDelete), plus ListGroups, DescribeGroups and DeleteGroups. The
// states below are the classic protocol's.
// It knows nothing about the network: the broker decodes a request with
// kmsg, calls the matching Coordinator method and encodes the answer.
// Versions lists the request versions served.
//
// # Group states
//
// Every group is in one of the states Kafka tools show:
//
//	           first member joins
//	Empty ───────────────────────────► PreparingRebalance ◄──────────────┐
//	  ▲                                  │        ▲                      │
//	  │ all members gone                 │        │ member joins/leaves, │
//	  │ when the rebalance ends          │        │ leader rejoins,      │
//	  └──────────────────────────────────┤        │ session expires      │
//	                                     │        │                      │
//	        all members rejoined, or     ▼        │                      │
//	        the rebalance timeout hit  CompletingRebalance ──────────────┤
//	                                     │  leader sends SyncGroup       │
//	                                     ▼                               │
//	                                   Stable ───────────────────────────┘
//
// In detail:
//
//   - Empty: no members. The group may still hold committed offsets (also
//     the state of groups whose clients only commit offsets). An Empty group
//     with no offsets is forgotten (Kafka reports it as Dead).
//   - PreparingRebalance: members must (re)send JoinGroup. Heartbeats answer
//     REBALANCE_IN_PROGRESS to tell them so. The rebalance ends when every
//     known member has rejoined (and no member id handed out with
//     MEMBER_ID_REQUIRED is still unused), or when the largest rebalance
//     timeout of the members passes; members that did not rejoin are then
//     removed. The first rebalance of an Empty group always waits
//     InitialRebalanceDelay (Kafka's group.initial.rebalance.delay.ms, 3s),
//     once more for each delay in which new members arrived, up to the
//     rebalance timeout, so that consumers starting together share one
//     rebalance.
//   - CompletingRebalance: the generation number went up by one, a protocol
//     (assignor) supported by every member was chosen (the one most members
//     list first), every JoinGroup was answered and the leader (the first
//     member to join, or the first remaining) received all members'
//     metadata. The group waits for the leader's SyncGroup carrying the
//     assignment; other members' SyncGroup calls wait for it.
//   - Stable: every member has its assignment. Heartbeats answer with no
//     error. A member that joins, leaves, changes its subscription, or stops
//     heartbeating starts a new rebalance; a leader that rejoins does too.
//   - Dead: reported for groups that do not exist.
//
// # Liveness
//
// A member is alive while it sends anything within its session timeout
// (bounded by MinSessionTimeout and MaxSessionTimeout, Kafka's
// group.min/max.session.timeout.ms): a heartbeat, a JoinGroup, a SyncGroup or
// an OffsetCommit. While its JoinGroup or SyncGroup is waiting, it is never
// expired. An expired member is removed and the group rebalances.
//
// Static members (group.instance.id, KIP-345) are supported minimally: an
// instance that restarts and joins with its instance id takes over its old
// member's place (and, when the group is Stable and nothing changed, its
// assignment, with no rebalance); requests from the old member id get
// FENCED_INSTANCE_ID. Static members still leave on session expiry.
//
// # Offsets
//
// OffsetCommit checks the member and generation as Kafka does, then hands
// the offsets to the Persister (the broker writes a WAL entry and waits for
// it to be durable and, when replicated, committed) and only then applies
// them and answers. A failed write stores nothing and is reported as an
// error code. DeleteGroups and OffsetDelete persist tombstones the same way
// (offset -1, which deletes). At start-up (and on followers) the broker
// replays committed offsets and tombstones with Restore and topic deletions
// with DeleteTopic. Offsets expire as in Kafka (offsets.retention.minutes,
// KIP-211) when the broker calls ExpireOffsets: see expire.go.
//
// # Stored membership
//
// With a Persister that is also a GroupPersister (the broker's), each
// group's membership is stored when a generation completes, when a static
// member takes its place again under a new member id, and when the group
// empties; a group of the consumer protocol (KIP-848) is stored whenever
// its epochs, members or assignments change. The coordinator that takes
// over loads it, so members carry on without a rebalance after a restart
// or a leader change, as with Kafka. See membership_store.go.
//
// # Which node coordinates
//
// Only the node that takes writes (the leader, or a standalone broker)
// runs groups. The broker calls SetActive(false) on followers: every group
// API then answers NOT_COORDINATOR, which sends clients back to
// FindCoordinator, and all membership is dropped (ResetMembership); offsets
// and stored membership keep arriving through Restore and RestoreGroup, so
// a promoted follower serves the offsets at once and its SetActive(true)
// loads the membership.
//
// # Timers and shutdown
//
// One goroutine sleeps until the earliest deadline (session expiry, pending
// member id expiry, end of a rebalance) and acts on it. Close stops it and
// answers every waiting JoinGroup and SyncGroup with
// COORDINATOR_NOT_AVAILABLE, which makes clients look for the coordinator
// again.
package group
