package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tandem-io/tandem/broker/acl"
	"github.com/tandem-io/tandem/broker/group"
	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/quota"
	"github.com/tandem-io/tandem/broker/sasl"
	"github.com/tandem-io/tandem/broker/wal"
	"github.com/tandem-io/tandem/internal/certs"
)

// ErrClosed is returned by operations on a closed broker.
var ErrClosed = errors.New("broker: closed")

// Broker is one Kafka-compatible broker on its WAL. Open it, Serve it, Close it.
type Broker struct {
	cfg    Config
	log    hclog.Logger
	tls    *tls.Config        // the Kafka listener's; nil: plaintext (tls.go)
	tlsLog certs.HandshakeLog // how loudly to log failed handshakes
	// tlsClient dials other brokers' Kafka listeners (nil: plaintext).
	tlsClient *tls.Config
	sasl      *sasl.Store        // users who may log in; nil: no SASL (17_sasl.go)
	saslLog   certs.HandshakeLog // how loudly to log refused logins
	acls      *acl.Set           // every ACL binding, replicated through the WAL (29_acls.go)
	authz     *acl.Authorizer    // nil: ACLs not enforced (--acls off)
	aclLog    certs.HandshakeLog // how loudly to log refusals, by principal
	quotas    *quota.Store       // client quotas, replicated through the WAL, and this node's rates (48_client_quotas.go)
	scram     *sasl.Replicated   // SASL users set through Kafka's API, replicated through the WAL (50_scram_credentials.go)
	wal       *wal.Log
	groups    *group.Coordinator
	host      string
	port      int32

	// appendMu serialises WAL appends and the state changes they imply,
	// so that offsets and LSNs are assigned in the same order.
	appendMu         sync.Mutex
	producers        map[producerKey]*seqWindow  // guarded by appendMu
	pidEpochs        map[int64]int16             // guarded by appendMu
	pidBumps         map[int64]int16             // guarded by appendMu; the epoch the last InitProducerId bump of an id handed out
	windows          *windowList                 // guarded by appendMu; the producers' windows, least recently written first (producer_expiry.go)
	pidWindows       map[int64]int32             // guarded by appendMu; windows per producer id
	tpWindows        map[tp]map[int64]*seqWindow // guarded by appendMu; the windows of each partition, by producer id (DescribeProducers)
	pidIdleSince     map[int64]time.Time         // guarded by appendMu; producer ids with no window, since when
	pidIdle          []idlePID                   // guarded by appendMu; the same, oldest first (stale entries skipped)
	lsnMarks         []lsnMark                   // guarded by appendMu; the applied LSN at recent producer sweeps
	nextPID          int64                       // guarded by appendMu
	txns             map[string]*txnState        // guarded by appendMu; transaction coordinator state by transactional id (txn.go)
	lastApplied      uint64                      // guarded by appendMu
	skipMetaUpTo     uint64                      // guarded by appendMu; metadata entries the checkpoint covers
	compactLSN       atomic.Uint64               // the last TypeCompactedBatch entry applied (compact.go)
	keyIndexes       keyIndexes                  // compaction's latest offset of every key, kept between rounds (compact.go)
	awaitingSnapshot bool                        // guarded by appendMu; re-cloned, state snapshot not seen yet
	rebuildPending   bool                        // guarded by appendMu; a snapshot arrived: rebuild after applying

	// A rebuild of the state in progress (rebuild, readWhole):
	// rebuildSeq is odd while one runs (read without a lock on every
	// Fetch), and rebuildDone, guarded by rebuildMu, is closed when it
	// ends.
	rebuildSeq  atomic.Uint64
	rebuildMu   sync.Mutex
	rebuildDone chan struct{}

	// recoveredWhileScanning: Open rebuilt the state during WAL recovery
	// (recoveryReplay), not with a second pass (replay). Set once in Open.
	recoveredWhileScanning bool

	mu          sync.RWMutex
	topics      map[string]*topic // guarded by mu
	view        link.ClusterView  // guarded by mu
	clusterName string            // guarded by mu; the kept cluster id (clusterid.go), Kafka's cluster id in Metadata

	commitMu  sync.Mutex
	commitLSN uint64          // guarded by commitMu
	pending   []pendingCommit // guarded by commitMu; ascending LSN
	commitCh  chan struct{}   // guarded by commitMu; closed when commitLSN moves
	commitGen uint64          // guarded by commitMu; bumped when leadership is lost or the WAL truncated
	// termStart: the first LSN of this node's leader epoch termEpoch
	// while entries before it (earlier leaders') are not yet committed,
	// else 0; termStarted is when that entry was written. Guarded by
	// commitMu; only for the log line that says when end offsets are
	// available again (ListOffsets, 02_list_offsets.go).
	termStart     uint64
	termEpoch     uint32
	termStarted   time.Time
	hwNotify      notifier      // broadcast when any high watermark moves
	fetchSessions fetchSessions // KIP-227 (fetch_session.go)
	metrics       *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	lnMu    sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]*clientConn
	connLim *connLimiter // client connection limits (connlimit.go)
	// linkDone is closed when the sidecar link's goroutine ends (nil: no
	// link was started). Guarded by lnMu.
	linkDone chan struct{}

	// Controlled shutdown (handOver): once stopping is set (under
	// appendMu) nothing more is appended, and stoppingCh (link.Stopper)
	// is closed.
	stopping   atomic.Bool
	stoppingCh chan struct{}
	stopOnce   sync.Once

	// writesUntil is when the link's fence of this leading broker is due
	// (link.WritesBounder); nil: no bound. Every append checks it.
	writesUntil atomic.Pointer[time.Time]
}

