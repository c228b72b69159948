package broker

// Connection limits, and an accept loop that outlives a connection flood.
//
// Every client connection holds a file descriptor, and so do the WAL's
// segment files (one each, for as long as the segment is kept), the sidecar
// link and the files the broker writes. Before 2026-12-06 a client that
// opened connections until the process ran out of descriptors stopped the
// broker: accept failed with EMFILE and Serve returned. Now:
//
//   - accept errors that come from a shortage (EMFILE, ENFILE, ENOBUFS,
//     ENOMEM) or from one client (ECONNABORTED, EPROTO, ...) are logged,
//     counted and waited out with a backoff of 5 ms doubling to 1 s, as
//     net/http's and grpc-go's servers do; the broker keeps serving the
//     connections it has;
//   - the broker holds at most --max-connections client connections (Kafka's
//     max.connections). The default, 0, is automatic: the process's
//     open-file limit less one descriptor per WAL segment and a reserve of
//     fdReserve, worked out at each new connection, so that client
//     connections leave the WAL the descriptors it needs to roll to new
//     segments (segments added while the connections stay come out of the
//     reserve);
//   - --max-connections-per-ip (Kafka's max.connections.per.ip) bounds the
//     connections from one address, and --max-connections-per-ip-overrides
//     sets other bounds for given addresses.
//
// A connection over a limit is reset as soon as it is accepted, before
// its TLS handshake, with a log line (at most one every logEvery, with the
// number refused since the last) and
// tandem_broker_connections_refused_total{reason}. Kafka's acceptor
// instead stops accepting while max.connections is reached, which leaves
// the new clients waiting in the kernel's queue until their requests time
// out; a reset connection tells them at once, and they retry after their
// reconnect backoff.

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// fdReserve is what the automatic --max-connections leaves, besides
	// the WAL's segments, for everything else that opens files: the
	// listeners, the sidecar link, metrics scrapes, checkpoint and epoch
	// files, TLS certificates read again, the Go runtime's own.
	fdReserve = 256
	// minAutoConnections is the least the automatic limit allows, however
	// low the open-file limit: a broker that takes no client is no use.
	minAutoConnections = 32
	// acceptBackoffMax caps the wait after a failed accept.
	acceptBackoffMax = time.Second
	// logEvery spaces the log lines about refused connections and failed
	// accepts during a flood.
	logEvery = 10 * time.Second
)

// Reasons a connection is refused, the label of
// tandem_broker_connections_refused_total.
const (
	refusedMaxConnections = "max_connections"
	refusedPerIP          = "max_connections_per_ip"
)

// ParseConnectionOverrides parses Kafka's max.connections.per.ip.overrides:
// comma-separated IP:count pairs ("10.0.0.7:500,[::1]:20" or "::1:20"; the
// count follows the last colon). Host names are not taken: the broker
// compares the connection's address, and a name could resolve differently
// later.
func ParseConnectionOverrides(s string) (map[string]int, error) {
	out := make(map[string]int)
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		i := strings.LastIndexByte(part, ':')
		if i <= 0 {
			return nil, fmt.Errorf("connection override %q: want IP:count", part)
		}
		host := strings.TrimSuffix(strings.TrimPrefix(part[:i], "["), "]")
		ip := net.ParseIP(host)
		if ip == nil {
			return nil, fmt.Errorf("connection override %q: %q is not an IP address", part, host)
		}
		n, err := strconv.Atoi(part[i+1:])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("connection override %q: count must be a whole number >= 0", part)
		}
		out[ip.String()] = n
	}
	return out, nil
}

// connLimiter counts the client connections a broker holds, in all and by
// remote address, and refuses those over the limits.
type connLimiter struct {
	max       int            // --max-connections; 0: automatic
	perIP     int            // --max-connections-per-ip; 0: no limit
	overrides map[string]int // by ip.String()
	nofile    int            // the open-file soft limit at start; 0 unknown
	segments  func() int     // the WAL's open segment files

	mu    sync.Mutex
	total int
	byIP  map[string]int

	logMu         sync.Mutex
	lastRefused   time.Time      // last log line about refused connections
	unlogged      map[string]int // refused since that line, by reason
	lastAcceptErr time.Time      // last log line about failed accepts
	acceptFails   int            // failed accepts since that line
}

