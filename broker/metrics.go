package broker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tandem-io/tandem/broker/wal"
)

// metrics are the broker's Prometheus series. Each broker has its own
// registry so that tests can run several brokers in one process.
type metrics struct {
	reg             *prometheus.Registry
	produceLatency  *prometheus.HistogramVec
	bytesIn         prometheus.Counter
	recordsIn       prometheus.Counter
	walLastLSN      prometheus.GaugeFunc
	walDurableLSN   prometheus.GaugeFunc
	commitLSN       prometheus.GaugeFunc
	walFirstLSN     prometheus.GaugeFunc
	retentionDelete prometheus.Counter
	// compaction (compact.go)
	compactedBatches  prometheus.Counter
	retentionCopied   prometheus.Counter
	compactionRemoved prometheus.Counter
	fsyncLatency      prometheus.Histogram
	tlsFailures       prometheus.Counter
	saslFailures      prometheus.Counter
	aclDenied         *prometheus.CounterVec
	throttled         *prometheus.CounterVec
	throttleTime      *prometheus.CounterVec
	transactions      *prometheus.CounterVec
	producersExpired  *prometheus.CounterVec
	acceptErrors      prometheus.Counter
	connRefused       *prometheus.CounterVec
}

func newMetrics(b *Broker) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.produceLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tandem_broker_produce_latency_seconds",
		Help:    "Time from receiving a Produce request to answering it, by acks.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	}, []string{"acks"})
	m.bytesIn = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_produced_bytes_total", Help: "Record batch bytes appended by Produce."})
	m.recordsIn = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_produced_records_total", Help: "Records appended by Produce."})
	m.walLastLSN = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_wal_last_lsn", Help: "LSN of the last WAL entry written."},
		func() float64 { return float64(b.wal.LastLSN()) })
	m.walDurableLSN = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_wal_durable_lsn", Help: "Highest LSN durable under the fsync policy."},
		func() float64 { return float64(b.wal.DurableLSN()) })
	m.walFirstLSN = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_wal_first_lsn", Help: "Oldest LSN still on disk (retention moves it)."},
		func() float64 { return float64(b.wal.FirstLSN()) })
	m.commitLSN = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_commit_lsn", Help: "Commit point: high watermarks follow it."},
		func() float64 { return float64(b.CommitLSN()) })
	m.retentionDelete = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_retention_deleted_segments_total", Help: "WAL segments deleted by retention."})
	m.compactedBatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_compacted_batches_total",
		Help: "Record batches of compacted topics that this node, as leader, rewrote: when it cleaned them, and before retention deleted their segment."})
	m.retentionCopied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_retention_copied_batches_total",
		Help: "Record batches of topics whose retention.ms is longer than the node's (or -1) that this node, as leader, copied forward before retention deleted their segment."})
	m.compactionRemoved = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_compaction_removed_records_total",
		Help: "Records that compaction left out: replaced by a later record of the same key, expired tombstones, aborted transactional records and transaction markers."})
	m.fsyncLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tandem_broker_wal_fsync_seconds",
		Help:    "Time one fsync of a WAL segment file takes (group commit: one fsync covers every entry appended before it).",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16), // 50 µs .. 1.6 s
	})
	m.tlsFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_tls_handshake_failures_total",
		Help: "Kafka connections refused because their TLS handshake failed (not counting probes that hang up before it)."})
	m.saslFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_sasl_login_failures_total",
		Help: "SASL logins refused (unknown user, wrong password, broken exchange)."})
	m.aclDenied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_broker_authorization_failures_total",
		Help: "Operations refused by the ACLs (--acls), by resource type: topic, group, cluster, transactional_id."},
		[]string{"resource_type"})
	m.throttled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_broker_throttled_requests_total",
		Help: "Requests that took their client over a client quota and were answered with a throttle time, by quota: producer_byte_rate, consumer_byte_rate."},
		[]string{"quota"})
	m.throttleTime = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_broker_throttle_seconds_total",
		Help: "Throttle time handed to clients over a client quota, by quota."},
		[]string{"quota"})
	m.transactions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_broker_transactions_total",
		Help: "Transactions this broker ended as the leader, by result: commit, abort (timeouts included), timeout."},
		[]string{"result"})
	m.producersExpired = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_broker_producer_state_expired_total",
		Help: "Idle producer state this node forgot (--producer-id-expiration, Kafka's producer.id.expiration.ms), by kind: sequence_window (one producer on one partition) or producer_id."},
		[]string{"kind"})
	producerWindows := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_producer_sequence_windows",
		Help: "Idempotent producer states held (one per producer and partition it wrote to), each about 300 bytes of memory; idle ones expire after --producer-id-expiration."},
		func() float64 {
			b.appendMu.Lock()
			defer b.appendMu.Unlock()
			return float64(len(b.producers))
		})
	openTxns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_transactions_open",
		Help: "Transactions open (ongoing or completing), by the coordinator state this node holds (the leader's, replicated)."},
		func() float64 { n, _ := b.openTransactions(time.Now()); return float64(n) })
	oldestTxn := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_transaction_oldest_open_seconds",
		Help: "How long the oldest open transaction has run (0: none): read_committed consumers of its partitions wait for it to end."},
		func() float64 { _, d := b.openTransactions(time.Now()); return d.Seconds() })
	quotaEntities := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_client_quota_entities", Help: "Users, client ids and defaults with client quotas (the same on every node once replicated)."},
		func() float64 { return float64(b.quotas.Len()) })
	aclBindings := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_acls", Help: "Kafka ACL bindings stored (the same on every node once replicated)."},
		func() float64 { return float64(b.acls.Len()) })
	fetchSessions := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_broker_fetch_sessions", Help: "Fetch sessions (KIP-227) this broker keeps."},
		func() float64 { return float64(b.fetchSessions.count()) })
	m.acceptErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_broker_accept_errors_total",
		Help: "Failed accepts of Kafka connections (out of file descriptors or memory, or a connection that failed on the way in); the broker waits and accepts again."})
	m.connRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_broker_connections_refused_total",
		Help: "Kafka connections closed as soon as they were accepted because a limit was reached, by reason: max_connections, max_connections_per_ip."},
		[]string{"reason"})
	m.connRefused.WithLabelValues(refusedMaxConnections)
	m.connRefused.WithLabelValues(refusedPerIP)
	connGauge := func(name, help string, f func(*connLimiter) int) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if b.connLim == nil { // scraped before Open finished
				return 0
			}
			return float64(f(b.connLim))
		})
	}
	conns := connGauge("tandem_broker_connections", "Kafka client connections this node holds.", (*connLimiter).count)
	maxConns := connGauge("tandem_broker_max_connections",
		"Kafka client connections this node takes at most now (--max-connections, or the automatic limit from the open-file limit; 0: none).",
		(*connLimiter).limit)
	walStat := func(name, help string, f func(st wal.Stats) uint64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(b.wal.Stats())) })
	}
	takesWrites := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tandem_broker_takes_writes",
		Help: "1 while this broker appends writes of its own: it leads (or runs without a sidecar), and is neither handing the leadership over nor stopping. Summed over a cluster: 1, or 0 while no node leads; never more for longer than a failover's first moments."},
		func() float64 {
			if b.appendsAllowed(b.clusterView()) {
				return 1
			}
			return 0
		})
	viewEpoch := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tandem_broker_leader_epoch",
		Help: "The leader epoch of this broker's cluster view (from its sidecar)."},
		func() float64 { return float64(b.clusterView().Epoch) })
	m.reg.MustRegister(takesWrites, viewEpoch, m.produceLatency, m.bytesIn, m.recordsIn, m.walLastLSN, m.walDurableLSN,
		m.walFirstLSN, m.commitLSN, m.retentionDelete, m.compactedBatches, m.retentionCopied, m.compactionRemoved, m.fsyncLatency, m.tlsFailures, m.saslFailures, m.aclDenied, aclBindings, m.throttled, m.throttleTime, m.transactions, m.producersExpired, producerWindows, openTxns, oldestTxn, quotaEntities, fetchSessions,
		m.acceptErrors, m.connRefused, conns, maxConns, groupLag{b: b, desc: groupLagDesc},
		walStat("tandem_broker_wal_fsyncs_total", "fsyncs of WAL segment files (group commit, segment rolls, truncation, close).",
			func(st wal.Stats) uint64 { return st.Fsyncs }),
		walStat("tandem_broker_wal_appends_total", "Entries appended to the WAL (leader and follower).",
			func(st wal.Stats) uint64 { return st.Appends }),
		walStat("tandem_broker_wal_written_bytes_total", "Frame bytes written to the WAL.",
			func(st wal.Stats) uint64 { return st.BytesWritten }),
		walStat("tandem_broker_wal_segment_rolls_total", "New WAL segment files created by rolling.",
			func(st wal.Stats) uint64 { return st.Rolls }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// groupLagDesc describes tandem_broker_consumer_group_lag.
var groupLagDesc = prometheus.NewDesc("tandem_broker_consumer_group_lag",
	"Records between a consumer group's committed offsets and the high watermarks of the partitions it committed on, summed per topic (kafka_exporter's kafka_consumergroup_lag_sum). Committed offsets are WAL entries, so every node reports every group, each as of its own high watermarks.",
	[]string{"group", "topic"}, nil)

// groupLag collects tandem_broker_consumer_group_lag when scraped, the
// lag an alert on a consumer that falls behind (or stopped) watches,
// without an exporter that asks the Kafka API.
type groupLag struct {
	b    *Broker
	desc *prometheus.Desc
}

func (c groupLag) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c groupLag) Collect(ch chan<- prometheus.Metric) {
	if c.b.groups == nil { // scraped before Open finished
		return
	}
	for group, offsets := range c.b.groups.AllOffsets() {
		byTopic := map[string]int64{}
		for _, o := range offsets {
			if o.Offset < 0 {
				continue // nothing committed in fact
			}
			p := c.b.partition(o.Topic, o.Partition)
			if p == nil {
				continue // its topic was deleted
			}
			_, hw, _ := p.watermarks()
			byTopic[o.Topic] += max(hw-o.Offset, 0)
		}
		for topic, lag := range byTopic {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(lag), group, topic)
		}
	}
}

// observeFsync records one WAL group-commit fsync (wal.Options.OnSync).
func (m *metrics) observeFsync(d time.Duration) { m.fsyncLatency.Observe(d.Seconds()) }

func (m *metrics) observeProduce(acks int16, d time.Duration) {
	m.produceLatency.WithLabelValues(strconv.Itoa(int(acks))).Observe(d.Seconds())
}

// Registry is the broker's Prometheus registry, served on --metrics-listen.
func (b *Broker) Registry() *prometheus.Registry { return b.metrics.reg }