// Open opens (or creates) the broker's WAL under cfg.DataDir and rebuilds
// the broker's state by replaying it. It does not listen yet: call Serve.
func Open(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("broker: invalid config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.Default()
	}
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.Listen
	}
	tlsServer, tlsClient, err := loadTLS(cfg, cfg.Logger.Named("tls"))
	if err != nil {
		return nil, err
	}
	var users *sasl.Store
	if cfg.SASLUsersFile != "" {
		log := cfg.Logger.Named("sasl")
		if users, err = sasl.NewStore(cfg.SASLUsersFile, func(err error) {
			log.Error("the SASL users file changed but cannot be read; still using the users read before", "file", cfg.SASLUsersFile, "error", err)
		}); err != nil {
			return nil, fmt.Errorf("broker: SASL users: %w", err)
		}
		log.Info("clients must log in with SASL", "users_file", cfg.SASLUsersFile, "mechanisms", fmt.Sprint(sasl.Mechanisms))
	}
	host, portStr, _ := net.SplitHostPort(cfg.Advertise)
	port, _ := strconv.Atoi(portStr)
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:          cfg,
		log:          cfg.Logger,
		tls:          tlsServer,
		tlsClient:    tlsClient,
		sasl:         users,
		host:         host,
		port:         int32(port),
		producers:    make(map[producerKey]*seqWindow),
		pidEpochs:    make(map[int64]int16),
		windows:      newWindowList(),
		pidWindows:   make(map[int64]int32),
		tpWindows:    make(map[tp]map[int64]*seqWindow),
		pidIdleSince: make(map[int64]time.Time),
		pidBumps:     make(map[int64]int16),
		txns:         make(map[string]*txnState),
		topics:       make(map[string]*topic),
		acls:         acl.NewSet(),
		stoppingCh:   make(chan struct{}),
		quotas:       quota.NewStore(),
		scram:        sasl.NewReplicated(),
		commitCh:     make(chan struct{}),
		ctx:          ctx,
		cancel:       cancel,
		conns:        make(map[net.Conn]*clientConn),
	}
	if users != nil {
		users.UseReplicated(b.scram)
	}
	if cfg.ACLs {
		super, _ := acl.ParseSuperUsers(cfg.SuperUsers) // Validate checked it
		if cfg.SASLBrokerUser != "" {
			super["User:"+cfg.SASLBrokerUser] = true
		}
		b.authz = &acl.Authorizer{Set: b.acls, SuperUsers: super, AllowIfNoACL: cfg.AllowEveryoneIfNoACL}
		supers := make([]string, 0, len(super))
		for p := range super {
			supers = append(supers, p)
		}
		sort.Strings(supers)
		cfg.Logger.Named("acl").Info("enforcing Kafka ACLs", "super_users", strings.Join(supers, ";"),
			"allow_everyone_if_no_acl", cfg.AllowEveryoneIfNoACL)
		if users == nil && !cfg.TLSClientAuth {
			cfg.Logger.Named("acl").Warn("ACLs are enforced but clients neither log in (--sasl-users) nor show certificates (--tls-client-auth): every client is User:ANONYMOUS")
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		cancel()
		return nil, fmt.Errorf("broker: data dir: %w", err)
	}
	clusterID, err := loadClusterID(cfg.DataDir)
	if err != nil {
		cancel()
		return nil, err
	}
	b.clusterName = clusterID
	b.metrics = newMetrics(b) // its gauges read b.wal only when scraped
	cacheBytes := cfg.PageCacheBytes
	if cacheBytes <= 0 {
		cacheBytes = -1 // wal: keep everything
	}
	// Before the WAL: recovery replays offset commits into it.
	b.groups = group.New(group.Config{
		Logger:                b.log.Named("group"),
		Persister:             (*offsetPersister)(b),
		InitialRebalanceDelay: cfg.InitialRebalanceDelay,
		CommitTimeout:         cfg.OffsetsCommitTimeout,
		PartitionExists: func(topic string, part int32) bool {
			return b.partition(topic, part) != nil
		},
		Topics:                    b.topicInfos,
		ConsumerSessionTimeout:    cfg.ConsumerSessionTimeout,
		ConsumerHeartbeatInterval: cfg.ConsumerHeartbeatInterval,
	})
	// From here on, a failure closes what Open started (the coordinator's
	// goroutine, the WAL) before it returns.
	var w *wal.Log
	fail := func(err error) (*Broker, error) {
		if w != nil {
			w.Close()
		}
		b.groups.Close()
		cancel()
		return nil, err
	}
	start := time.Now()
	rec := &recoveryReplay{b: b}
	onRecover := rec.entry
	if testNoRecoveryReplay {
		onRecover = nil
	}
	b.appendMu.Lock()
	w, err = wal.Open(wal.Options{
		OnRecover:      onRecover,
		OnSync:         b.metrics.observeFsync,
		Dir:            filepath.Join(cfg.DataDir, "wal"),
		SegmentBytes:   cfg.SegmentBytes,
		Sync:           cfg.Fsync,
		SyncInterval:   cfg.FsyncInterval,
		PageCacheBytes: cacheBytes,
		Logger:         b.log.Named("wal"),
	})
	b.appendMu.Unlock()
	if err != nil {
		w = nil
		return fail(fmt.Errorf("broker: opening WAL: %w", err))
	}
	b.wal = w
	b.connLim = newConnLimiter(cfg, w.SegmentCount)
	if cfg.MaxConnections == 0 && b.connLim.nofile > 0 {
		if n := b.connLim.limit(); n < 1024 {
			b.log.Warn("the open-file limit leaves room for few client connections; raise it (ulimit -n, systemd LimitNOFILE, docker --ulimit nofile) or set --max-connections",
				"open_file_limit", b.connLim.nofile, "wal_segments", w.SegmentCount(), "max_connections", n)
		}
	}
	if rec.err != nil {
		return fail(rec.err)
	}
	if cfg.SidecarSocket == "" {
		b.view = link.ClusterView{
			Role:     link.RoleStandalone,
			LeaderID: cfg.NodeID,
			Epoch:    b.lastEpoch(),
			Brokers:  []link.BrokerInfo{{NodeID: cfg.NodeID, Host: host, Port: int32(port), Rack: cfg.Rack}},
			ISR:      []int32{cfg.NodeID},
		}
	} else {
		// Until the sidecar says otherwise this node takes no writes.
		b.groups.SetActive(false)
		b.view = link.ClusterView{
			Role:     link.RoleFollower,
			LeaderID: -1,
			Epoch:    b.lastEpoch(),
			Brokers:  []link.BrokerInfo{{NodeID: cfg.NodeID, Host: host, Port: int32(port), Rack: cfg.Rack}},
		}
	}
	n := rec.n
	complete, err := rec.done()
	if err != nil {
		return fail(err)
	}
	b.recoveredWhileScanning = complete
	if !complete {
		// Recovery could not rebuild the state as it scanned (see
		// recoveryReplay): read the log again.
		if n, err = b.replay(); err != nil {
			return fail(err)
		}
	}
	if cfg.SidecarSocket == "" {
		b.SetCommitLSN(w.DurableLSN())
		// Members of groups this broker coordinated carry on (a replicated
		// broker loads them when it becomes the leader: SetActive).
		b.groups.LoadMembership()
	} else {
		b.SetCommitLSN(b.loadCommitCheckpoint())
	}
	b.log.Info("state recovered from WAL", "entries", n, "first_lsn", w.FirstLSN(), "last_lsn", w.LastLSN(),
		"topics", len(b.topics), "read_twice", !complete, "elapsed", time.Since(start).Round(time.Millisecond))
	if cfg.SidecarSocket == "" {
		b.goFunc(b.followDurable)
	} else {
		b.goFunc(b.checkpointCommitLoop)
	}
	b.goFunc(b.retentionLoop)
	b.goFunc(b.txnJanitor)
	b.goFunc(b.producerJanitor)
	return b, nil
}

