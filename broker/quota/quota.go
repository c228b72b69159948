// Package quota holds Kafka client quotas (KIP-13, KIP-55, KIP-546) and
// measures clients against them, as Kafka's ClientQuotaManager does.
//
// A quota is a byte rate, per broker: producer_byte_rate (bytes of Produce
// requests a broker takes per second) or consumer_byte_rate (bytes of
// records it answers Fetches with per second), set for an entity: a user,
// a client id, a user with a client id, or the defaults of these (a
// default applies to each user or client id on its own). For a
// connection's user U and client id C, a quota is taken from the first of
// these entities that has it, as in Kafka:
//
//	user=U, client-id=C
//	user=U, client-id=<default>
//	user=U
//	user=<default>, client-id=C
//	user=<default>, client-id=<default>
//	user=<default>
//	client-id=C
//	client-id=<default>
//
// Every connection that falls under the same entity shares its rate (all
// of user U's connections, for user=U). The rate is measured over 11
// windows of one second (Kafka's quota.window.num and
// quota.window.size.seconds); a request that takes it over the quota is
// answered with a throttle time: how long the client must wait for the
// rate to fall back to the quota.
package quota

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// The quota keys Tandem enforces.
const (
	ProducerByteRate = "producer_byte_rate"
	ConsumerByteRate = "consumer_byte_rate"
)

// Entity types, as Kafka names them.
const (
	TypeUser     = "user"
	TypeClientID = "client-id"
)

