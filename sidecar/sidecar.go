package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/tandem-io/tandem/internal/grpcwire"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
	tlog "github.com/tandem-io/tandem/internal/logging"
)

// ReadinessService is the grpc.health.v1 service name that reports
// readiness: SERVING when the sidecar is attached to its broker, the broker
// can write its WAL, and, on a leader, the broker leads (the check of the
// peers when it attached is over); on a follower, when it streams from the
// leader within --replica-lag-time-max.
// The empty service name reports liveness (SERVING while the process runs).
const ReadinessService = "tandem.Readiness"

// DefaultStreamID names the node-wide WAL in replication positions.
const DefaultStreamID = "node"

// Sidecar is one running sidecar.
//
// Lock order: Sidecar.mu, then leader.mu or follower.mu, then brokerConn.mu;
// seenMu is taken last and alone (under leader.mu, by brokersLocked).
type Sidecar struct {
	cfg    Config
	log    hclog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	health  *health.Server
	unixLn  net.Listener
	tcpLn   net.Listener
	linkSrv *grpc.Server
	tcpSrv  *grpc.Server

	tls       *tlsSetup    // credentials for --listen and peers; empty without TLS (tls.go)
	healthLn  net.Listener // plaintext --health-listen, nil when unset
	healthSrv *grpc.Server // serves grpc.health.v1 only on healthLn

	metrics *metrics // Prometheus series (metrics.go)

	// Exactly one of leader and follower is set (guarded by mu; read them
	// with roles()). Role changes are in role.go.
	leader   *leader   // set when this node leads
	follower *follower // set when this node follows

	roleMu            sync.Mutex         // serializes role changes; taken before mu
	roleCancel        context.CancelFunc // stops the current role's goroutines (guarded by mu)
	roleWG            *sync.WaitGroup    // the current role's goroutines (guarded by mu)
	knownEpoch        atomic.Uint32      // highest epoch heard of anywhere
	uncleanPromotions atomic.Uint64      // forced promotions of nodes not known in sync

	// stateMu serializes the state file's read-modify-writes and guards
	// uncleanEpoch: the newest epoch known to have begun with an unclean
	// promotion in this node's lineage (0: none), kept in the state file.
	stateMu      sync.Mutex
	uncleanEpoch uint32
	election     *election // automatic failover through etcd (nil without --etcd-endpoints); set in Open, never changed
	// crashed: stop as if crashed, without telling the leader (tests only:
	// export_test.go's Crash).
	crashed atomic.Bool
	// shuttingDown is set when Close starts: the node no longer stands
	// for election.
	shuttingDown atomic.Bool
	// brokerFencedAt (unix nanoseconds) is when a broker whose link ended
	// while it may have been taking writes stops taking them at the
	// latest: its detached-link fence (detachedFenceMs after the link
	// ended). An ending etcd term holds the lease until then
	// (awaitBrokerFence).
	brokerFencedAt atomic.Int64
	// brokerRefused is the last broker hello refused (another node id or
	// cluster id), nil when none.
	brokerRefused atomic.Pointer[brokerRefusal]

	// seenBrokers is every peer broker (by node id) that a cluster view of
	// this node has listed, with its latest address: a node that no longer
	// knows the leader (it stepped down, or its leader is unreachable)
	// still lists them in its Kafka Metadata, so that clients keep asking
	// the other brokers rather than only this one (brokers.go).
	seenMu      sync.Mutex
	seenBrokers map[int32]*linkv1.BrokerInfo

	mu        sync.Mutex
	broker    *brokerConn // attached broker, nil when detached
	brokerSig chan struct{}
	closed    bool
}

