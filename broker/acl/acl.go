// Package acl holds Kafka access control lists and decides, as Kafka's
// StandardAuthorizer (AclAuthorizer before it) does, whether a principal
// may perform an operation on a resource.
//
// A binding says: principal P, connecting from host H, is allowed (or
// denied) operation O on the resources of type T whose name is N (pattern
// LITERAL; N "*" means every name) or starts with N (pattern PREFIXED).
// The rules, in order:
//
//  1. A super user may do everything.
//  2. A DENY binding that matches the principal, host, resource and
//     operation (or ALL) refuses the request, whatever else allows it.
//  3. An ALLOW binding that matches allows it. ALLOW of READ, WRITE,
//     DELETE or ALTER implies DESCRIBE; ALLOW of ALTER_CONFIGS implies
//     DESCRIBE_CONFIGS.
//  4. When no binding at all names the resource (for any principal), the
//     request is allowed only with allow-everyone-if-no-acl-found.
//  5. Otherwise it is refused.
//
// Principals are "User:name" (a SASL user), "User:CN=...,O=..." (the
// subject of a TLS client certificate, as Kafka writes it) or
// "User:ANONYMOUS"; "User:*" in a binding matches every principal.
package acl

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Anonymous is the principal of a client that neither logged in with SASL
// nor showed a TLS client certificate.
const Anonymous = "User:ANONYMOUS"

// ClusterName is the name of the one CLUSTER resource, as in Kafka.
const ClusterName = "kafka-cluster"

// Binding is one ACL. Its JSON form is what the WAL and the state
// checkpoint store.
type Binding struct {
	ResourceType kmsg.ACLResourceType        `json:"resource_type"`
	ResourceName string                      `json:"resource_name"`
	PatternType  kmsg.ACLResourcePatternType `json:"pattern_type"`
	Principal    string                      `json:"principal"`
	Host         string                      `json:"host"`
	Operation    kmsg.ACLOperation           `json:"operation"`
	Permission   kmsg.ACLPermissionType      `json:"permission"`
}

// String is the binding as kafka-acls.sh prints it, roughly.
func (b Binding) String() string {
	return fmt.Sprintf("%s %s on %s:%s:%s for %s from %s",
		b.Permission, b.Operation, b.ResourceType, b.PatternType, b.ResourceName, b.Principal, b.Host)
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid ACL")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks a binding a client wants to create: concrete values
// only (no ANY or MATCH), a principal of the form Type:name, a host.
func (b Binding) Validate() error {
	switch b.ResourceType {
	case kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeTransactionalId,
		kmsg.ACLResourceTypeDelegationToken, kmsg.ACLResourceTypeUser:
	case kmsg.ACLResourceTypeCluster:
		if b.ResourceName != ClusterName {
			return invalid("the CLUSTER resource is named %q, not %q", ClusterName, b.ResourceName)
		}
	default:
		return invalid("resource type %s cannot be stored", b.ResourceType)
	}
	switch b.PatternType {
	case kmsg.ACLResourcePatternTypeLiteral:
	case kmsg.ACLResourcePatternTypePrefixed:
		if b.ResourceName == "*" {
			return invalid("a PREFIXED pattern cannot be %q (use LITERAL %q for every name)", "*", "*")
		}
	default:
		return invalid("pattern type %s cannot be stored (LITERAL or PREFIXED)", b.PatternType)
	}
	if b.ResourceName == "" {
		return invalid("empty resource name")
	}
	if typ, name, ok := strings.Cut(b.Principal, ":"); !ok || typ == "" || name == "" {
		return invalid("principal %q is not of the form User:name", b.Principal)
	}
	if b.Host == "" {
		return invalid("empty host (use %q for every host)", "*")
	}
	switch b.Operation {
	case kmsg.ACLOperationUnknown, kmsg.ACLOperationAny:
		return invalid("operation %s cannot be stored", b.Operation)
	}
	if b.Operation > kmsg.ACLOperationDescribeTokens {
		return invalid("unknown operation %d", int8(b.Operation))
	}
	switch b.Permission {
	case kmsg.ACLPermissionTypeAllow, kmsg.ACLPermissionTypeDeny:
	default:
		return invalid("permission type %s cannot be stored (ALLOW or DENY)", b.Permission)
	}
	return nil
}

// Filter selects bindings, as DescribeAcls and DeleteAcls do: ANY (or a
// nil string) matches every value; pattern type MATCH selects the bindings
// that would apply to the resource named (its LITERAL name, the LITERAL
// wildcard "*" and every PREFIXED pattern it starts with).
type Filter struct {
	ResourceType kmsg.ACLResourceType
	ResourceName *string
	PatternType  kmsg.ACLResourcePatternType
	Principal    *string
	Host         *string
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
}

// Validate refuses filters with values Kafka does not know.
func (f Filter) Validate() error {
	if f.ResourceType == kmsg.ACLResourceTypeUnknown || f.ResourceType > kmsg.ACLResourceTypeUser {
		return invalid("unknown resource type %d", int8(f.ResourceType))
	}
	if f.PatternType == kmsg.ACLResourcePatternTypeUnknown || f.PatternType > kmsg.ACLResourcePatternTypePrefixed {
		return invalid("unknown pattern type %d", int8(f.PatternType))
	}
	if f.Operation == kmsg.ACLOperationUnknown || f.Operation > kmsg.ACLOperationDescribeTokens {
		return invalid("unknown operation %d", int8(f.Operation))
	}
	if f.Permission == kmsg.ACLPermissionTypeUnknown || f.Permission > kmsg.ACLPermissionTypeAllow {
		return invalid("unknown permission type %d", int8(f.Permission))
	}
	return nil
}

// Matches reports whether the filter selects b.
func (f Filter) Matches(b Binding) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != b.ResourceType {
		return false
	}
	switch f.PatternType {
	case kmsg.ACLResourcePatternTypeAny:
		if f.ResourceName != nil && *f.ResourceName != b.ResourceName {
			return false
		}
	case kmsg.ACLResourcePatternTypeMatch:
		if f.ResourceName != nil && !patternMatches(b, *f.ResourceName) {
			return false
		}
	default:
		if f.PatternType != b.PatternType || (f.ResourceName != nil && *f.ResourceName != b.ResourceName) {
			return false
		}
	}
	if f.Principal != nil && *f.Principal != b.Principal {
		return false
	}
	if f.Host != nil && *f.Host != b.Host {
		return false
	}
	if f.Operation != kmsg.ACLOperationAny && f.Operation != b.Operation {
		return false
	}
	return f.Permission == kmsg.ACLPermissionTypeAny || f.Permission == b.Permission
}

