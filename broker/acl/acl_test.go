package acl

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func allow(rt kmsg.ACLResourceType, pt kmsg.ACLResourcePatternType, name, principal string, op kmsg.ACLOperation) Binding {
	return Binding{ResourceType: rt, ResourceName: name, PatternType: pt, Principal: principal, Host: "*",
		Operation: op, Permission: kmsg.ACLPermissionTypeAllow}
}

func deny(rt kmsg.ACLResourceType, pt kmsg.ACLResourcePatternType, name, principal string, op kmsg.ACLOperation) Binding {
	b := allow(rt, pt, name, principal, op)
	b.Permission = kmsg.ACLPermissionTypeDeny
	return b
}

const (
	topic    = kmsg.ACLResourceTypeTopic
	group    = kmsg.ACLResourceTypeGroup
	cluster  = kmsg.ACLResourceTypeCluster
	literal  = kmsg.ACLResourcePatternTypeLiteral
	prefixed = kmsg.ACLResourcePatternTypePrefixed
	read     = kmsg.ACLOperationRead
	write    = kmsg.ACLOperationWrite
	describe = kmsg.ACLOperationDescribe
	all      = kmsg.ACLOperationAll
)

func TestAuthorize(t *testing.T) {
	set := NewSet()
	set.Apply([]Binding{
		allow(topic, literal, "orders", "User:alice", write),
		allow(topic, prefixed, "logs-", "User:*", read),
		deny(topic, literal, "logs-secret", "User:bob", all),
		allow(group, literal, "*", "User:alice", read),
		allow(cluster, literal, ClusterName, "User:ops", kmsg.ACLOperationAlterConfigs),
		{ResourceType: topic, ResourceName: "pinned", PatternType: literal, Principal: "User:carol",
			Host: "10.0.0.7", Operation: read, Permission: kmsg.ACLPermissionTypeAllow},
	}, nil)
	a := &Authorizer{Set: set, SuperUsers: map[string]bool{"User:admin": true}}
	cases := []struct {
		principal, host string
		op              kmsg.ACLOperation
		rt              kmsg.ACLResourceType
		name            string
		want            bool
	}{
		{"User:alice", "1.2.3.4", write, topic, "orders", true},
		{"User:alice", "1.2.3.4", describe, topic, "orders", true}, // WRITE implies DESCRIBE
		{"User:alice", "1.2.3.4", read, topic, "orders", false},
		{"User:bob", "1.2.3.4", write, topic, "orders", false},
		{"User:bob", "1.2.3.4", read, topic, "logs-app", true}, // User:* with a prefix
		{"User:bob", "1.2.3.4", read, topic, "logs-secret", false},
		{"User:bob", "1.2.3.4", describe, topic, "logs-secret", false}, // DENY ALL
		{"User:alice", "1.2.3.4", read, topic, "logs-secret", true},    // the deny is bob's
		{"User:bob", "1.2.3.4", read, topic, "unnamed", false},         // no ACL names it
		{"User:admin", "1.2.3.4", kmsg.ACLOperationDelete, topic, "orders", true},
		{"User:alice", "1.2.3.4", read, group, "any-group", true},
		{"User:ops", "1.2.3.4", kmsg.ACLOperationDescribeConfigs, cluster, ClusterName, true}, // implied
		{"User:ops", "1.2.3.4", kmsg.ACLOperationAlter, cluster, ClusterName, false},
		{"User:carol", "10.0.0.7", read, topic, "pinned", true},
		{"User:carol", "10.0.0.8", read, topic, "pinned", false},
		{"Group:alice", "1.2.3.4", write, topic, "orders", false},
	}
	for _, c := range cases {
		if got := a.Authorize(c.principal, c.host, c.op, c.rt, c.name); got != c.want {
			t.Errorf("%s from %s %s %s %q: %v, want %v", c.principal, c.host, c.op, c.rt, c.name, got, c.want)
		}
	}

	// allow.everyone.if.no.acl.found: only resources no binding names.
	a.AllowIfNoACL = true
	if !a.Authorize("User:bob", "h", read, topic, "unnamed") {
		t.Error("AllowIfNoACL: a topic without ACLs is refused")
	}
	if a.Authorize("User:bob", "h", write, topic, "orders") {
		t.Error("AllowIfNoACL: a topic with ACLs for others is allowed")
	}
}