// Open validates cfg, listens on the Unix socket and on TCP, and starts
// serving. Close stops it.
func Open(cfg Config) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sidecar{
		cfg:       cfg,
		log:       cfg.Logger,
		ctx:       ctx,
		cancel:    cancel,
		health:    health.NewServer(),
		brokerSig: make(chan struct{}),
	}
	s.metrics = newMetrics(s)
	// The election exists before anything can read it: a broker that
	// attaches as soon as the socket is served is told its fence
	// (detachedFenceMs) from it, and would otherwise be told "never".
	// It campaigns only once startFailover runs it.
	if !cfg.Standalone() && len(cfg.EtcdEndpoints) > 0 {
		s.election = newElection(s)
	}
	ts, err := loadTLS(&s.cfg, s.log)
	if err != nil {
		cancel()
		return nil, err
	}
	s.tls = ts
	unixLn, err := listenUnix(cfg.BrokerSocket, s.log)
	if err != nil {
		cancel()
		return nil, err
	}
	tcpLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		unixLn.Close()
		cancel()
		return nil, fmt.Errorf("sidecar: listening on %s: %w", cfg.Listen, err)
	}
	s.unixLn, s.tcpLn = unixLn, tcpLn
	if err := s.listenHealth(); err != nil {
		unixLn.Close()
		tcpLn.Close()
		cancel()
		return nil, err
	}
	// The role comes from the state file, --leader and the peers (role.go).
	leaderID, epoch, err := s.initialRole()
	if err == nil {
		s.roleMu.Lock()
		err = s.installRoleLocked(leaderID, epoch, false)
		s.roleMu.Unlock()
	}
	if err != nil {
		unixLn.Close()
		tcpLn.Close()
		cancel()
		return nil, err
	}

	s.linkSrv = grpc.NewServer(s.serverOptions("link")...)
	linkv1.RegisterLinkServiceServer(s.linkSrv, &linkServer{s: s})
	s.tcpSrv = grpc.NewServer(append(s.serverOptions("peer"), s.securityServerOptions()...)...)
	replicationv1.RegisterReplicationServiceServer(s.tcpSrv, &replicationServer{s: s})
	adminv1.RegisterAdminServiceServer(s.tcpSrv, &adminServer{s: s})
	healthpb.RegisterHealthServer(s.tcpSrv, s.health)
	s.metrics.grpcServer.InitializeMetrics(s.tcpSrv)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(ReadinessService, healthpb.HealthCheckResponse_NOT_SERVING)

	role := "follower"
	if s.leader != nil {
		role = "leader"
	}
	s.log.Info("sidecar started", "node_id", cfg.NodeID, "cluster_id", cfg.ClusterID, "role", role,
		"leader_id", leaderID, "epoch", epoch, "flag_leader", cfg.LeaderID, "broker_socket", cfg.BrokerSocket, "listen", tcpLn.Addr().String(),
		"peers", FormatPeers(cfg.Peers))
	s.goFunc(func() {
		if err := s.linkSrv.Serve(unixLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("link server stopped", "error", err)
		}
	})
	s.goFunc(func() {
		if err := s.tcpSrv.Serve(tcpLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("peer server stopped", "error", err)
		}
	})
	s.serveHealth()
	s.goFunc(s.readinessLoop)
	s.startFailover()
	return s, nil
}

// Addr is the TCP address the sidecar serves peers, admin and health on.
func (s *Sidecar) Addr() net.Addr { return s.tcpLn.Addr() }

// goFunc runs fn in a goroutine that Close waits for.
func (s *Sidecar) goFunc(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Close lets a leader whose broker is stopping too hand its leadership over
// (awaitHandOver), then marks the sidecar not serving, stops both servers
// (gracefully for up to five seconds), waits for every goroutine and
// removes the socket.
func (s *Sidecar) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.shuttingDown.Store(true)
	s.awaitHandOver() // before closing: the handover changes the role
	// Still leading (the broker detached, or the handover did not finish):
	// the broker stops taking writes before the lease is given up.
	s.stepDownOnClose("the leadership was not handed over")
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.health.Shutdown() // every service NOT_SERVING
	s.cancel()
	servers := []*grpc.Server{s.tcpSrv, s.linkSrv}
	if s.healthSrv != nil {
		servers = append(servers, s.healthSrv)
	}
	for _, srv := range servers {
		done := make(chan struct{})
		go func() {
			srv.GracefulStop()
			close(done)
		}()
		t := time.NewTimer(5 * time.Second)
		select {
		case <-done:
		case <-t.C:
			srv.Stop()
			<-done
		}
		t.Stop()
	}
	s.wg.Wait()
	if err := os.Remove(s.cfg.BrokerSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing broker socket", "path", s.cfg.BrokerSocket, "error", err)
	}
	s.log.Info("sidecar stopped")
	return nil
}

// connectionTimeout bounds a new connection's handshake (TLS and the
// HTTP/2 preface) on every server of the sidecar (a variable for tests).
var connectionTimeout = 10 * time.Second

