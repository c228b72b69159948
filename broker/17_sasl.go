package broker

// SaslHandshake (key 17), v0-v1, and SaslAuthenticate (key 36), v0-v2.
//
// With --sasl-users every connection must log in before anything but
// ApiVersions: SaslHandshake names the mechanism (PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512), then the SASL messages go either in SaslAuthenticate
// requests (handshake v1: librdkafka, franz-go, sarama, Java) or, after a
// v0 handshake, as bare size-prefixed frames (kafka-python 2.0; Kafka
// still accepts both). Any other request before the login closes the
// connection, as Kafka does; so does a failed login, after its answer.
// Sessions do not expire (SessionLifetimeMs 0: no KIP-368
// re-authentication). broker/sasl checks the credentials.

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/sasl"
)

func init() {
	register(kmsg.SASLHandshake.Int16(), 0, 1, handleSASLHandshake)
	register(kmsg.SASLAuthenticate.Int16(), 0, 2, handleSASLAuthenticate)
}

// connAuth is one connection's SASL state. Only the connection's read loop
// touches it (handlers change it before they return their answer).
type connAuth struct {
	required bool        // the listener requires a login
	done     bool        // logged in
	server   sasl.Server // the login under way, after SaslHandshake
	mech     string
	raw      bool // handshake v0: the next frames are bare SASL messages
	// principal is who the connection's requests are authorized as
	// (29_acls.go): "User:" and the SASL user once logged in, else the
	// subject of the TLS client certificate, else User:ANONYMOUS.
	principal string
	// mutedUntil (Unix nanoseconds) holds back the next request of a
	// client over its quota (49_client_quotas.go). The write loop sets it
	// too, hence atomic.
	mutedUntil atomic.Int64
}

// allows reports whether a request with this key may come now.
func (a *connAuth) allows(key int16) bool {
	switch {
	case !a.required || a.done:
		return true
	case a.raw:
		return false
	}
	switch key {
	case kmsg.ApiVersions.Int16(), kmsg.SASLHandshake.Int16(), kmsg.SASLAuthenticate.Int16():
		return true
	}
	return false
}

func handleSASLHandshake(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.SASLHandshakeRequest)
	resp := r.ResponseKind().(*kmsg.SASLHandshakeResponse)
	a := rc.auth
	switch {
	case b.sasl == nil:
		// Not a SASL listener: no mechanism is offered.
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		resp.SupportedMechanisms = []string{}
		return now(resp)
	case a.done || a.server != nil:
		resp.ErrorCode = kerr.IllegalSaslState.Code
		rc.closeConn = true
		return now(resp)
	}
	resp.SupportedMechanisms = sasl.Mechanisms
	srv, ok := b.sasl.NewServer(r.Mechanism)
	if !ok {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return now(resp)
	}
	a.server, a.mech, a.raw = srv, r.Mechanism, r.Version == 0
	return now(resp)
}

func handleSASLAuthenticate(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.SASLAuthenticateRequest)
	resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	a := rc.auth
	if b.sasl == nil || a.server == nil || a.done {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate without a SaslHandshake naming the mechanism first"
		resp.ErrorMessage = &msg
		rc.closeConn = true
		return now(resp)
	}
	out, _, err := b.saslStep(a, r.SASLAuthBytes, rc.host)
	if err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := err.Error()
		resp.ErrorMessage = &msg
		rc.closeConn = true
		return now(resp)
	}
	resp.SASLAuthBytes = out
	return now(resp)
}

// saslStep feeds one client message to the login under way and logs its
// outcome.
func (b *Broker) saslStep(a *connAuth, in []byte, host string) ([]byte, bool, error) {
	out, done, err := a.server.Step(in)
	switch {
	case err != nil:
		b.metrics.saslFailures.Inc()
		user := a.server.User()
		if b.saslLog.Loud(host) {
			b.log.Warn("SASL login refused", "client", host, "mechanism", a.mech, "user", user, "error", err)
		} else {
			b.log.Debug("SASL login refused", "client", host, "mechanism", a.mech, "user", user, "error", err)
		}
	case done:
		a.done = true
		a.principal = "User:" + a.server.User()
		b.log.Debug("SASL login", "client", host, "mechanism", a.mech, "user", a.server.User())
	}
	return out, done, err
}

// maxSASLFrame bounds a bare SASL message (after a v0 handshake).
const maxSASLFrame = 64 << 10

// saslRaw answers one bare SASL message (after a v0 handshake) with a bare
// one; a refused login closes the connection without an answer, as Kafka
// does.
func (b *Broker) saslRaw(a *connAuth, in []byte, host string) inflight {
	out, done, err := b.saslStep(a, in, host)
	if err != nil {
		return inflight{key: -1, closeConn: true}
	}
	if done {
		a.raw = false
	}
	return inflight{key: -1, raw: out, rawResp: true} // key -1: no Kafka request
}