// patternMatches reports whether b's resource pattern covers name.
func patternMatches(b Binding, name string) bool {
	switch b.PatternType {
	case kmsg.ACLResourcePatternTypeLiteral:
		return b.ResourceName == name || b.ResourceName == "*"
	case kmsg.ACLResourcePatternTypePrefixed:
		return strings.HasPrefix(name, b.ResourceName)
	}
	return false
}

// Set is the bindings of one node, safe for concurrent use. Every node
// holds the same set: changes come from WAL entries.
type Set struct {
	mu       sync.RWMutex
	bindings map[Binding]struct{}
	// byType indexes the bindings by resource type, for Authorize.
	byType map[kmsg.ACLResourceType][]Binding
}

// NewSet returns an empty set.
func NewSet() *Set {
	return &Set{bindings: map[Binding]struct{}{}, byType: map[kmsg.ACLResourceType][]Binding{}}
}

// Apply adds and removes bindings (adding one already there and removing
// one that is not are no-ops).
func (s *Set) Apply(add, remove []Binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range add {
		s.bindings[b] = struct{}{}
	}
	for _, b := range remove {
		delete(s.bindings, b)
	}
	s.reindexLocked()
}

// Replace makes the set exactly bs (a state checkpoint being restored).
func (s *Set) Replace(bs []Binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bindings = make(map[Binding]struct{}, len(bs))
	for _, b := range bs {
		s.bindings[b] = struct{}{}
	}
	s.reindexLocked()
}

func (s *Set) reindexLocked() {
	s.byType = map[kmsg.ACLResourceType][]Binding{}
	for b := range s.bindings {
		s.byType[b.ResourceType] = append(s.byType[b.ResourceType], b)
	}
}

// Has reports whether b is in the set.
func (s *Set) Has(b Binding) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.bindings[b]
	return ok
}

// Len is the number of bindings.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.bindings)
}

// Select returns the bindings the filter matches, sorted.
func (s *Set) Select(f Filter) []Binding {
	s.mu.RLock()
	var out []Binding
	for b := range s.bindings {
		if f.Matches(b) {
			out = append(out, b)
		}
	}
	s.mu.RUnlock()
	Sort(out)
	return out
}

// All returns every binding, sorted.
func (s *Set) All() []Binding {
	return s.Select(Filter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny})
}