// goFunc starts fn as a goroutine that Close waits for.
func (b *Broker) goFunc(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

func (b *Broker) lastEpoch() uint32 {
	h := b.wal.EpochHistory()
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Epoch
}

// testNoRecoveryReplay makes Open rebuild the state with replay only (a
// test compares both ways).
var testNoRecoveryReplay bool

// recoveryReplay rebuilds the broker's state while wal.Open verifies the
// log (wal.Options.OnRecover), so that start-up reads the WAL once, not
// twice (once to verify it, then to index it). It gives up, before it has
// applied anything, when the log starts after LSN 1 and
// state-checkpoint.json does not cover the entries retention removed; the
// broker then replays through a Reader (replay), which can also take the
// state from a snapshot entry. The log's end is known only once it is
// scanned: if the checkpoint turns out to describe entries past it
// (loadCheckpointLocked), done throws the state away and replay decides.
// Open holds appendMu while it runs.
type recoveryReplay struct {
	b             *Broker
	n             int    // entries applied
	started       bool   // the first entry was handled
	stopped       bool   // gave up at the first entry, nothing applied
	checkpointLSN uint64 // the state checkpoint's LSN, if it was loaded
	err           error  // applying an entry failed (Open fails with it)
}

func (r *recoveryReplay) entry(e wal.Entry, pos wal.Pos, size int) bool {
	b := r.b
	if !r.started {
		r.started = true
		if e.LSN > 1 {
			cp, found, err := b.readCheckpointFile()
			if err != nil || !found || cp.LSN+1 < e.LSN {
				r.stopped, r.err = err == nil, err
				return false
			}
			b.restoreCheckpointLocked(cp)
			b.skipMetaUpTo, r.checkpointLSN = cp.LSN, cp.LSN
		}
	}
	if err := b.applyPrefixLocked(e, pos, size); err != nil {
		r.err = err
		return false
	}
	r.n++
	return true
}

// done reports whether the state is complete (every entry of the opened
// log applied), or false when nothing was applied and replay must rebuild
// it. It also ends the replay from the checkpoint, if any.
func (r *recoveryReplay) done() (bool, error) {
	b := r.b
	b.endCheckpointReplayLocked() // Open holds no lock here, and runs alone
	if r.stopped || !r.started {
		// Nothing applied. (An empty log that starts after LSN 1, re-cloned
		// or emptied by retention, takes its state from the checkpoint in
		// replay.)
		return false, nil
	}
	if r.checkpointLSN > b.wal.LastLSN() {
		// A truncation or a crash dropped entries that the checkpoint
		// describes.
		b.log.Warn("the state checkpoint is past the end of the WAL; rebuilding the state with a second pass",
			"checkpoint_lsn", r.checkpointLSN, "wal_last_lsn", b.wal.LastLSN())
		b.resetStateLocked()
		return false, nil
	}
	if last := b.wal.LastLSN(); b.lastApplied != last {
		return false, fmt.Errorf("broker: recovery applied the WAL up to LSN %d but it ends at %d", b.lastApplied, last)
	}
	return true, nil
}

// replayPrefix is how much of a record batch's payload start-up replay
// reads: the topic name (Kafka allows 249 bytes), partition and RecordBatch
// header. The rest of the batch stays on disk; wal.Open verified it.
const replayPrefix = 2 + 255 + 4 + batchHeaderLen + controlRecordLen // a marker's type too (txn.go)

// replay rebuilds all in-memory state from the WAL: every record batch's
// index entry from its header, every other entry (topics, offsets, configs)
// in full.
func (b *Broker) replay() (int, error) {
	r, err := b.wal.NewReader(b.wal.FirstLSN())
	if err != nil {
		return 0, fmt.Errorf("broker: replaying WAL: %w", err)
	}
	defer r.Close()
	n := 0
	b.appendMu.Lock()
	defer b.appendMu.Unlock()
	if b.wal.FirstLSN() > 1 {
		// Retention deleted the oldest segments: their metadata is in the checkpoint.
		c, err := b.loadCheckpointLocked()
		if err != nil {
			return 0, err
		}
		b.skipMetaUpTo = c
		defer b.endCheckpointReplayLocked()
	}
	for {
		e, pos, size, err := r.NextPrefix(replayPrefix, func(t wal.EntryType) bool { return t != wal.TypeRecordBatch && t != wal.TypeCompactedBatch })
		if errors.Is(err, io.EOF) {
			if last := b.wal.LastLSN(); last >= b.wal.FirstLSN() && b.lastApplied < last {
				return n, fmt.Errorf("broker: replay stopped at LSN %d but the WAL ends at %d", b.lastApplied, last)
			}
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("broker: replaying WAL: %w", err)
		}
		if err := b.applyPrefixLocked(e, pos, size); err != nil {
			return n, err
		}
		n++
	}
}

// followDurable makes the commit point follow local durability (standalone).
func (b *Broker) followDurable() {
	for {
		ch := b.wal.Durable()
		b.SetCommitLSN(b.wal.DurableLSN())
		select {
		case <-ch:
		case <-b.ctx.Done():
			return
		}
	}
}

// Serve listens on cfg.Listen and serves Kafka clients until Close. If a
// sidecar socket is configured it also keeps the link to the sidecar up.
func (b *Broker) Serve() error {
	ln, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("broker: listen: %w", err)
	}
	return b.ServeListener(ln)
}