// serverOptions are the options of both gRPC servers: size limits, and the
// logging and panic-recovery interceptors.
func (s *Sidecar) serverOptions(name string) []grpc.ServerOption {
	glog := tlog.GRPC(s.log.Named("grpc-" + name))
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			switch c {
			case codes.OK, codes.Canceled, codes.NotFound:
				return logging.LevelDebug
			case codes.Internal, codes.Unknown, codes.DataLoss:
				return logging.LevelError
			}
			return logging.LevelWarn
		}),
	}
	rec := recovery.WithRecoveryHandler(func(p any) error {
		s.log.Error("panic in gRPC handler; the call fails with INTERNAL and the sidecar keeps running", "panic", fmt.Sprint(p))
		return status.Errorf(codes.Internal, "internal error")
	})
	// The server pings its peers every heartbeat interval at the HTTP/2
	// level: a peer that stops answering (a frozen process) makes the
	// connection close within about --peer-timeout, which unblocks a
	// stream stuck in flow control. Peers may ping as often as once a
	// second.
	ka := keepalive.ServerParameters{Time: s.cfg.HeartbeatInterval, Timeout: max(s.cfg.PeerTimeout-s.cfg.HeartbeatInterval, time.Second)}
	return append(grpcwire.ServerOptions(),
		// A connection that has not finished its handshake by then is
		// closed (gRPC's default is 120 s): Close waits for every
		// connection, and a silent client or a half-open peer must not
		// hold shutdown past a Kubernetes grace period.
		grpc.ConnectionTimeout(connectionTimeout),
		grpc.KeepaliveParams(ka),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(s.cfg.MaxMessageBytes),
		grpc.MaxSendMsgSize(s.cfg.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(logging.UnaryServerInterceptor(glog, logOpts...), recovery.UnaryServerInterceptor(rec)),
		grpc.ChainStreamInterceptor(logging.StreamServerInterceptor(glog, logOpts...), recovery.StreamServerInterceptor(rec)),
		grpc.ChainUnaryInterceptor(s.metrics.grpcServer.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(s.metrics.grpcServer.StreamServerInterceptor()),
	)
}

// listenUnix prepares the socket's directory (created 0700; an existing
// directory open to others is tightened to 0700, and a shared sticky
// directory such as /tmp is refused), removes a stale socket file left by a
// crashed sidecar (a live one answering on it is an error), and listens
// with the socket file at mode 0600.
func listenUnix(path string, log hclog.Logger) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sidecar: creating socket directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("sidecar: socket directory %s: %w", dir, err)
	}
	if fi.Mode()&os.ModeSticky != 0 {
		return nil, fmt.Errorf("%w: --broker-socket %s is in a shared directory (%s, mode %s); put it in a directory only this user can enter",
			ErrConfig, path, dir, fi.Mode())
	}
	if fi.Mode().Perm() != 0o700 {
		log.Info("restricting the broker socket's directory to its owner", "dir", dir, "old_mode", fi.Mode().Perm().String())
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sidecar: chmod 0700 %s: %w", dir, err)
		}
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%w: --broker-socket %s exists and is not a socket", ErrConfig, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("sidecar: another process is serving on %s (is a sidecar already running?)", path)
		}
		log.Info("removing stale broker socket from an earlier run", "path", path)
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("sidecar: removing stale socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("sidecar: listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("sidecar: chmod 0600 %s: %w", path, err)
	}
	return ln, nil
}

// attachBroker makes c the attached broker.
func (s *Sidecar) attachBroker(c *brokerConn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "sidecar is shutting down")
	}
	if s.broker != nil {
		s.mu.Unlock()
		s.log.Error("refusing a second broker attachment", "node_id", c.hello.GetNodeId())
		return status.Error(codes.AlreadyExists, "tandem.link.v1: a broker is already attached to this sidecar")
	}
	s.broker = c
	s.brokerRefused.Store(nil)
	close(s.brokerSig)
	s.brokerSig = make(chan struct{})
	s.mu.Unlock()
	h := c.hello
	s.log.Info("broker attached", "node_id", h.GetNodeId(), "kafka", fmt.Sprintf("%s:%d", h.GetAdvertisedHost(), h.GetAdvertisedPort()),
		"first_lsn", h.GetFirstLsn(), "last_lsn", h.GetLastLsn(), "durable_lsn", h.GetDurableLsn(),
		"epoch", epochHistory(h.GetEpochHistory()).lastEpoch())
	if l, _ := s.roles(); l != nil {
		l.brokerAttached(c)
	}
	return nil
}