// The rate is measured over Samples windows of Window each.
const (
	Samples = 11
	Window  = time.Second
	// MaxThrottle bounds one throttle time, so that a burst cannot mute a
	// client for longer than its group session (kafka-python's default
	// session.timeout.ms is 10 s) and its requests' timeouts.
	MaxThrottle = 5 * time.Second
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid client quota")

// Entity is what a quota is set for. A part that is present is either a
// name or the default (Default true, Name empty).
type Entity struct {
	User     *Part `json:"user,omitempty"`
	ClientID *Part `json:"client_id,omitempty"`
}

// Part is one part of an entity.
type Part struct {
	Name    string `json:"name,omitempty"`
	Default bool   `json:"default,omitempty"`
}

// key is Entity in comparable form.
type key struct {
	hasUser, userDefault     bool
	user                     string
	hasClient, clientDefault bool
	client                   string
}

func (e Entity) key() key {
	var k key
	if e.User != nil {
		k.hasUser, k.userDefault, k.user = true, e.User.Default, e.User.Name
	}
	if e.ClientID != nil {
		k.hasClient, k.clientDefault, k.client = true, e.ClientID.Default, e.ClientID.Name
	}
	return k
}

func (k key) entity() Entity {
	var e Entity
	if k.hasUser {
		e.User = &Part{Name: k.user, Default: k.userDefault}
	}
	if k.hasClient {
		e.ClientID = &Part{Name: k.client, Default: k.clientDefault}
	}
	return e
}

func (p *Part) String() string {
	if p.Default {
		return "<default>"
	}
	return p.Name
}

// String is the entity as kafka-configs.sh names it: user=alice,client-id=<default>.
func (e Entity) String() string {
	var parts []string
	if e.User != nil {
		parts = append(parts, TypeUser+"="+e.User.String())
	}
	if e.ClientID != nil {
		parts = append(parts, TypeClientID+"="+e.ClientID.String())
	}
	return strings.Join(parts, ",")
}

// EntityFrom builds an entity from Kafka's (type, name) pairs; a nil name
// is the default.
func EntityFrom(types []string, names []*string) (Entity, error) {
	var e Entity
	for i, t := range types {
		p := &Part{Default: names[i] == nil}
		if names[i] != nil {
			p.Name = *names[i]
			if p.Name == "" {
				return e, fmt.Errorf("%w: empty %s name (a null name is the default)", ErrInvalid, t)
			}
		}
		switch t {
		case TypeUser:
			if e.User != nil {
				return e, fmt.Errorf("%w: entity type %s given twice", ErrInvalid, t)
			}
			e.User = p
		case TypeClientID:
			if e.ClientID != nil {
				return e, fmt.Errorf("%w: entity type %s given twice", ErrInvalid, t)
			}
			e.ClientID = p
		case "ip":
			return e, fmt.Errorf("%w: ip quotas (connection_creation_rate) are not supported", ErrInvalid)
		default:
			return e, fmt.Errorf("%w: unknown entity type %q (user, client-id)", ErrInvalid, t)
		}
	}
	if e.User == nil && e.ClientID == nil {
		return e, fmt.Errorf("%w: no entity", ErrInvalid)
	}
	return e, nil
}

// ValidateValue checks one quota value to set.
func ValidateValue(k string, v float64) error {
	switch k {
	case ProducerByteRate, ConsumerByteRate:
	case "request_percentage", "controller_mutation_rate":
		return fmt.Errorf("%w: %s is not supported (only %s and %s)", ErrInvalid, k, ProducerByteRate, ConsumerByteRate)
	default:
		return fmt.Errorf("%w: unknown quota %q (%s, %s)", ErrInvalid, k, ProducerByteRate, ConsumerByteRate)
	}
	if v < 1 || v != math.Trunc(v) || v > math.MaxInt64 {
		return fmt.Errorf("%w: %s must be a whole number of bytes per second, at least 1 (got %v)", ErrInvalid, k, v)
	}
	return nil
}

// Config is the quotas of one entity.
type Config struct {
	Entity Entity             `json:"entity"`
	Values map[string]float64 `json:"values"`
}

// Store is a node's quotas and the rates it measures. Every node holds the
// same quotas (they come from WAL entries); the rates are the node's own.
type Store struct {
	mu      sync.RWMutex
	configs map[key]map[string]float64

	smu       sync.Mutex
	sensors   map[sensorKey]*sensor
	lastSweep time.Time
}

// NewStore returns a store without quotas.
func NewStore() *Store {
	return &Store{configs: map[key]map[string]float64{}, sensors: map[sensorKey]*sensor{}}
}

// Apply sets (non-nil value) and removes (nil) quotas of one entity.
func (s *Store) Apply(e Entity, set map[string]*float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := e.key()
	vals := map[string]float64{}
	for q, v := range s.configs[k] {
		vals[q] = v
	}
	for q, v := range set {
		if v == nil {
			delete(vals, q)
		} else {
			vals[q] = *v
		}
	}
	if len(vals) == 0 {
		delete(s.configs, k)
	} else {
		s.configs[k] = vals
	}
}

// Replace makes the quotas exactly cs (a state checkpoint being restored).
func (s *Store) Replace(cs []Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configs = map[key]map[string]float64{}
	for _, c := range cs {
		vals := map[string]float64{}
		for q, v := range c.Values {
			vals[q] = v
		}
		if len(vals) > 0 {
			s.configs[c.Entity.key()] = vals
		}
	}
}

// Len is the number of entities with quotas.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.configs)
}

// All returns every entity's quotas, sorted by entity.
func (s *Store) All() []Config {
	return s.Describe(nil, false)
}

// Component is one filter of Describe: an entity type, and a name (EXACT),
// the default (Default), or anything of that type (Any).
type Component struct {
	Type    string
	Name    string
	Default bool
	Any     bool
}

// Describe returns the quotas of the entities that match every component
// (with strict, only entities with no other parts), sorted.
func (s *Store) Describe(components []Component, strict bool) []Config {
	s.mu.RLock()
	var out []Config
	for k, vals := range s.configs {
		if !matches(k, components, strict) {
			continue
		}
		c := Config{Entity: k.entity(), Values: map[string]float64{}}
		for q, v := range vals {
			c.Values[q] = v
		}
		out = append(out, c)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Entity.String() < out[j].Entity.String() })
	return out
}