// ServeListener is Serve on an existing listener (tests use 127.0.0.1:0).
func (b *Broker) ServeListener(ln net.Listener) error {
	b.lnMu.Lock()
	if b.ctx.Err() != nil {
		b.lnMu.Unlock()
		ln.Close()
		return ErrClosed
	}
	b.ln = ln
	b.lnMu.Unlock()
	b.log.Info("serving Kafka", "listen", ln.Addr().String(), "advertise", b.cfg.Advertise, "node_id", b.cfg.NodeID)
	if b.cfg.SidecarSocket != "" {
		done := make(chan struct{})
		b.lnMu.Lock()
		b.linkDone = done
		b.lnMu.Unlock()
		b.goFunc(func() {
			defer close(done)
			if err := link.Run(b.ctx, b.cfg.SidecarSocket, b, b.log.Named("link")); err != nil && b.ctx.Err() == nil {
				b.log.Error("sidecar link stopped", "error", err)
			}
		})
	}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if b.ctx.Err() != nil {
				return nil
			}
			if !retryableAcceptError(err) {
				return fmt.Errorf("broker: accept: %w", err)
			}
			// Out of file descriptors or memory, or one client's
			// connection failed: wait and accept again (connlimit.go).
			backoff = min(max(2*backoff, 5*time.Millisecond), acceptBackoffMax)
			b.metrics.acceptErrors.Inc()
			if ok, n := b.connLim.noteAcceptFailure(time.Now()); ok {
				b.log.Error("accepting Kafka connections failed; retrying", "error", err, "failures", n,
					"client_connections", b.connLim.count(), "retry_in", backoff)
			}
			select {
			case <-time.After(backoff):
			case <-b.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		ip := ipOf(c.RemoteAddr())
		if reason, limit := b.connLim.admit(ip); reason != "" {
			// Reset, not closed the orderly way: franz-go takes an orderly
			// end before any answer for a TLS mistake and fails the
			// records it was about to send, where a reset makes it dial
			// again after its backoff (resetConn).
			resetConn(c)
			b.metrics.connRefused.WithLabelValues(reason).Inc()
			if ok, counts := b.connLim.noteRefused(reason, time.Now()); ok {
				b.log.Warn("refusing client connections over a limit", "client", ip, "reason", reason, "limit", limit,
					"refused_max_connections", counts[refusedMaxConnections], "refused_per_ip", counts[refusedPerIP])
			}
			continue
		}
		b.lnMu.Lock()
		if b.ctx.Err() != nil {
			b.lnMu.Unlock()
			b.connLim.release(ip)
			resetConn(c)
			return nil
		}
		cc := &clientConn{}
		if tc, ok := c.(*net.TCPConn); ok {
			// Until its first answer the connection is reset, not
			// closed the orderly way, if this process dies (SIGKILL,
			// a crash, the OOM killer): the kernel then closes it with
			// SO_LINGER 0. See resetConn for why; clientConn.markAnswered
			// and orderlyConn restore the orderly close.
			tc.SetLinger(0)
			cc.tcp = tc
		}
		b.conns[c] = cc
		b.lnMu.Unlock()
		b.goFunc(func() {
			b.serveConn(c, cc)
			b.lnMu.Lock()
			delete(b.conns, c)
			b.lnMu.Unlock()
			b.connLim.release(ip)
		})
	}
}