// detachBroker forgets c.
func (s *Sidecar) detachBroker(c *brokerConn) {
	s.mu.Lock()
	if s.broker != c {
		s.mu.Unlock()
		return
	}
	s.noteLinkEnd(c) // before anyone can see the broker gone
	s.broker = nil
	close(s.brokerSig)
	s.brokerSig = make(chan struct{})
	s.mu.Unlock()
	s.log.Warn("broker detached; waiting for it to attach again", "error", context.Cause(c.ctx))
	if l, _ := s.roles(); l != nil {
		l.brokerDetached(c)
	}
}

// detachedFenceMs is the leader's broker's ClusterView.fence_after_ms:
// under etcd failover a quarter of the lease TTL, so that a broker whose
// sidecar crashed stops taking writes before the lease can expire (it is
// renewed at least every half TTL, or this node steps down) and another
// node be elected. 0 (never) with a static leader, which nothing replaces
// on its own.
func (s *Sidecar) detachedFenceMs() uint32 {
	if s.election == nil {
		return 0
	}
	return uint32(s.election.ttl / 4 / time.Millisecond)
}

// heartbeatIntervalMs is the leader's broker's
// ClusterView.heartbeat_interval_ms: how often the sidecar vouches for its
// leadership (LinkHeartbeat), four times within detachedFenceMs, so that a
// broker whose sidecar is frozen or stuck stops taking writes before the
// lease can expire. 0 (none) with a static leader.
func (s *Sidecar) heartbeatIntervalMs() uint32 {
	return s.detachedFenceMs() / 4
}

// leaseFreshUntil returns until when this node may vouch for its
// leadership to its broker: half a TTL after the last renewal of its etcd
// lease, when the election's watchdog steps down unless it is renewed
// again. ok is false once that has passed (or with a static leader).
func (s *Sidecar) leaseFreshUntil() (until time.Time, ok bool) {
	e := s.election
	if e == nil {
		return time.Time{}, false
	}
	until = time.Unix(0, e.lastRenew.Load()).Add(e.ttl / 2)
	return until, time.Now().Before(until)
}

// stoppingHandOverMax bounds how long a leader whose broker stops on purpose
// waits for its in-sync followers to hold the broker's last entry before
// it resigns anyway (election.handOver). The Go broker waits 5 s for its
// sidecar to release it (broker.handOverTimeout).
const stoppingHandOverMax = 3 * time.Second

// brokerStopping handles the broker's BrokerStopping (Kafka's controlled
// shutdown): a leader under etcd failover hands its leadership to an
// in-sync follower first (election.handOver, which then ends the link);
// otherwise there is nothing to hand over and the link ends at once.
func (s *Sidecar) brokerStopping(c *brokerConn, st *brokerStop) {
	l, _ := s.roles()
	switch {
	case l != nil && s.election != nil:
		s.log.Info("the broker is stopping; handing the leadership to an in-sync follower once it holds the broker's last entry",
			"reason", st.reason, "last_lsn", st.lastLSN)
		// Leadership may end meanwhile (a newer epoch): then nothing is
		// handed over, and the link ends after the bound all the same.
		time.AfterFunc(stoppingHandOverMax+time.Second, func() { c.stop(errBrokerStopping) })
		select {
		case s.election.brokerStopping <- struct{}{}:
		default:
		}
		return
	case l != nil:
		s.log.Warn("the leader's broker is stopping; writes stop until it is back (with a static --leader nothing takes over on its own: for a planned stop, promote a follower first)",
			"reason", st.reason, "last_lsn", st.lastLSN)
	default:
		s.log.Info("the broker is stopping", "reason", st.reason, "last_lsn", st.lastLSN)
	}
	c.stop(errBrokerStopping)
}

// shutdownHandOverGrace is how long a leader's sidecar that is shutting
// down waits for its broker to say that it stops too (awaitHandOver).
const shutdownHandOverGrace = 250 * time.Millisecond