func matches(k key, components []Component, strict bool) bool {
	seenUser, seenClient := false, false
	for _, c := range components {
		var has, def bool
		var name string
		switch c.Type {
		case TypeUser:
			has, def, name, seenUser = k.hasUser, k.userDefault, k.user, true
		case TypeClientID:
			has, def, name, seenClient = k.hasClient, k.clientDefault, k.client, true
		default:
			return false // no entity of another type is stored
		}
		switch {
		case !has:
			return false
		case c.Any:
		case c.Default:
			if !def {
				return false
			}
		default:
			if def || name != c.Name {
				return false
			}
		}
	}
	if strict && ((k.hasUser && !seenUser) || (k.hasClient && !seenClient)) {
		return false
	}
	return true
}

// resolve returns the quota q of a connection of user and clientID, and
// the entity whose rate it is measured against (the user and client id
// parts that the matching entity has). ok is false without a quota.
func (s *Store) resolve(user, clientID, q string) (limit float64, sk sensorKey, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.configs) == 0 {
		return 0, sk, false
	}
	for _, k := range []key{
		{hasUser: true, user: user, hasClient: true, client: clientID},
		{hasUser: true, user: user, hasClient: true, clientDefault: true},
		{hasUser: true, user: user},
		{hasUser: true, userDefault: true, hasClient: true, client: clientID},
		{hasUser: true, userDefault: true, hasClient: true, clientDefault: true},
		{hasUser: true, userDefault: true},
		{hasClient: true, client: clientID},
		{hasClient: true, clientDefault: true},
	} {
		v, found := s.configs[k][q]
		if !found {
			continue
		}
		sk = sensorKey{quota: q}
		if k.hasUser {
			sk.user, sk.hasUser = user, true
		}
		if k.hasClient {
			sk.client, sk.hasClient = clientID, true
		}
		return v, sk, true
	}
	return 0, sk, false
}

type sensorKey struct {
	quota     string
	hasUser   bool
	user      string
	hasClient bool
	client    string
}

// Record adds n bytes of quota q (ProducerByteRate, ConsumerByteRate) for
// a connection of user and clientID at now, and returns how long that
// client must now wait (0: within its quota, or no quota applies).
func (s *Store) Record(user, clientID, q string, n int, now time.Time) time.Duration {
	limit, sk, ok := s.resolve(user, clientID, q)
	if !ok {
		return 0
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	if now.Sub(s.lastSweep) > time.Minute {
		// Forget the rates of clients gone quiet.
		for k, sn := range s.sensors {
			if now.Sub(sn.lastUsed) > 10*time.Minute {
				delete(s.sensors, k)
			}
		}
		s.lastSweep = now
	}
	sn := s.sensors[sk]
	if sn == nil {
		sn = &sensor{}
		s.sensors[sk] = sn
	}
	return sn.record(now, float64(n), limit)
}

// sensor measures one entity's rate over Samples windows.
type sensor struct {
	windows [Samples]struct {
		start int64 // window number: Unix time / Window
		bytes float64
	}
	lastUsed time.Time
}

func (sn *sensor) record(now time.Time, n, limit float64) time.Duration {
	sn.lastUsed = now
	cur := now.UnixNano() / int64(Window)
	w := &sn.windows[cur%Samples]
	if w.start != cur {
		w.start, w.bytes = cur, 0
	}
	w.bytes += n
	total, oldest := 0.0, cur
	for _, x := range sn.windows {
		if x.start > cur-Samples && x.start <= cur {
			total += x.bytes
			oldest = min(oldest, x.start)
		}
	}
	// As Kafka's Rate: over the time since the oldest window began, but at
	// least Samples-1 windows, so that a client's first second does not
	// count as its rate.
	elapsed := now.Sub(time.Unix(0, oldest*int64(Window)))
	elapsed = max(elapsed, (Samples-1)*Window)
	rate := total / elapsed.Seconds()
	if rate <= limit {
		return 0
	}
	// The wait after which the rate over the window is back at the limit.
	t := time.Duration((rate - limit) / limit * float64(elapsed))
	return min(t, MaxThrottle)
}