// Addr is the address the broker listens on (nil before Serve).
func (b *Broker) Addr() net.Addr {
	b.lnMu.Lock()
	defer b.lnMu.Unlock()
	if b.ln == nil {
		return nil
	}
	return b.ln.Addr()
}

// Close stops serving, closes every connection, waits for every goroutine
// and closes the WAL. A broker that leads hands the leadership over first
// (handOver).
func (b *Broker) Close() error {
	if b.ctx.Err() != nil {
		return nil
	}
	b.handOver()
	b.lnMu.Lock()
	if b.ctx.Err() != nil {
		b.lnMu.Unlock()
		return nil
	}
	b.cancel()
	if b.ln != nil {
		b.ln.Close()
	}
	for c, cc := range b.conns {
		if cc.answered.Load() {
			c.Close()
		} else {
			resetConn(c)
		}
	}
	b.lnMu.Unlock()
	b.groups.Close()
	b.wg.Wait()
	if b.cfg.SidecarSocket != "" {
		b.saveCommitCheckpoint()
	}
	return b.wal.Close()
}

// clientConn is what Close needs to know of an accepted client connection.
type clientConn struct {
	// answered is set once a response other than to ApiVersions or
	// the SASL login has been written on the connection.
	answered atomic.Bool
	// tcp is the accepted connection (nil when the listener is not TCP).
	// Its SO_LINGER is 0 until the first answer.
	tcp *net.TCPConn
}