// Sort orders bindings by resource, then principal, host, operation and
// permission, so that answers and checkpoints are stable.
func Sort(bs []Binding) {
	sort.Slice(bs, func(i, j int) bool {
		a, b := bs[i], bs[j]
		switch {
		case a.ResourceType != b.ResourceType:
			return a.ResourceType < b.ResourceType
		case a.PatternType != b.PatternType:
			return a.PatternType < b.PatternType
		case a.ResourceName != b.ResourceName:
			return a.ResourceName < b.ResourceName
		case a.Principal != b.Principal:
			return a.Principal < b.Principal
		case a.Host != b.Host:
			return a.Host < b.Host
		case a.Operation != b.Operation:
			return a.Operation < b.Operation
		}
		return a.Permission < b.Permission
	})
}

// Authorizer decides requests against a Set.
type Authorizer struct {
	Set *Set
	// SuperUsers may do everything.
	SuperUsers map[string]bool
	// AllowIfNoACL allows a request on a resource that no binding names
	// (Kafka's allow.everyone.if.no.acl.found).
	AllowIfNoACL bool
}

// Authorize reports whether principal, connecting from host, may perform
// op on the resource of type rt named name.
func (a *Authorizer) Authorize(principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if a.SuperUsers[principal] {
		return true
	}
	a.Set.mu.RLock()
	defer a.Set.mu.RUnlock()
	named, allowed := false, false
	for _, b := range a.Set.byType[rt] {
		if !patternMatches(b, name) {
			continue
		}
		named = true
		if !principalMatches(b.Principal, principal) || (b.Host != "*" && b.Host != host) {
			continue
		}
		switch b.Permission {
		case kmsg.ACLPermissionTypeDeny:
			if b.Operation == op || b.Operation == kmsg.ACLOperationAll {
				return false
			}
		case kmsg.ACLPermissionTypeAllow:
			if implies(b.Operation, op) {
				allowed = true
			}
		}
	}
	if !named {
		return a.AllowIfNoACL
	}
	return allowed
}

// AuthorizeAny reports whether principal may perform op on at least one
// resource of type rt: some ALLOW binding for it that no DENY binding of
// the same pattern cancels (Kafka's authorizeByResourceType, which an
// idempotent producer without IDEMPOTENT_WRITE on the cluster needs: WRITE
// on any topic). With AllowIfNoACL and no binding of that type at all,
// it is allowed.
func (a *Authorizer) AuthorizeAny(principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType) bool {
	if a.SuperUsers[principal] {
		return true
	}
	a.Set.mu.RLock()
	defer a.Set.mu.RUnlock()
	bs := a.Set.byType[rt]
	if len(bs) == 0 {
		return a.AllowIfNoACL
	}
	applies := func(b Binding) bool {
		return principalMatches(b.Principal, principal) && (b.Host == "*" || b.Host == host)
	}
	for _, b := range bs {
		if b.Permission != kmsg.ACLPermissionTypeAllow || !applies(b) || !implies(b.Operation, op) {
			continue
		}
		denied := false
		for _, d := range bs {
			if d.Permission == kmsg.ACLPermissionTypeDeny && applies(d) &&
				(d.Operation == op || d.Operation == kmsg.ACLOperationAll) && covers(d, b) {
				denied = true
				break
			}
		}
		if !denied {
			return true
		}
	}
	return false
}

// covers reports whether deny d applies to every resource allow a names.
func covers(d, a Binding) bool {
	switch d.PatternType {
	case kmsg.ACLResourcePatternTypeLiteral:
		return d.ResourceName == "*" || (a.PatternType == kmsg.ACLResourcePatternTypeLiteral && d.ResourceName == a.ResourceName)
	case kmsg.ACLResourcePatternTypePrefixed:
		return strings.HasPrefix(a.ResourceName, d.ResourceName) && a.ResourceName != "*"
	}
	return false
}

func principalMatches(pattern, principal string) bool {
	if pattern == principal {
		return true
	}
	typ, name, _ := strings.Cut(pattern, ":")
	ptyp, _, _ := strings.Cut(principal, ":")
	return name == "*" && typ == ptyp
}

// implies reports whether allowing granted allows op.
func implies(granted, op kmsg.ACLOperation) bool {
	if granted == op || granted == kmsg.ACLOperationAll {
		return true
	}
	switch op {
	case kmsg.ACLOperationDescribe:
		switch granted {
		case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
			return true
		}
	case kmsg.ACLOperationDescribeConfigs:
		return granted == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// ParseSuperUsers splits Kafka's super.users form: principals separated
// by semicolons (commas belong to certificate subjects).
func ParseSuperUsers(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range strings.Split(s, ";") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return nil, fmt.Errorf("super user %q is not of the form User:name", p)
		}
		out[p] = true
	}
	return out, nil
}
