package sidecar

import (
	"strconv"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
)

// Prometheus metrics of a sidecar, served by tandem-sidecar on
// --metrics-listen at /metrics. Each Sidecar has its own registry (tests run
// several in one process). docs/replication-observability.md explains every
// series to an operator.
//
// Positions, lag, ISR and heartbeat ages are read from the same snapshot
// that the admin Status RPC (tandemctl status) returns, when Prometheus
// scrapes: they can never disagree with tandemctl. Counters are bumped where
// the event happens:
//
//	tandem_sidecar_isr_shrinks_total{follower}    leader.updateLocked
//	tandem_sidecar_isr_expands_total{follower}    leader.updateLocked
//	tandem_sidecar_follower_connects_total{follower}  leader.handshake
//	tandem_sidecar_streamed_bytes_total{follower} leader.serve (payload bytes sent)
//	tandem_sidecar_catchup_throttled_total{follower}  leader.serve (a batch held back by --catchup-bytes-per-sec)
//	tandem_sidecar_catchup_not_gaining_total{follower}  leader.serve (a throttled catch-up that gained nothing in a window; throttle.go)
//	tandem_sidecar_received_bytes_total           follower.streamOnce (payload bytes received)
//	tandem_sidecar_reconnects_total               follower.followWhileAttached (every attempt to open a stream but the first)
//	tandem_sidecar_follower_apply_lag_seconds{follower}  leader.onAck (histogram; applylag.go)
//
// gRPC server and client metrics (grpc_server_handled_total,
// grpc_server_handling_seconds, grpc_client_handled_total, ...) come from
// go-grpc-middleware's Prometheus provider.
type metrics struct {
	reg *prometheus.Registry

	isrShrinks *prometheus.CounterVec
	isrExpands *prometheus.CounterVec
	connects   *prometheus.CounterVec
	streamed   *prometheus.CounterVec
	throttled  *prometheus.CounterVec
	notGaining *prometheus.CounterVec
	received   prometheus.Counter
	reconnects prometheus.Counter
	applyLags  *prometheus.HistogramVec

	// attempted is set by the follower's first attempt to open a stream;
	// every later attempt counts as a reconnect.
	attempted atomic.Bool
	// leaderHeard is when this follower last received any message from
	// the leader (UnixNano; 0 = never).
	leaderHeard atomic.Int64

	grpcServer *grpcprom.ServerMetrics
	grpcClient *grpcprom.ClientMetrics
}

// applyLagBuckets run from 0.25 ms to 60 s, each about 1.5 times the one
// before, so that quantiles read from them are within that factor.
var applyLagBuckets = prometheus.ExponentialBucketsRange(0.00025, 60, 32)

// grpcLatencyBuckets cover unary admin calls (sub-millisecond) to long
// replication streams (hours are in +Inf).
var grpcLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600}