// markAnswered records that the connection has had an answer beyond
// ApiVersions and the SASL login: from now on it ends the orderly way,
// also if this process dies.
func (cc *clientConn) markAnswered() {
	if cc.answered.Load() {
		return // every answer after the first
	}
	if cc.answered.CompareAndSwap(false, true) && cc.tcp != nil {
		cc.tcp.SetLinger(-1)
	}
}

// orderlyConn is a client connection that a running broker closes the
// orderly way (a bad request, an idle timeout, a failed SASL login whose
// answer the client must still read): its Close restores the default
// SO_LINGER first. Once the broker is stopping it leaves it as it is, so
// that a connection not yet answered is reset whoever closes it first
// (Broker.Close).
type orderlyConn struct {
	net.Conn
	b  *Broker
	cc *clientConn
}

func (o orderlyConn) Close() error {
	if o.b.ctx.Err() == nil {
		o.cc.tcp.SetLinger(-1)
	}
	return o.Conn.Close()
}

// resetConn closes a client connection that has not been answered yet
// (beyond ApiVersions and the SASL login) with a TCP reset rather than an
// orderly close, as the kernel does for such a connection if the process
// dies (SO_LINGER 0 from accept to the first answer). A client that has
// just connected reads "connection reset" and dials again (to another
// broker once this one's listener is closed). Reading an orderly end
// instead, before its first answer, franz-go concludes that TLS or SASL is
// misconfigured and gives up, failing the records it was about to send: in
// the soak, producers that had just dialled a leader stopping on SIGTERM
// lost write attempts that way, once during ApiVersions and once waiting
// for a first answer. A Kafka broker closes such connections the orderly
// way, and franz-go fails the same way against it. The reset takes nothing
// from the client that an orderly close would give it: no answer to its
// business has been sent on the connection, and a request in flight fails
// either way.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// handOverTimeout bounds how long Close waits for the sidecar to release a
// leading broker (the sidecar waits up to 3 s for its followers, then
// resigns). It stays under the 10 s that `docker stop` gives a container
// before it kills it.
const handOverTimeout = 5 * time.Second