// awaitHandOver lets a leader under etcd failover hand its leadership to
// an in-sync follower before it shuts down, whether its broker runs on (a
// sidecar-only restart) or gets SIGTERM too (Kubernetes deleting a pod,
// `docker compose stop`, a rolling restart): handOverOnClose stops the
// broker's writes and starts the handover (election.handOver, which ends
// the link), and this waits for it, so the follower elected next holds
// every entry this leader wrote, acks=1 writes included. With a broker
// that does not read the handing-over view it waits up to
// shutdownHandOverGrace for the broker's own BrokerStopping instead, and
// then for that handover. With nobody to hand over to after the grace, the
// node steps down (stepDownOnClose). Without etcd, or when not leading, it
// returns at once.
func (s *Sidecar) awaitHandOver() {
	if s.election == nil || s.crashed.Load() {
		return // a crash hands nothing over
	}
	l, _ := s.roles()
	if l == nil {
		return
	}
	bc, _ := s.currentBroker()
	if bc == nil {
		return
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	if !s.handOverOnClose(l, bc) {
		grace := time.NewTimer(shutdownHandOverGrace)
		defer grace.Stop()
		retried := false
		for bc.stoppingState() == nil {
			select {
			case <-grace.C:
				s.stepDownOnClose("no in-sync follower to hand the leadership to")
				return
			case <-bc.ctx.Done():
				return
			case <-tick.C:
				// Followers may join the ISR meanwhile (one had just
				// connected): then hand over after all, once.
				if !retried && s.handOverPossible(l, bc) {
					retried = true
					s.handOverOnClose(l, bc)
				}
			}
		}
	}
	bound := time.NewTimer(stoppingHandOverMax + time.Second)
	defer bound.Stop()
	// The handover ends the link; it is lifted instead (the stop state
	// cleared) when nobody can take over after all.
	for bc.stoppingState() != nil {
		select {
		case <-bc.ctx.Done():
			return
		case <-bound.C:
			return
		case <-tick.C:
		}
	}
}

// handOverOnClose starts the handover of a leader's sidecar that stops
// while its broker may run on (a sidecar-only restart, or the whole pod).
// Without it, the broker would go on taking acks=1 writes after the lease
// is revoked, which the new leader lacks and which are dropped when this
// node follows again. It fences the broker with a handing-over view (the
// broker appends nothing more but still leads: it pushes what it holds
// and serves commit points), learns where the broker's WAL ends from the
// checksum round trip behind that view, and records that as the broker's
// stop state, so that the lead loop runs the same handover as for a
// broker's BrokerStopping (election.handOver), whose step-down leaves the
// broker with a follower view until this sidecar is back.
//
// It does nothing (false) for a broker that does not read the
// handing-over view (an older broker would go on appending), a broker that
// already said it stops, or when no other node is in the ISR: nobody could
// take over, and awaitHandOver steps down after its grace instead
// (stepDownOnClose), so that the broker stops taking writes before the
// lease is given up.
func (s *Sidecar) handOverOnClose(l *leader, bc *brokerConn) bool {
	if !s.handOverPossible(l, bc) {
		return false
	}
	v := l.beginHandOver(bc)
	if v == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, fenceTimeout)
	res, err := bc.fenceAt(ctx, v)
	cancel()
	if err != nil {
		s.log.Error("stopping: could not confirm that the broker stopped taking writes for the handover; resigning without it", "error", err)
		return false
	}
	st := &brokerStop{lastLSN: res.GetLastLsn(), reason: "the sidecar is shutting down", at: time.Now(), bySidecar: true}
	if !bc.stopping.CompareAndSwap(nil, st) {
		return true // the broker said it stops meanwhile: that handover runs
	}
	s.log.Info("stopping: handing the leadership to an in-sync follower once it holds the broker's last entry (the broker takes no writes meanwhile)",
		"last_lsn", st.lastLSN)
	select {
	case s.election.brokerStopping <- struct{}{}:
	default:
	}
	return true
}

// handOverPossible reports whether handOverOnClose would start a handover:
// the broker reads the handing-over view, has not said it stops, and
// another node is in the ISR.
func (s *Sidecar) handOverPossible(l *leader, bc *brokerConn) bool {
	if !bc.hello.GetReadsHandingOver() || bc.stoppingState() != nil {
		return false
	}
	others, _, _ := s.election.handOverState(l, &brokerStop{})
	return others > 0
}