func newMetrics(s *Sidecar) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	perFollower := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"follower"})
	}
	m.isrShrinks = perFollower("tandem_sidecar_isr_shrinks_total",
		"Leader: times a follower left the ISR (not caught up within --replica-lag-time-max).")
	m.isrExpands = perFollower("tandem_sidecar_isr_expands_total",
		"Leader: times a follower joined (or rejoined) the ISR.")
	m.connects = perFollower("tandem_sidecar_follower_connects_total",
		"Leader: replication streams accepted from a follower (each reconnect counts).")
	m.streamed = perFollower("tandem_sidecar_streamed_bytes_total",
		"Leader: WAL entry payload bytes sent to a follower.")
	m.throttled = perFollower("tandem_sidecar_catchup_throttled_total",
		"Leader: times the next batch for a follower outside the ISR waited for --catchup-bytes-per-sec.")
	m.notGaining = perFollower("tandem_sidecar_catchup_not_gaining_total",
		"Leader: windows of 3 x --replica-lag-time-max in which a follower held back by --catchup-bytes-per-sec received no more bytes than the leader took in (it is not catching up).")
	m.received = prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_sidecar_received_bytes_total",
		Help: "Follower: WAL entry payload bytes received from the leader."})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_sidecar_reconnects_total",
		Help: "Follower: attempts to open a replication stream to the leader after the first one (after a broken stream, a leader that could not be reached, or the local broker re-attaching)."})
	m.applyLags = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_sidecar_follower_apply_lag_seconds",
		Help:    "Leader: for each ack that moves a follower's applied LSN, the time since the oldest entry it newly covers arrived durable from the leader's broker (PostgreSQL's replay_lag).",
		Buckets: applyLagBuckets}, []string{"follower"})
	m.grpcServer = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(grpcLatencyBuckets)))
	m.grpcClient = grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram(grpcprom.WithHistogramBuckets(grpcLatencyBuckets)))
	m.reg.MustRegister(m.isrShrinks, m.isrExpands, m.connects, m.streamed, m.throttled, m.notGaining, m.received, m.reconnects, m.applyLags,
		m.grpcServer, m.grpcClient, &statusCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the sidecar's Prometheus registry, served on --metrics-listen.
func (s *Sidecar) Registry() *prometheus.Registry { return s.metrics.reg }

// dialOptions adds the gRPC client metrics interceptors.
func (m *metrics) dialOptions() []grpc.DialOption {
	if m == nil {
		return nil
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(m.grpcClient.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(m.grpcClient.StreamClientInterceptor()),
	}
}

func (m *metrics) isrChanged(follower int32, in bool) {
	if m == nil {
		return
	}
	if in {
		m.isrExpands.WithLabelValues(nodeLabel(follower)).Inc()
	} else {
		m.isrShrinks.WithLabelValues(nodeLabel(follower)).Inc()
	}
}

// The hooks below are called where the events happen. They do nothing on
// a nil *metrics (unit tests build leaders and followers without Open).

// applyLag records one follower ack's apply lag (applylag.go).
func (m *metrics) applyLag(follower int32, d time.Duration) {
	if m != nil {
		m.applyLags.WithLabelValues(nodeLabel(follower)).Observe(d.Seconds())
	}
}

// streamAttempt counts a follower's attempt to open a stream.
func (m *metrics) streamAttempt() {
	if m != nil && m.attempted.Swap(true) {
		m.reconnects.Inc()
	}
}

// followerConnected counts a stream accepted from a follower.
func (m *metrics) followerConnected(id int32) {
	if m != nil {
		m.connects.WithLabelValues(nodeLabel(id)).Inc()
	}
}

// sent counts payload bytes shipped to a follower.
func (m *metrics) sent(id int32, bytes int) {
	if m != nil {
		m.streamed.WithLabelValues(nodeLabel(id)).Add(float64(bytes))
	}
}

// catchupThrottled counts a batch for a follower outside the ISR held back
// by --catchup-bytes-per-sec.
func (m *metrics) catchupThrottled(id int32) {
	if m != nil {
		m.throttled.WithLabelValues(nodeLabel(id)).Inc()
	}
}

// catchupNotGaining counts a window in which a throttled follower gained
// nothing on the leader.
func (m *metrics) catchupNotGaining(id int32) {
	if m != nil {
		m.notGaining.WithLabelValues(nodeLabel(id)).Inc()
	}
}

// receivedBytes counts payload bytes received from the leader.
func (m *metrics) receivedBytes(n int) {
	if m != nil {
		m.received.Add(float64(n))
	}
}

// heardLeader records that a message came from the leader.
func (m *metrics) heardLeader() {
	if m != nil {
		m.leaderHeard.Store(time.Now().UnixNano())
	}
}

func nodeLabel(id int32) string { return strconv.Itoa(int(id)) }

// statusCollector turns the admin status snapshot into gauges at scrape
// time.
type statusCollector struct{ s *Sidecar }

var (
	descInfo = prometheus.NewDesc("tandem_sidecar_info",
		"Always 1; labels name this node, its cluster and its role (leader or follower).", []string{"node_id", "cluster_id", "role"}, nil)
	descEpoch = prometheus.NewDesc("tandem_sidecar_epoch", "Current leader epoch.", nil, nil)
	descLast  = prometheus.NewDesc("tandem_sidecar_last_lsn",
		"Newest LSN in this node's WAL (leader: its durable end, the last LSN it can ship).", nil, nil)
	descDurable = prometheus.NewDesc("tandem_sidecar_durable_lsn",
		"Newest LSN durable on this node (follower: applied and fsynced by its broker).", nil, nil)
	descCommit = prometheus.NewDesc("tandem_sidecar_commit_lsn",
		"Replication commit point this node knows: every in-sync replica holds the log up to here; high watermarks follow it.", nil, nil)
	descLinked = prometheus.NewDesc("tandem_sidecar_broker_linked", "1 while the broker is attached on the Unix socket.", nil, nil)
	descReady  = prometheus.NewDesc("tandem_sidecar_ready", "1 while the tandem.Readiness health service is SERVING.", nil, nil)
	descStore  = prometheus.NewDesc("tandem_sidecar_broker_storage_failing",
		"1 while the broker reports that it cannot write its WAL (a full disk, an I/O error).", nil, nil)
	descISR = prometheus.NewDesc("tandem_sidecar_isr_size",
		"Replicas in sync, the leader included (on a follower: the ISR last announced by the leader).", nil, nil)
	descReplicas = prometheus.NewDesc("tandem_sidecar_replicas", "Configured replicas (--peers), this node included.", nil, nil)
	descUnder    = prometheus.NewDesc("tandem_sidecar_under_replicated",
		"Leader only: 1 while the ISR is smaller than the configured replicas.", nil, nil)
	descStreaming = prometheus.NewDesc("tandem_sidecar_streaming", "Follower only: 1 while streaming from the leader.", nil, nil)
	descLeaderHB  = prometheus.NewDesc("tandem_sidecar_leader_heartbeat_age_seconds",
		"Follower only: seconds since the last message (entries or heartbeat) from the leader.", nil, nil)

	fl           = []string{"follower"}
	descFConnect = prometheus.NewDesc("tandem_sidecar_follower_connected", "Leader: 1 while the follower's stream is open.", fl, nil)
	descFInISR   = prometheus.NewDesc("tandem_sidecar_follower_in_isr", "Leader: 1 while the follower is in the ISR.", fl, nil)
	descFCatchup = prometheus.NewDesc("tandem_sidecar_follower_catching_up",
		"Leader: 1 while the follower's stream is open and it has not yet reached the leader's end since it connected (STATE catchup).", fl, nil)
	descFSent    = prometheus.NewDesc("tandem_sidecar_follower_sent_lsn", "Leader: highest LSN sent to the follower.", fl, nil)
	descFFlushed = prometheus.NewDesc("tandem_sidecar_follower_flushed_lsn", "Leader: highest LSN durable on the follower.", fl, nil)
	descFApplied = prometheus.NewDesc("tandem_sidecar_follower_applied_lsn", "Leader: highest LSN applied on the follower.", fl, nil)
	descFLagE    = prometheus.NewDesc("tandem_sidecar_follower_lag_entries",
		"Leader: WAL entries the follower is behind (leader's last LSN minus the follower's flushed LSN).", fl, nil)
	descFLagB = prometheus.NewDesc("tandem_sidecar_follower_lag_bytes",
		"Leader: approximate payload bytes the follower is behind (counted from the leader's cache; a lower bound beyond it).", fl, nil)
	descFLagS = prometheus.NewDesc("tandem_sidecar_follower_lag_seconds",
		"Leader: seconds since the follower was last caught up (0 when caught up). Above --replica-lag-time-max it leaves the ISR.", fl, nil)
	descFHB = prometheus.NewDesc("tandem_sidecar_follower_heartbeat_age_seconds",
		"Leader: seconds since the last message (ack or heartbeat) from the follower.", fl, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descEpoch, descLast, descDurable, descCommit, descLinked, descReady,
		descStore, descISR, descReplicas, descUnder, descStreaming, descLeaderHB,
		descFConnect, descFInISR, descFCatchup, descFSent, descFFlushed, descFApplied, descFLagE, descFLagB, descFLagS, descFHB} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	now := time.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	role := "follower"
	if st.GetRole() == adminv1.Role_ROLE_LEADER {
		role = "leader"
	}
	gauge(descInfo, 1, nodeLabel(st.GetNodeId()), st.GetClusterId(), role)
	gauge(descEpoch, float64(st.GetEpoch()))
	gauge(descLast, float64(st.GetLastLsn()))
	gauge(descDurable, float64(st.GetDurableLsn()))
	gauge(descCommit, float64(st.GetCommitLsn()))
	gauge(descLinked, b2f(st.GetLinked()))
	gauge(descReady, b2f(st.GetReady()))
	gauge(descStore, b2f(st.GetStorageError() != ""))
	gauge(descISR, float64(len(st.GetIsr())))
	replicas := max(len(st.GetPeers()), 1)
	gauge(descReplicas, float64(replicas))
	if role == "leader" {
		gauge(descUnder, b2f(len(st.GetIsr()) < replicas))
		for _, r := range st.GetReplicas() {
			id := nodeLabel(r.GetNodeId())
			gauge(descFConnect, b2f(r.GetConnected()), id)
			gauge(descFInISR, b2f(r.GetInIsr()), id)
			gauge(descFCatchup, b2f(r.GetState() == adminv1.ReplicaState_REPLICA_STATE_CATCHUP), id)
			gauge(descFSent, float64(r.GetSentLsn()), id)
			gauge(descFFlushed, float64(r.GetFlushedLsn()), id)
			gauge(descFApplied, float64(r.GetAppliedLsn()), id)
			gauge(descFLagE, float64(r.GetLagEntries()), id)
			gauge(descFLagB, float64(r.GetLagBytes()), id)
			gauge(descFLagS, r.GetLagSeconds(), id)
			if hb := r.GetLastHeartbeat(); hb != nil {
				gauge(descFHB, now.Sub(hb.AsTime()).Seconds(), id)
			}
		}
		return
	}
	gauge(descStreaming, b2f(st.GetStreaming()))
	if t := c.s.metrics.leaderHeard.Load(); t != 0 {
		gauge(descLeaderHB, now.Sub(time.Unix(0, t)).Seconds())
	}
}