func TestAuthorizeAny(t *testing.T) {
	set := NewSet()
	a := &Authorizer{Set: set}
	if a.AuthorizeAny("User:alice", "h", write, topic) {
		t.Error("no ACLs: allowed")
	}
	set.Apply([]Binding{allow(topic, prefixed, "app-", "User:alice", write)}, nil)
	if !a.AuthorizeAny("User:alice", "h", write, topic) {
		t.Error("WRITE on prefix app-: refused")
	}
	if a.AuthorizeAny("User:bob", "h", write, topic) {
		t.Error("bob has no ACL: allowed")
	}
	set.Apply([]Binding{deny(topic, literal, "*", "User:alice", write)}, nil)
	if a.AuthorizeAny("User:alice", "h", write, topic) {
		t.Error("denied on every topic: allowed")
	}
}

func TestFilterMatches(t *testing.T) {
	set := NewSet()
	bs := []Binding{
		allow(topic, literal, "orders", "User:alice", write),
		allow(topic, literal, "*", "User:bob", read),
		allow(topic, prefixed, "ord", "User:carol", read),
		allow(group, literal, "orders", "User:alice", read),
	}
	set.Apply(bs, nil)
	name := "orders"
	alice := "User:alice"
	cases := []struct {
		what string
		f    Filter
		want int
	}{
		{"everything", Filter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, 4},
		{"topic named orders, any pattern", Filter{ResourceType: topic, ResourceName: &name, PatternType: kmsg.ACLResourcePatternTypeAny,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, 1},
		{"what applies to topic orders", Filter{ResourceType: topic, ResourceName: &name, PatternType: kmsg.ACLResourcePatternTypeMatch,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, 3},
		{"literal topics", Filter{ResourceType: topic, PatternType: literal,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, 2},
		{"alice's", Filter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny, Principal: &alice,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, 2},
		{"denies", Filter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeDeny}, 0},
	}
	for _, c := range cases {
		if err := c.f.Validate(); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if got := set.Select(c.f); len(got) != c.want {
			t.Errorf("%s: %d bindings %v, want %d", c.what, len(got), got, c.want)
		}
	}
	set.Apply(nil, set.Select(cases[2].f))
	if set.Len() != 1 {
		t.Errorf("after removing what applies to topic orders: %d left, want 1", set.Len())
	}
}

func TestValidate(t *testing.T) {
	good := allow(topic, literal, "orders", "User:alice", write)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(b *Binding){
		"resource ANY":         func(b *Binding) { b.ResourceType = kmsg.ACLResourceTypeAny },
		"pattern MATCH":        func(b *Binding) { b.PatternType = kmsg.ACLResourcePatternTypeMatch },
		"prefixed *":           func(b *Binding) { b.PatternType, b.ResourceName = prefixed, "*" },
		"empty name":           func(b *Binding) { b.ResourceName = "" },
		"principal no type":    func(b *Binding) { b.Principal = "alice" },
		"empty host":           func(b *Binding) { b.Host = "" },
		"operation ANY":        func(b *Binding) { b.Operation = kmsg.ACLOperationAny },
		"operation 99":         func(b *Binding) { b.Operation = 99 },
		"permission ANY":       func(b *Binding) { b.Permission = kmsg.ACLPermissionTypeAny },
		"cluster named wrong":  func(b *Binding) { b.ResourceType, b.ResourceName = cluster, "mine" },
		"resource type 0 (??)": func(b *Binding) { b.ResourceType = 0 },
	}
	for what, mutate := range bad {
		b := good
		mutate(&b)
		if err := b.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", what, err)
		}
	}
	if err := (Filter{ResourceType: 9, PatternType: 1, Operation: 1, Permission: 1}).Validate(); err == nil {
		t.Error("filter with resource type 9 validates")
	}
}

func TestParseSuperUsers(t *testing.T) {
	got, err := ParseSuperUsers("User:admin; User:CN=broker,O=acme ;")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["User:admin"] || !got["User:CN=broker,O=acme"] {
		t.Errorf("got %v", got)
	}
	if _, err := ParseSuperUsers("admin"); err == nil {
		t.Error("principal without a type accepted")
	}
}
