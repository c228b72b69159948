package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxInFlight bounds the requests a connection has read but not yet answered
// (Kafka clients pipeline up to 5 per connection by default).
const maxInFlight = 32

// ErrBadFrame means a client sent bytes that are not a Kafka request. The
// connection is closed; the broker carries on.
var ErrBadFrame = errors.New("broker: malformed request frame")

type inflight struct {
	key, version int16
	corrID       int32
	respond      func() kmsg.Response
	closeConn    bool // close the connection after the answers before this one
	// rawResp: the answer is raw, a bare size-prefixed SASL message (after
	// a v0 SaslHandshake; empty on a PLAIN login's success).
	rawResp bool
	raw     []byte
}

// serveConn runs one client connection: a read loop that decodes requests and
// runs their handlers in order, and a write loop that sends the responses in
// the same order.
func (b *Broker) serveConn(c net.Conn, cc *clientConn) {
	if cc.tcp != nil {
		c = orderlyConn{Conn: c, b: b, cc: cc}
	}
	defer c.Close()
	if b.tls != nil {
		tc, err := b.tlsHandshake(c)
		if err != nil {
			return
		}
		c = tc
	}
	log := b.log.Named("conn").With("client", c.RemoteAddr().String())
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	defer c.Close()

	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	queue := make(chan inflight, maxInFlight)
	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		b.writeLoop(ctx, c, queue, log, cc)
		cancel()
		c.Close() // unblock the reader if writing failed
	}()

	r := bufio.NewReaderSize(c, 64<<10)
	drain := false // let the answers already queued go out before closing
	auth := &connAuth{required: b.sasl != nil, principal: connPrincipal(c)}
	for {
		if idle := b.cfg.ConnectionsMaxIdle; idle > 0 {
			c.SetReadDeadline(time.Now().Add(idle))
		}
		if !b.waitUnmuted(ctx, auth) {
			break
		}
		var frame []byte
		var err error
		if auth.raw {
			frame, err = readSASLFrame(r)
		} else {
			limit, what := b.cfg.MaxRequestBytes, "socket.request.max.bytes, --max-request-bytes"
			if auth.required && !auth.done && limit > maxPreAuthFrame {
				limit, what = maxPreAuthFrame, "before the SASL login, sasl.server.max.receive.size"
			}
			frame, err = readFrameLimit(r, limit, what)
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF) || ctx.Err() != nil || errors.Is(err, net.ErrClosed):
			case errors.As(err, &ne) && ne.Timeout():
				log.Debug("closing idle connection (--connections-max-idle)", "idle", b.cfg.ConnectionsMaxIdle)
			default:
				log.Warn("closing connection", "error", err)
			}
			break
		}
		var in inflight
		if auth.raw {
			in = b.saslRaw(auth, frame, host)
		} else if in, err = b.dispatch(ctx, frame, host, auth); err != nil {
			log.Warn("closing connection after a bad request", "error", err)
			break
		}
		if in.key == kmsg.Produce.Int16() {
			// The handler has written the batches to the WAL and
			// keeps no reference into the request.
			putFrame(frame)
		}
		select {
		case queue <- in:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if in.closeConn {
			drain = true
			break
		}
	}
	close(queue)
	if !drain {
		cancel()
	}
	<-writeDone
}

// maxPreAuthFrame bounds a request frame on a connection that must log in
// with SASL and has not yet: only ApiVersions and the SASL requests may
// come then, and none is large. Kafka's sasl.server.max.receive.size,
// with its default.
const maxPreAuthFrame = 512 << 10

// A frame's size comes first, and a client may announce up to
// --max-request-bytes (100 MiB by default) and then send the rest slowly,
// or never. Frames up to eagerFrame are read into a buffer of their size
// at once, and so are larger ones while the frames announced and not yet
// received over every connection stay within frameClaimBudget: the usual
// case, a client that sends its request in one go. Beyond the budget a
// frame's buffer grows (four times at a step) as its bytes arrive, so
// that a connection never holds much more memory than it has sent.
// Before 2026-12-06 every frame's buffer was allocated whole up front: a
// hundred connections announcing 100 MiB each and sending nothing more
// made the broker's heap 10 GB.
const (
	eagerFrame       = 1 << 20
	frameClaimBudget = 256 << 20
)

// frameClaims is the size of the frames above eagerFrame being received
// into whole buffers, over every connection.
var frameClaims atomic.Int64

// readFrameLimit reads one request frame of at most max bytes; what names
// the limit in the error.
func readFrameLimit(r *bufio.Reader, max int32, what string) ([]byte, error) {
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(sz[:]))
	if n < 8 || n > max {
		return nil, fmt.Errorf("%w: frame size %d outside [8, %d] (%s)", ErrBadFrame, n, max, what)
	}
	if n > eagerFrame {
		if frameClaims.Add(int64(n)) > frameClaimBudget {
			frameClaims.Add(-int64(n))
			return readFrameGrowing(r, int(n))
		}
		defer frameClaims.Add(-int64(n))
	}
	buf := getFrame(int(n))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: frame of %d bytes cut short: %v", ErrBadFrame, n, err)
	}
	return buf, nil
}

// readFrameGrowing reads a frame of n bytes into a buffer that grows as
// they arrive.
func readFrameGrowing(r *bufio.Reader, n int) ([]byte, error) {
	buf := getFrame(min(n, eagerFrame))
	got := 0
	for {
		if _, err := io.ReadFull(r, buf[got:]); err != nil {
			putFrame(buf)
			return nil, fmt.Errorf("%w: frame of %d bytes cut short after %d: %v", ErrBadFrame, n, got, err)
		}
		got = len(buf)
		if got == n {
			return buf, nil
		}
		next := getFrame(min(n, 4*got))
		copy(next, buf)
		putFrame(buf)
		buf = next
	}
}