// stepDownOnClose stops the broker's writes when a leader's sidecar shuts
// down with nobody to hand its leadership to: the node steps down, which
// fences the broker (a follower view, confirmed), before the sidecar
// revokes its lease. Left leading, the broker would take writes for a
// quarter of the lease TTL after the link ends (fence_after_ms), and the
// revoked lease lets another node be elected at once: one that joined the
// ISR after the handover was ruled out (a 15-minute soak of 2026-12-07 saw
// two brokers take writes for 0.5 s that way).
func (s *Sidecar) stepDownOnClose(why string) {
	if s.election == nil || s.crashed.Load() {
		return // a static leader stays the leader; a crash hands nothing over
	}
	// Under the role lock: a handover's step-down may be under way.
	s.roleMu.Lock()
	defer s.roleMu.Unlock()
	if l, _ := s.roles(); l == nil {
		return
	}
	s.log.Warn("stopping: " + why + "; the broker stops taking writes now, before the lease is given up")
	if err := s.switchRoleLocked(0, s.currentEpoch(), "the sidecar is shutting down"); err != nil && !errors.Is(err, ErrClosing) {
		s.log.Error("stopping: stepping down failed", "error", err)
	}
}

// noteLinkEnd records, when c's link ends (or is about to be ended) while
// its broker may be taking writes (mayWrite) under etcd failover, when the
// broker's own detached-link fence stops those writes at the latest:
// fence_after_ms from now.
func (s *Sidecar) noteLinkEnd(c *brokerConn) {
	fence := time.Duration(s.detachedFenceMs()) * time.Millisecond
	if fence <= 0 || !c.mayWrite.Load() || c.stoppingState() != nil {
		return // a broker that said it stops (BrokerStopping) took its writes away itself
	}
	at := time.Now().Add(fence).UnixNano()
	for old := s.brokerFencedAt.Load(); old < at; old = s.brokerFencedAt.Load() {
		if s.brokerFencedAt.CompareAndSwap(old, at) {
			return
		}
	}
}

// awaitBrokerFence holds this node's etcd lease (an ended term calls it
// before it revokes the lease) until a broker whose link ended while it
// may have been taking writes (noteLinkEnd) has surely stopped: its
// detached-link fence is due fence_after_ms after the link ended, and the
// broker may be alive with only the link gone (a link error, or a
// step-down whose fence it did not confirm). Revoked at once, the lease
// would let another node be elected while this broker still writes. A
// broker that crashed makes the revoke up to fence_after_ms (a quarter of
// the lease TTL) later than it could be; unrevoked, the lease would hold
// the cluster for a whole TTL.
func (s *Sidecar) awaitBrokerFence() {
	at := s.brokerFencedAt.Load()
	if at == 0 {
		return
	}
	// The broker arms its fence when it notices the link end, a moment
	// after the sidecar ends or sees it end.
	wait := time.Until(time.Unix(0, at)) + brokerFenceMargin
	if wait <= 0 {
		return
	}
	s.log.Warn("the broker's link ended while it may have been taking writes; keeping the etcd lease until its own fence has stopped them",
		"wait", wait.Round(time.Millisecond))
	time.Sleep(wait)
}

// brokerFenceMargin is how long awaitBrokerFence allows a broker to notice
// that its link ended (it arms its fence then).
const brokerFenceMargin = 100 * time.Millisecond

// currentBroker returns the attached broker (nil when none) and a channel
// closed at the next attach or detach.
func (s *Sidecar) currentBroker() (*brokerConn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broker, s.brokerSig
}

// readinessLoop keeps the readiness health status up to date.
func (s *Sidecar) readinessLoop() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_NOT_SERVING
	for {
		ready, reason := s.readiness()
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ready {
			st = healthpb.HealthCheckResponse_SERVING
		}
		if st != last {
			s.log.Info("readiness changed", "ready", ready, "reason", reason)
			last = st
		}
		s.health.SetServingStatus(ReadinessService, st)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}

// readiness reports whether this node should get traffic, and why not.
func (s *Sidecar) readiness() (bool, string) {
	bc, _ := s.currentBroker()
	if bc == nil {
		if msg := s.recentBrokerRefusal(); msg != "" {
			return false, "broker not attached: this sidecar refuses the broker that tries to attach: " + msg
		}
		return false, "broker not attached"
	}
	if msg, since := bc.storageFailure(); msg != "" {
		return false, fmt.Sprintf("the broker cannot write its WAL (since %s): %s", since.UTC().Format(time.RFC3339), msg)
	}
	l, f := s.roles()
	if f != nil {
		return f.ready()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.checking == bc:
		return false, "leader: asking the peers whether one holds more of the log before taking writes"
	case l.bc != bc:
		return false, "leader: the broker is not leading yet"
	}
	return true, ""
}
