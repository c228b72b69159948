package broker

// Fetch sessions (Kafka KIP-227), Fetch v7 and later.
//
// A consumer that fetches many partitions names them all only once: its
// first Fetch (session id 0, epoch 0) creates a session on this node, which
// remembers the partitions with their fetch offsets and max bytes, and the
// answer carries the session id. Later Fetches (that id, epochs 1, 2, ...)
// are incremental: they list only the partitions added or changed (a new
// fetch offset) and the ones to forget, and the answer lists only the
// partitions with something new (records, a moved high watermark or log
// start offset, an error, a preferred read replica). Epoch -1 ends the
// session. Every node keeps its own sessions, in memory: after a restart
// an incremental Fetch gets FETCH_SESSION_ID_NOT_FOUND, and the client
// starts over with a full one, as with Kafka.

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxFetchSessions bounds the sessions a node keeps (Kafka's
// max.incremental.fetch.session.cache.slots); beyond it the least recently
// used one is dropped (its client gets FETCH_SESSION_ID_NOT_FOUND and
// starts a new one).
const maxFetchSessions = 1000

type fetchSessions struct {
	mu   sync.Mutex
	byID map[int32]*fetchSession
}

type fetchSession struct {
	id       int32
	epoch    int32 // the epoch the next incremental Fetch must carry
	order    []tp  // partitions in the order they were added
	parts    map[tp]*sessionPartition
	lastUsed time.Time
}

// sessionPartition is one partition of a session: what the client asked
// for, and what the last answer that listed it told the client.
type sessionPartition struct {
	req      kmsg.FetchRequestTopicPartition
	hw       int64
	logStart int64
	answered bool // hw and logStart hold what the client was told
}

// begin resolves r against the sessions: it returns the request to serve
// (for an incremental Fetch, one that names every partition of the
// session), the session that the answer belongs to (nil: none) and whether
// the answer must list only what changed. A non-zero code is the whole
// answer's error.
func (s *fetchSessions) begin(r *kmsg.FetchRequest) (full *kmsg.FetchRequest, sess *fetchSession, incremental bool, code int16) {
	if r.Version < 7 {
		return r, nil, false, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.SessionEpoch == -1: // a full Fetch that ends the session, if any
		delete(s.byID, r.SessionID)
		return r, nil, false, 0
	case r.SessionEpoch == 0: // a full Fetch that starts a new session
		delete(s.byID, r.SessionID)
		sess = s.newLocked()
		sess.update(r)
		return r, sess, false, 0
	case r.SessionID == 0:
		return nil, nil, false, kerr.InvalidFetchSessionEpoch.Code
	}
	sess = s.byID[r.SessionID]
	if sess == nil {
		return nil, nil, false, kerr.FetchSessionIDNotFound.Code
	}
	if r.SessionEpoch != sess.epoch {
		return nil, nil, false, kerr.InvalidFetchSessionEpoch.Code
	}
	sess.update(r)
	full = &kmsg.FetchRequest{
		Version: r.Version, ReplicaID: r.ReplicaID, MaxWaitMillis: r.MaxWaitMillis, MinBytes: r.MinBytes,
		MaxBytes: r.MaxBytes, IsolationLevel: r.IsolationLevel, Rack: r.Rack,
		SessionID: r.SessionID, SessionEpoch: r.SessionEpoch,
	}
	at := map[string]int{} // topic -> index in full.Topics
	for _, k := range sess.order {
		i, ok := at[k.topic]
		if !ok {
			i = len(full.Topics)
			at[k.topic] = i
			full.Topics = append(full.Topics, kmsg.FetchRequestTopic{Topic: k.topic})
		}
		full.Topics[i].Partitions = append(full.Topics[i].Partitions, sess.parts[k].req)
	}
	return full, sess, true, 0
}

// count returns how many sessions are kept.
func (s *fetchSessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// newLocked makes an empty session with an unused id, dropping the least
// recently used session when the cache is full.
func (s *fetchSessions) newLocked() *fetchSession {
	if s.byID == nil {
		s.byID = map[int32]*fetchSession{}
	}
	if len(s.byID) >= maxFetchSessions {
		var oldest *fetchSession
		for _, o := range s.byID {
			if oldest == nil || o.lastUsed.Before(oldest.lastUsed) {
				oldest = o
			}
		}
		delete(s.byID, oldest.id)
	}
	id := rand.Int32N(math.MaxInt32) + 1
	for s.byID[id] != nil {
		id = rand.Int32N(math.MaxInt32) + 1
	}
	sess := &fetchSession{id: id, parts: map[tp]*sessionPartition{}}
	s.byID[id] = sess
	return sess
}

// update applies a Fetch to the session: partitions added or changed,
// partitions forgotten, and the epoch the next Fetch must carry.
func (sess *fetchSession) update(r *kmsg.FetchRequest) {
	sess.lastUsed = time.Now()
	for _, ft := range r.ForgottenTopics {
		for _, p := range ft.Partitions {
			delete(sess.parts, tp{ft.Topic, p})
		}
	}
	kept := sess.order[:0]
	for _, k := range sess.order {
		if sess.parts[k] != nil {
			kept = append(kept, k)
		}
	}
	sess.order = kept
	for _, rt := range r.Topics {
		for _, rp := range rt.Partitions {
			k := tp{rt.Topic, rp.Partition}
			if sp := sess.parts[k]; sp != nil {
				sp.req = rp
				continue
			}
			sess.parts[k] = &sessionPartition{req: rp}
			sess.order = append(sess.order, k)
		}
	}
	if sess.epoch == math.MaxInt32 {
		sess.epoch = 1 // epochs wrap to 1 (0 starts a session)
	} else {
		sess.epoch++
	}
}

// finish records what resp tells the client about each partition and, for
// an incremental Fetch, leaves out the partitions with nothing new. The
// partitions that returned records move to the end of the session's order,
// as Kafka does, so that under MaxBytes the first partitions do not take
// every answer and starve the others.
func (s *fetchSessions) finish(sess *fetchSession, resp *kmsg.FetchResponse, incremental bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp.SessionID = sess.id
	var served []tp
	topics := resp.Topics[:0]
	for _, st := range resp.Topics {
		parts := st.Partitions[:0]
		for _, sp := range st.Partitions {
			k := tp{st.Topic, sp.Partition}
			c := sess.parts[k]
			news := c == nil || !c.answered || len(sp.RecordBatches) > 0 || sp.ErrorCode != 0 ||
				sp.PreferredReadReplica >= 0 || sp.HighWatermark != c.hw || sp.LogStartOffset != c.logStart
			if c != nil {
				c.hw, c.logStart, c.answered = sp.HighWatermark, sp.LogStartOffset, true
				if len(sp.RecordBatches) > 0 {
					served = append(served, k)
				}
			}
			if news || !incremental {
				parts = append(parts, sp)
			}
		}
		if len(parts) > 0 {
			st.Partitions = parts
			topics = append(topics, st)
		}
	}
	resp.Topics = topics
	if len(served) > 0 {
		last := map[tp]bool{}
		for _, k := range served {
			last[k] = true
		}
		order := make([]tp, 0, len(sess.order))
		for _, k := range sess.order {
			if !last[k] {
				order = append(order, k)
			}
		}
		sess.order = append(order, served...)
	}
}
