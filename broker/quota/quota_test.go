package quota

import (
	"errors"
	"testing"
	"time"
)

func name(s string) *Part { return &Part{Name: s} }

var def = &Part{Default: true}

func f(v float64) *float64 { return &v }

// Kafka's precedence: the most specific entity that has the quota wins,
// user before client id, and defaults apply to each user or client on its
// own.
func TestResolvePrecedence(t *testing.T) {
	s := NewStore()
	s.Apply(Entity{ClientID: def}, map[string]*float64{ProducerByteRate: f(100)})
	s.Apply(Entity{ClientID: name("etl")}, map[string]*float64{ProducerByteRate: f(200)})
	s.Apply(Entity{User: def}, map[string]*float64{ProducerByteRate: f(300)})
	s.Apply(Entity{User: name("alice")}, map[string]*float64{ProducerByteRate: f(400), ConsumerByteRate: f(450)})
	s.Apply(Entity{User: name("alice"), ClientID: name("etl")}, map[string]*float64{ProducerByteRate: f(500)})
	cases := []struct {
		user, client, q string
		want            float64
		sensor          sensorKey
	}{
		{"alice", "etl", ProducerByteRate, 500, sensorKey{quota: ProducerByteRate, hasUser: true, user: "alice", hasClient: true, client: "etl"}},
		{"alice", "other", ProducerByteRate, 400, sensorKey{quota: ProducerByteRate, hasUser: true, user: "alice"}},
		{"alice", "etl", ConsumerByteRate, 450, sensorKey{quota: ConsumerByteRate, hasUser: true, user: "alice"}},
		{"bob", "etl", ProducerByteRate, 300, sensorKey{quota: ProducerByteRate, hasUser: true, user: "bob"}},
	}
	for _, c := range cases {
		got, sk, ok := s.resolve(c.user, c.client, c.q)
		if !ok || got != c.want || sk != c.sensor {
			t.Errorf("%s/%s %s: %v %+v %v, want %v %+v", c.user, c.client, c.q, got, sk, ok, c.want, c.sensor)
		}
	}
	s.Apply(Entity{User: def}, map[string]*float64{ProducerByteRate: nil})
	if got, sk, _ := s.resolve("bob", "etl", ProducerByteRate); got != 200 || sk.hasUser {
		t.Errorf("bob/etl without a user default: %v %+v, want 200 by client id", got, sk)
	}
	if got, _, _ := s.resolve("bob", "x", ProducerByteRate); got != 100 {
		t.Errorf("bob/x: %v, want the client-id default 100", got)
	}
	if _, _, ok := s.resolve("bob", "x", ConsumerByteRate); ok {
		t.Error("bob/x has a consumer quota")
	}
}

// A client that sends at twice its quota is told to wait about as long
// again; within the quota it is not throttled; the rate is over 10-11 s.
func TestSensorThrottle(t *testing.T) {
	s := NewStore()
	s.Apply(Entity{User: name("alice")}, map[string]*float64{ProducerByteRate: f(1000)})
	start := time.Unix(1_700_000_000, 0)
	// 10 s at 1000 B/s: never throttled.
	for i := range 100 {
		if d := s.Record("alice", "c", ProducerByteRate, 100, start.Add(time.Duration(i)*100*time.Millisecond)); d != 0 {
			t.Fatalf("at the quota, step %d: throttled %v", i, d)
		}
	}
	// Then 10,000 bytes at once: about 20,000 bytes over about 10 s, twice
	// the quota: wait about 10 s, capped at MaxThrottle.
	if d := s.Record("alice", "c", ProducerByteRate, 10000, start.Add(10*time.Second)); d != MaxThrottle {
		t.Fatalf("at twice the quota: throttled %v, want the cap %v", d, MaxThrottle)
	}
	// A small overshoot gives a proportionate wait.
	s2 := NewStore()
	s2.Apply(Entity{ClientID: def}, map[string]*float64{ConsumerByteRate: f(1000)})
	d := s2.Record("x", "c", ConsumerByteRate, 11000, start)
	// 11,000 bytes counted over the minimum of 10 s: 1100 B/s, 10% over.
	if d < 900*time.Millisecond || d > 1100*time.Millisecond {
		t.Fatalf("10%% over: throttled %v, want about 1 s", d)
	}
	// Another user, unconstrained by someone else's rate.
	if d := s.Record("bob", "c", ProducerByteRate, 1<<30, start); d != 0 {
		t.Fatalf("bob has no quota: throttled %v", d)
	}
	// Windows older than 11 s no longer count.
	if d := s.Record("alice", "c", ProducerByteRate, 1, start.Add(30*time.Second)); d != 0 {
		t.Fatalf("after 20 s of quiet: throttled %v", d)
	}
}