func newConnLimiter(cfg Config, segments func() int) *connLimiter {
	l := &connLimiter{
		max:       cfg.MaxConnections,
		perIP:     cfg.MaxConnectionsPerIP,
		overrides: cfg.MaxConnectionsPerIPOverrides,
		segments:  segments,
		byIP:      make(map[string]int),
		unlogged:  make(map[string]int),
		nofile:    openFileLimit(),
	}
	return l
}

// limit is the most client connections the broker takes now.
func (l *connLimiter) limit() int {
	if l.max > 0 {
		return l.max
	}
	if l.nofile == 0 {
		return 0 // unknown: no limit
	}
	segs := 0
	if l.segments != nil {
		segs = l.segments()
	}
	return max(l.nofile-segs-fdReserve, minAutoConnections)
}

// ipOf is the address part of a connection's remote address.
func ipOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// admit counts a new connection from ip, or returns the reason it must be
// refused (and counts nothing).
func (l *connLimiter) admit(ip string) (reason string, limit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.limit(); n > 0 && l.total >= n {
		return refusedMaxConnections, n
	}
	per, ok := l.overrides[ip]
	if !ok {
		per = l.perIP
		if per == 0 {
			per = -1
		}
	}
	if per >= 0 && l.byIP[ip] >= per {
		return refusedPerIP, per
	}
	l.total++
	l.byIP[ip]++
	return "", 0
}

// release uncounts a connection admit counted.
func (l *connLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// count is the number of client connections held.
func (l *connLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// noteRefused reports whether a refused connection should be logged now,
// and how many were refused, by reason, since the last line.
func (l *connLimiter) noteRefused(reason string, now time.Time) (bool, map[string]int) {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	l.unlogged[reason]++
	if !l.lastRefused.IsZero() && now.Sub(l.lastRefused) < logEvery {
		return false, nil
	}
	l.lastRefused = now
	out := l.unlogged
	l.unlogged = make(map[string]int)
	return true, out
}

// noteAcceptFailure reports whether a failed accept should be logged now,
// and how many failed since the last line.
func (l *connLimiter) noteAcceptFailure(now time.Time) (bool, int) {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	l.acceptFails++
	if !l.lastAcceptErr.IsZero() && now.Sub(l.lastAcceptErr) < logEvery {
		return false, 0
	}
	l.lastAcceptErr = now
	n := l.acceptFails
	l.acceptFails = 0
	return true, n
}

// retryableAcceptError reports whether an accept error is one to wait out
// rather than stop serving for: the process or the system is short of file
// descriptors or memory, or one client's connection failed before it was
// accepted.
func retryableAcceptError(err error) bool {
	for _, e := range []syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPROTO, syscall.EPERM,
		syscall.EAGAIN, syscall.EINTR,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// maxConnections is max.connections as DescribeConfigs shows it: the
// limit now (the automatic one unless --max-connections is set), and
// Kafka's default, 2147483647, when there is none.
func (b *Broker) maxConnections() int {
	if n := b.connLim.limit(); n > 0 {
		return n
	}
	return math.MaxInt32
}

// maxConnectionsPerIP is max.connections.per.ip as DescribeConfigs shows
// it: Kafka's default, 2147483647, when there is no limit.
func (b *Broker) maxConnectionsPerIP() int {
	if b.cfg.MaxConnectionsPerIP == 0 {
		return math.MaxInt32
	}
	return b.cfg.MaxConnectionsPerIP
}

// connectionOverrides is max.connections.per.ip.overrides as Kafka writes
// it: IP:count pairs, comma-separated, sorted.
func (b *Broker) connectionOverrides() string {
	parts := make([]string, 0, len(b.cfg.MaxConnectionsPerIPOverrides))
	for ip, n := range b.cfg.MaxConnectionsPerIPOverrides {
		if strings.Contains(ip, ":") {
			ip = "[" + ip + "]"
		}
		parts = append(parts, ip+":"+strconv.Itoa(n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