// readSASLFrame reads one bare SASL message: a 4-byte size, then that many
// bytes (at most maxSASLFrame).
func readSASLFrame(r *bufio.Reader) ([]byte, error) {
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(sz[:]))
	if n < 0 || n > maxSASLFrame {
		return nil, fmt.Errorf("%w: SASL message of %d bytes outside [0, %d]", ErrBadFrame, n, maxSASLFrame)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: SASL message of %d bytes cut short: %v", ErrBadFrame, n, err)
	}
	return buf, nil
}

// Request buffers of 64 KiB to 16 MiB come from pools by power-of-two
// size, so that a stream of large produce requests reuses a few buffers
// instead of allocating (and zeroing) a new one per request. Only Produce
// buffers go back (putFrame): other handlers may keep slices of theirs.
const (
	minPooledFrame = 16 // log2 of the smallest pooled buffer
	maxPooledFrame = 24 // log2 of the largest
)

var framePools [maxPooledFrame - minPooledFrame + 1]sync.Pool

func getFrame(n int) []byte {
	c := bits.Len(uint(n - 1))
	if n <= 0 || c < minPooledFrame || c > maxPooledFrame {
		return make([]byte, n)
	}
	if p, ok := framePools[c-minPooledFrame].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

func putFrame(buf []byte) {
	c := bits.Len(uint(cap(buf))) - 1
	if c < minPooledFrame || c > maxPooledFrame || cap(buf) != 1<<c {
		return
	}
	buf = buf[:0]
	framePools[c-minPooledFrame].Put(&buf)
}

// dispatch decodes one request frame and runs its handler.
func (b *Broker) dispatch(ctx context.Context, frame []byte, host string, auth *connAuth) (inflight, error) {
	rd := kbin.Reader{Src: frame}
	key := rd.Int16()
	version := rd.Int16()
	corrID := rd.Int32()
	clientID := rd.NullableString()
	if !rd.Ok() {
		return inflight{}, fmt.Errorf("%w: request header does not decode", ErrBadFrame)
	}
	in := inflight{key: key, version: version, corrID: corrID}
	if !auth.allows(key) {
		return in, fmt.Errorf("%w: %s before the SASL login (the broker requires SASL: --sasl-users)", ErrBadFrame, kmsg.NameForKey(key))
	}
	a, ok := apis[key]
	req := kmsg.RequestForKey(key)
	if !ok || req == nil {
		return in, fmt.Errorf("%w: unsupported API key %d (%s), correlation id %d", ErrBadFrame, key, kmsg.NameForKey(key), corrID)
	}
	if version < a.min || version > a.max {
		if key == kmsg.ApiVersions.Int16() {
			// KIP-511: answer an unknown ApiVersions version with v0 and
			// UNSUPPORTED_VERSION so the client can retry with one we know.
			in.version = 0
			resp := b.apiVersionsResponse(0)
			resp.ErrorCode = kerr.UnsupportedVersion.Code
			in.respond = now(resp)
			return in, nil
		}
		return in, fmt.Errorf("%w: %s v%d is not supported (supported v%d-v%d)", ErrBadFrame, kmsg.NameForKey(key), version, a.min, a.max)
	}
	req.SetVersion(version)
	if req.IsFlexible() {
		kmsg.SkipTags(&rd)
		if !rd.Ok() {
			return in, fmt.Errorf("%w: %s v%d header tags do not decode", ErrBadFrame, kmsg.NameForKey(key), version)
		}
	}
	if err := req.ReadFrom(rd.Src); err != nil {
		return in, fmt.Errorf("%w: %s v%d body does not decode: %v", ErrBadFrame, kmsg.NameForKey(key), version, err)
	}
	rc := &reqCtx{ctx: ctx, host: host, version: version, auth: auth, size: len(frame)}
	if clientID != nil {
		rc.clientID = *clientID
	}
	in.respond = a.handle(b, rc, req)
	in.closeConn = rc.closeConn
	return in, nil
}

// connSetup reports whether a request is part of setting a connection up
// (ApiVersions, the SASL login) rather than a client's business with it.
func connSetup(key int16) bool {
	switch kmsg.Key(key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		return true
	}
	return false
}

func (b *Broker) writeLoop(ctx context.Context, c net.Conn, queue <-chan inflight, log hclog.Logger, cc *clientConn) {
	buf := make([]byte, 0, 64<<10)
	for in := range queue {
		if in.rawResp {
			buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(in.raw)))
			buf = append(buf, in.raw...)
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(buf); err != nil {
				return
			}
			continue
		}
		if in.respond == nil {
			continue // acks=0, or a refused bare SASL login
		}
		resp := in.respond()
		if resp == nil {
			continue
		}
		resp.SetVersion(in.version)
		buf = buf[:0]
		buf = append(buf, 0, 0, 0, 0)
		buf = kbin.AppendInt32(buf, in.corrID)
		// ApiVersions keeps the v0 response header at every version (KIP-511).
		if resp.IsFlexible() && in.key != kmsg.ApiVersions.Int16() {
			buf = append(buf, 0) // no tagged fields
		}
		buf = resp.AppendTo(buf)
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(buf); err != nil {
			if ctx.Err() == nil {
				log.Debug("writing response failed", "api", kmsg.NameForKey(in.key), "error", err)
			}
			return // the caller cancels the context and closes the connection
		}
		if !connSetup(in.key) {
			cc.markAnswered()
		}
		if cap(buf) > 1<<20 {
			buf = make([]byte, 0, 64<<10)
		}
	}
}