func TestDescribe(t *testing.T) {
	s := NewStore()
	s.Apply(Entity{User: name("alice")}, map[string]*float64{ProducerByteRate: f(1)})
	s.Apply(Entity{User: def}, map[string]*float64{ProducerByteRate: f(2)})
	s.Apply(Entity{User: name("alice"), ClientID: name("etl")}, map[string]*float64{ConsumerByteRate: f(3)})
	s.Apply(Entity{ClientID: name("etl")}, map[string]*float64{ConsumerByteRate: f(4)})
	cases := []struct {
		what   string
		comps  []Component
		strict bool
		want   []string
	}{
		{"all", nil, false, []string{"client-id=etl", "user=<default>", "user=alice", "user=alice,client-id=etl"}},
		{"user alice", []Component{{Type: TypeUser, Name: "alice"}}, false, []string{"user=alice", "user=alice,client-id=etl"}},
		{"user alice, strict", []Component{{Type: TypeUser, Name: "alice"}}, true, []string{"user=alice"}},
		{"default user", []Component{{Type: TypeUser, Default: true}}, false, []string{"user=<default>"}},
		{"any user and any client", []Component{{Type: TypeUser, Any: true}, {Type: TypeClientID, Any: true}}, false, []string{"user=alice,client-id=etl"}},
		{"ip", []Component{{Type: "ip", Any: true}}, false, nil},
	}
	for _, c := range cases {
		var got []string
		for _, cfg := range s.Describe(c.comps, c.strict) {
			got = append(got, cfg.Entity.String())
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: %v, want %v", c.what, got, c.want)
				break
			}
		}
	}
	s.Apply(Entity{User: name("alice")}, map[string]*float64{ProducerByteRate: nil})
	if s.Len() != 3 {
		t.Fatalf("removing alice's only quota left %d entities, want 3", s.Len())
	}
	all := s.All()
	s2 := NewStore()
	s2.Replace(all)
	if s2.Len() != 3 {
		t.Fatalf("Replace: %d entities", s2.Len())
	}
}

func TestValidate(t *testing.T) {
	for _, bad := range []struct {
		k string
		v float64
	}{{"request_percentage", 50}, {"made_up", 1}, {ProducerByteRate, 0}, {ProducerByteRate, 1.5}, {ConsumerByteRate, -3}} {
		if err := ValidateValue(bad.k, bad.v); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s=%v: %v, want ErrInvalid", bad.k, bad.v, err)
		}
	}
	if err := ValidateValue(ProducerByteRate, 1048576); err != nil {
		t.Error(err)
	}
	alice := "alice"
	for _, bad := range []struct {
		types []string
		names []*string
	}{
		{[]string{"ip"}, []*string{nil}},
		{[]string{"user", "user"}, []*string{&alice, nil}},
		{[]string{"group"}, []*string{&alice}},
		{nil, nil},
	} {
		if _, err := EntityFrom(bad.types, bad.names); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %v, want ErrInvalid", bad.types, err)
		}
	}
	e, err := EntityFrom([]string{"client-id", "user"}, []*string{nil, &alice})
	if err != nil || e.String() != "user=alice,client-id=<default>" {
		t.Errorf("%v %v", e, err)
	}
}