// handOver is the broker's side of a controlled shutdown (Kafka's
// controlled.shutdown.enable): it stops taking writes, so that the WAL's
// end is final, and, while the broker leads, the link tells the sidecar
// where it ends (link.Stopper). Client connections stay open meanwhile:
// produces get NOT_LEADER_OR_FOLLOWER (clients retry, and find the next
// leader through Metadata), and acks=all produces already waiting are
// still answered as the followers catch up. A leading sidecar under etcd
// failover waits for its in-sync followers to hold the WAL's end, resigns,
// and ends the link; handOver returns then, or after handOverTimeout.
// Without a sidecar it does nothing.
func (b *Broker) handOver() {
	if b.cfg.SidecarSocket == "" {
		return
	}
	b.stopOnce.Do(func() {
		b.appendMu.Lock()
		b.stopping.Store(true)
		b.appendMu.Unlock()
		close(b.stoppingCh)
	})
	b.lnMu.Lock()
	done := b.linkDone
	b.lnMu.Unlock()
	if done == nil {
		return
	}
	start := time.Now()
	t := time.NewTimer(handOverTimeout)
	defer t.Stop()
	select {
	case <-done:
		if waited := time.Since(start); waited > 10*time.Millisecond {
			b.log.Info("stopping: the sidecar released the broker", "waited", waited.Round(time.Millisecond))
		}
	case <-t.C:
		b.log.Warn("stopping: the sidecar did not release the broker in time; stopping anyway", "waited", handOverTimeout)
	}
}

// Stopping is closed once the broker stops on purpose (link.Stopper).
func (b *Broker) Stopping() <-chan struct{} { return b.stoppingCh }

// newTopicID returns a random Kafka topic UUID.
func newTopicID() [16]byte {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		panic(err)
	}
	id[6] = (id[6] & 0x0f) | 0x40
	id[8] = (id[8] & 0x3f) | 0x80
	return id
}
