package group

// The consumer group protocol of KIP-848 (Kafka 4.0's "consumer" groups,
// franz-go's ServerSideBalancer, the Java client's group.protocol=consumer).
//
// In the classic protocol the members rebalance together: every member
// rejoins, one of them computes the assignment, and nobody consumes in
// between. Here the coordinator computes the assignment and each member
// moves towards its own share on its own heartbeats:
//
//   - The group has an epoch. It goes up by one when a member joins, leaves
//     or is removed, when a member's subscription or requested assignor
//     changes, and when a subscribed topic is created, deleted or grows
//     partitions. Each time, the coordinator computes a new target
//     assignment (every subscribed partition to one member) with the
//     server-side assignor: "uniform" (the default: balanced, and keeping a
//     partition where it was when it can) or "range" (per topic, consecutive
//     partitions in member id order), the assignor most members ask for.
//   - Each member has its own epoch and its assigned partitions. On a
//     heartbeat, a member behind the target is reconciled: partitions it must
//     give up are first taken away (it keeps its epoch, and is told its
//     smaller assignment) until its heartbeat no longer lists them as owned;
//     then it moves to the target epoch and gets every partition of its
//     target that no other member still holds. Partitions still held by
//     another member follow on later heartbeats, once that member has
//     released them. So no partition is ever assigned to two members at
//     once, and members that keep their partitions never stop consuming.
//   - A member that does not heartbeat within the session timeout (45 s,
//     Kafka's group.consumer.session.timeout.ms), or that does not release
//     partitions within its rebalance timeout, is removed; its partitions go
//     to the others.
//   - Static members (group.instance.id) that leave with epoch -2 keep their
//     partitions for a session timeout, so that a restarting instance gets
//     them back under its new member id without moving anything.
//
// Offset commits from a member of a consumer group must use OffsetCommit
// v9+ and its current member epoch (STALE_MEMBER_EPOCH otherwise), as in
// Kafka. The group's state is stored (GroupPersister) whenever it changes,
// and the heartbeat that changed it is answered once it is stored, so a
// coordinator that takes over carries on with the same epochs and
// assignments. A group is either classic or consumer: a JoinGroup to a
// consumer group with members gets INCONSISTENT_GROUP_PROTOCOL, a
// ConsumerGroupHeartbeat to a classic group with members GROUP_ID_NOT_FOUND
// (Kafka's online migration between the two protocols is not supported);
// an empty group of either kind is taken over by the other.

import (
	"context"
	"encoding/hex"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka's defaults for consumer groups.
const (
	DefaultConsumerSessionTimeout    = 45 * time.Second // group.consumer.session.timeout.ms
	DefaultConsumerHeartbeatInterval = 5 * time.Second  // group.consumer.heartbeat.interval.ms
	DefaultConsumerAssignor          = "uniform"        // group.consumer.assignors (the first)
	ConsumerProtocolType             = "consumer"
)

// Epochs with a meaning of their own in ConsumerGroupHeartbeat.
const (
	joinEpoch        = 0
	leaveEpoch       = -1
	staticLeaveEpoch = -2
)

// TopicInfo describes one topic for the consumer protocol's assignors.
type TopicInfo struct {
	Name       string
	ID         [16]byte
	Partitions int32
}

// partitions is a set of partitions by topic id; each list is sorted and
// has no duplicates.
type partitions map[[16]byte][]int32

func (p partitions) has(id [16]byte, part int32) bool {
	_, ok := slices.BinarySearch(p[id], part)
	return ok
}

func (p partitions) add(id [16]byte, part int32) {
	ps := p[id]
	i, ok := slices.BinarySearch(ps, part)
	if !ok {
		p[id] = slices.Insert(ps, i, part)
	}
}

func (p partitions) count() int {
	n := 0
	for _, ps := range p {
		n += len(ps)
	}
	return n
}

func (p partitions) clone() partitions {
	out := make(partitions, len(p))
	for id, ps := range p {
		out[id] = slices.Clone(ps)
	}
	return out
}

func (p partitions) equal(o partitions) bool {
	if p.count() != o.count() {
		return false
	}
	for id, ps := range p {
		if !slices.Equal(ps, o[id]) {
			return false
		}
	}
	return true
}

// filter returns the partitions of p for which keep is true.
func (p partitions) filter(keep func(id [16]byte, part int32) bool) partitions {
	out := make(partitions)
	for id, ps := range p {
		for _, part := range ps {
			if keep(id, part) {
				out[id] = append(out[id], part)
			}
		}
	}
	return out
}

func (p partitions) sortedIDs() [][16]byte {
	ids := make([][16]byte, 0, len(p))
	for id := range p {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b [16]byte) int { return strings.Compare(string(a[:]), string(b[:])) })
	return ids
}

// ownedFromRequest turns a heartbeat's owned partitions into a set; nil
// (the member did not say) stays nil.
func ownedFromRequest(ts []kmsg.ConsumerGroupHeartbeatRequestTopic) partitions {
	if ts == nil {
		return nil
	}
	out := make(partitions)
	for _, t := range ts {
		for _, p := range t.Partitions {
			out.add(t.TopicID, p)
		}
	}
	return out
}

// memberState is where a member of a consumer group stands in
// reconciliation (Kafka's names).
type memberState int

const (
	memberStable               memberState = iota // has all of its target at the target epoch
	memberUnrevokedPartitions                     // must give up partitions first
	memberUnreleasedPartitions                    // waits for partitions other members still hold
)

func (s memberState) String() string {
	switch s {
	case memberUnrevokedPartitions:
		return "unrevoked_partitions"
	case memberUnreleasedPartitions:
		return "unreleased_partitions"
	}
	return "stable"
}

func parseMemberState(s string) memberState {
	switch s {
	case "unrevoked_partitions":
		return memberUnrevokedPartitions
	case "unreleased_partitions":
		return memberUnreleasedPartitions
	}
	return memberStable
}

// cgroup is the consumer-protocol state of a group (group.cg).
type cgroup struct {
	epoch       int32 // the group epoch
	assignEpoch int32 // the epoch of target
	assignor    string
	members     map[string]*cmember
	target      map[string]partitions // member id -> target assignment
	// subscribed: every topic some member subscribes to, as it was when
	// the epoch last moved; a heartbeat that sees something else moves it.
	subscribed map[string]TopicInfo
}

type cmember struct {
	id, instanceID, rackID string
	clientID, clientHost   string
	rebalanceTimeout       time.Duration
	topics                 []string                // subscribed topic names, sorted
	regex                  string                  // subscribed topic regex ("" none)
	re                     *regexp.Regexp          // regex, compiled
	visible                func(topic string) bool // which topics its regex may match (ACLs); nil: all
	assignor               string                  // the server assignor it asks for ("" any)

	epoch, prevEpoch int32
	state            memberState
	assigned         partitions // what it may consume now
	revoking         partitions // what it must give up before it moves on
	left             bool       // a static member that left (epoch -2): its place is kept until its session expires

	lastSeen time.Time
	revokeBy time.Time // while unrevoked: the rebalance timeout
}

func newCGroup() *cgroup {
	return &cgroup{members: make(map[string]*cmember), target: make(map[string]partitions), subscribed: make(map[string]TopicInfo)}
}

// isConsumerLocked reports whether g is a consumer-protocol group with members.
func (g *group) isConsumerLocked() bool { return g.cg != nil && len(g.cg.members) > 0 }

// stateName is the group state Kafka reports for a consumer group.
func (cg *cgroup) stateName() string {
	switch {
	case len(cg.members) == 0:
		return "Empty"
	case cg.epoch > cg.assignEpoch:
		return "Assigning"
	}
	for _, m := range cg.members {
		if m.epoch != cg.assignEpoch || m.state != memberStable {
			return "Reconciling"
		}
	}
	return "Stable"
}

func (cg *cgroup) sortedMembers() []*cmember {
	ms := make([]*cmember, 0, len(cg.members))
	for _, m := range cg.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].id < ms[j].id })
	return ms
}

func (cg *cgroup) staticMember(instanceID string) *cmember {
	if instanceID == "" {
		return nil
	}
	for _, m := range cg.members {
		if m.instanceID == instanceID {
			return m
		}
	}
	return nil
}

// compileRegex compiles a subscription regex, which must match whole
// topic names (Kafka matches with RE2/J's Pattern.matches).
func compileRegex(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// subscribedTopics returns the topics of all that m subscribes to.
func (m *cmember) subscribedTopics(all map[string]TopicInfo) []TopicInfo {
	var out []TopicInfo
	seen := make(map[string]bool)
	for _, name := range m.topics {
		if t, ok := all[name]; ok && !seen[name] {
			seen[name] = true
			out = append(out, t)
		}
	}
	if m.regex != "" {
		if m.re == nil {
			m.re, _ = compileRegex(m.regex) // checked when the member sent it
		}
		if re := m.re; re != nil {
			for name, t := range all {
				if !seen[name] && re.MatchString(name) && (m.visible == nil || m.visible(name)) {
					seen[name] = true
					out = append(out, t)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// subscriptionOf returns every topic of all that a member of cg subscribes to.
func (cg *cgroup) subscriptionOf(all map[string]TopicInfo) map[string]TopicInfo {
	out := make(map[string]TopicInfo)
	for _, m := range cg.members {
		for _, t := range m.subscribedTopics(all) {
			out[t.Name] = t
		}
	}
	return out
}

func sameTopics(a, b map[string]TopicInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for name, t := range a {
		if b[name] != t {
			return false
		}
	}
	return true
}

// chooseAssignor returns the server assignor most members ask for (ties:
// the name first in order), or the default.
func (cg *cgroup) chooseAssignor() string {
	votes := make(map[string]int)
	for _, m := range cg.members {
		if m.assignor != "" {
			votes[m.assignor]++
		}
	}
	best := ""
	for name, n := range votes {
		if best == "" || n > votes[best] || (n == votes[best] && name < best) {
			best = name
		}
	}
	if best == "" {
		return DefaultConsumerAssignor
	}
	return best
}

// bumpLocked moves the group to a new epoch and computes its target
// assignment there, over the topics in cg.subscribed.
func (c *Coordinator) bumpLocked(name string, cg *cgroup, reason string) {
	cg.epoch++
	cg.assignor = cg.chooseAssignor()
	cg.target = assign(cg.assignor, cg.sortedMembers(), cg.subscribed, cg.target)
	cg.assignEpoch = cg.epoch
	c.log.Info("consumer group moved to a new epoch", "group", name, "epoch", cg.epoch,
		"reason", reason, "members", len(cg.members), "assignor", cg.assignor, "topics", len(cg.subscribed))
}

// heldByOther reports whether a member other than m holds a partition
// (assigned, or still to be revoked).
func (cg *cgroup) heldByOther(m *cmember, id [16]byte, part int32) bool {
	for _, o := range cg.members {
		if o != m && (o.assigned.has(id, part) || o.revoking.has(id, part)) {
			return true
		}
	}
	return false
}

// ownsAny reports whether owned (nil: unknown, so assumed) holds any of ps.
func ownsAny(owned, ps partitions) bool {
	if owned == nil {
		return ps.count() > 0
	}
	for id, list := range ps {
		for _, p := range list {
			if owned.has(id, p) {
				return true
			}
		}
	}
	return false
}

// reconcileLocked moves m towards its target assignment (Kafka's
// CurrentAssignmentBuilder) given the partitions its heartbeat says it owns
// (nil when it did not say). It reports whether anything about m changed.
func (c *Coordinator) reconcileLocked(cg *cgroup, m *cmember, owned partitions) bool {
	if m.left {
		return false
	}
	switch m.state {
	case memberStable:
		if m.epoch == cg.assignEpoch {
			return false
		}
	case memberUnrevokedPartitions:
		if ownsAny(owned, m.revoking) {
			return false // still consuming what it must give up
		}
	}
	target := cg.target[m.id]
	keep := m.assigned.filter(func(id [16]byte, p int32) bool { return target.has(id, p) })
	revoke := m.assigned.filter(func(id [16]byte, p int32) bool { return !target.has(id, p) })
	unreleased := false
	gain := target.filter(func(id [16]byte, p int32) bool {
		if keep.has(id, p) {
			return false
		}
		if cg.heldByOther(m, id, p) {
			unreleased = true
			return false
		}
		return true
	})
	before := m.clone()
	if revoke.count() > 0 && ownsAny(owned, revoke) {
		// Take the partitions away first; it keeps its epoch until its
		// heartbeat no longer lists them.
		m.state = memberUnrevokedPartitions
		m.assigned, m.revoking = keep, revoke
		if before.state != memberUnrevokedPartitions {
			m.revokeBy = c.now().Add(m.rebalanceTimeout)
			c.scheduleLocked(m.revokeBy)
		}
	} else {
		for id, ps := range gain {
			for _, p := range ps {
				keep.add(id, p)
			}
		}
		m.assigned, m.revoking = keep, make(partitions)
		m.setEpoch(cg.assignEpoch)
		m.state = memberStable
		if unreleased {
			m.state = memberUnreleasedPartitions
		}
		m.revokeBy = time.Time{}
	}
	return !before.sameAssignment(m)
}

func (m *cmember) setEpoch(e int32) {
	if m.epoch != e {
		m.prevEpoch, m.epoch = m.epoch, e
	}
}

func (m *cmember) clone() *cmember {
	o := *m
	o.assigned, o.revoking = m.assigned.clone(), m.revoking.clone()
	o.topics = slices.Clone(m.topics)
	return &o
}

func (m *cmember) sameAssignment(o *cmember) bool {
	return m.epoch == o.epoch && m.prevEpoch == o.prevEpoch && m.state == o.state &&
		m.assigned.equal(o.assigned) && m.revoking.equal(o.revoking)
}

// ConsumerGroupHeartbeat handles a ConsumerGroupHeartbeat request (API key
// 68): a member joins (epoch 0), heartbeats with its epoch, or leaves
// (epoch -1, or -2 for a static member). A heartbeat that changes the
// group is answered once the change is stored.
func (c *Coordinator) ConsumerGroupHeartbeat(ctx context.Context, req *kmsg.ConsumerGroupHeartbeatRequest) *kmsg.ConsumerGroupHeartbeatResponse {
	resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	resp.Version = req.Version
	fail := func(code int16, msg string) *kmsg.ConsumerGroupHeartbeatResponse {
		resp.ErrorCode = code
		if msg != "" {
			resp.ErrorMessage = strPtr(msg)
		}
		resp.MemberEpoch = req.MemberEpoch
		return resp
	}
	if msg := validateHeartbeat(req); msg != "" {
		if req.Group == "" {
			return fail(kerr.InvalidGroupID.Code, msg)
		}
		return fail(kerr.InvalidRequest.Code, msg)
	}
	if req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != "" {
		if _, err := compileRegex(*req.SubscribedTopicRegex); err != nil {
			return fail(kerr.InvalidRegularExpression.Code, "SubscribedTopicRegex `"+*req.SubscribedTopicRegex+"` is not a valid regular expression: "+err.Error())
		}
	}
	if a := req.ServerAssignor; a != nil && *a != "" && assignors[*a] == nil {
		return fail(kerr.UnsupportedAssignor.Code, "server assignor "+*a+" is not supported; this broker has uniform and range")
	}
	var all map[string]TopicInfo
	if c.topics != nil {
		all = make(map[string]TopicInfo)
		for _, t := range c.topics() {
			all[t.Name] = t
		}
	}

	c.mu.Lock()
	out, code, msg, changed := c.heartbeatLocked(ctx, req, all)
	c.mu.Unlock()
	if code != 0 {
		return fail(code, msg)
	}
	if changed && c.groupStore != nil {
		if err := c.storeGroupNow(ctx, req.Group); err != nil {
			code := persistErrorCode(err)
			c.log.Warn("could not store the consumer group's state; the member retries", "group", req.Group,
				"member", req.MemberID, "error_code", kerr.ErrorForCode(code), "error", err)
			return fail(code, "")
		}
	}
	out.Version = req.Version
	return out
}

// validateHeartbeat returns what is wrong with a request's fields, or "".
func validateHeartbeat(req *kmsg.ConsumerGroupHeartbeatRequest) string {
	switch {
	case req.Group == "":
		return "GroupId can't be empty."
	case req.InstanceID != nil && *req.InstanceID == "":
		return "InstanceId can't be empty."
	case req.RackID != nil && *req.RackID == "":
		return "RackId can't be empty."
	case req.MemberEpoch < staticLeaveEpoch:
		return "MemberEpoch is invalid."
	case req.MemberEpoch == joinEpoch:
		switch {
		case req.Version >= 1 && req.MemberID == "":
			return "MemberId can't be empty."
		case req.RebalanceTimeoutMillis == -1:
			return "RebalanceTimeoutMs must be provided in first request."
		case req.Topics == nil:
			return "TopicPartitions must be empty when (re-)joining."
		case len(req.Topics) > 0:
			return "TopicPartitions must be empty when (re-)joining."
		case req.SubscribedTopicNames == nil && (req.SubscribedTopicRegex == nil || *req.SubscribedTopicRegex == ""):
			return "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
		}
	case req.MemberID == "":
		return "MemberId can't be empty."
	}
	return ""
}

// heartbeatLocked does the work of a heartbeat under c.mu. It returns the
// answer (without version) or an error code and message, and whether the
// group changed (and so must be stored before the answer goes).
func (c *Coordinator) heartbeatLocked(ctx context.Context, req *kmsg.ConsumerGroupHeartbeatRequest, all map[string]TopicInfo) (*kmsg.ConsumerGroupHeartbeatResponse, int16, string, bool) {
	if code := c.unavailableLocked(); code != 0 {
		return nil, code, "", false
	}
	g := c.getGroupLocked(req.Group)
	switch {
	case g == nil && req.MemberEpoch != joinEpoch:
		// Kafka answers GROUP_ID_NOT_FOUND here; clients treat
		// UNKNOWN_MEMBER_ID as "join again", which is what is needed.
		return nil, kerr.UnknownMemberID.Code, "group " + req.Group + " has no member " + req.MemberID, false
	case g == nil:
		g = c.getOrCreateGroupLocked(req.Group)
	case g.cg == nil && (len(g.members) > 0 || len(g.pending) > 0 || g.state != Empty):
		return nil, kerr.GroupIDNotFound.Code, "group " + req.Group + " is not a consumer group: its members use the classic protocol", false
	}
	defer c.maybeDeleteLocked(g)
	if g.cg == nil {
		if req.MemberEpoch != joinEpoch {
			return nil, kerr.UnknownMemberID.Code, "group " + req.Group + " has no member " + req.MemberID, false
		}
		g.cg = newCGroup()
		g.cg.epoch = g.generation // an empty classic group's generations go on counting
		g.protocolType = ConsumerProtocolType
	}
	cg := g.cg
	now := c.now()
	resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	resp.HeartbeatIntervalMillis = int32(c.cHeartbeat / time.Millisecond)
	instanceID := derefOr(req.InstanceID, "")

	// Leaving.
	if req.MemberEpoch == leaveEpoch || req.MemberEpoch == staticLeaveEpoch {
		m := cg.members[req.MemberID]
		if m == nil && instanceID != "" {
			if sm := cg.staticMember(instanceID); sm != nil && sm.id != req.MemberID {
				return nil, kerr.FencedInstanceID.Code, "instance " + instanceID + " belongs to member " + sm.id, false
			}
		}
		if m == nil {
			return nil, kerr.UnknownMemberID.Code, "group " + req.Group + " has no member " + req.MemberID, false
		}
		if req.MemberEpoch == staticLeaveEpoch && m.instanceID == "" {
			// -2 is for static members. Kafka also wants the instance id
			// with it; franz-go (v1.22) sends none, and the member id
			// names a static member well enough.
			return nil, kerr.InvalidRequest.Code, "InstanceId can't be null.", false
		}
		resp.MemberID, resp.MemberEpoch = strPtr(m.id), req.MemberEpoch
		if req.MemberEpoch == staticLeaveEpoch {
			// Its partitions wait for the instance to come back.
			m.left = true
			m.lastSeen = now
			c.scheduleLocked(now.Add(c.cSession))
			c.log.Info("static member left the consumer group; its place is kept for the session timeout",
				"group", g.name, "member", m.id, "instance", m.instanceID, "session_timeout", c.cSession)
			return resp, 0, "", true
		}
		c.removeConsumerLocked(g, m, "member "+m.id+" left")
		return resp, 0, "", true
	}

	owned := ownedFromRequest(req.Topics)
	m := cg.members[req.MemberID]
	changed, joined := false, false
	if req.MemberEpoch == joinEpoch {
		if m == nil && req.MemberID == "" {
			req.MemberID = newMemberID("")
		}
		if sm := cg.staticMember(instanceID); sm != nil && sm.id != req.MemberID {
			if !sm.left {
				return nil, kerr.UnreleasedInstanceID.Code, "instance " + instanceID + " is still used by member " + sm.id, false
			}
			// The instance is back under a new member id: it takes the
			// old member's place and partitions.
			n := sm.clone()
			n.id, n.left = req.MemberID, false
			n.epoch, n.prevEpoch = joinEpoch, joinEpoch
			delete(cg.members, sm.id)
			cg.members[n.id] = n
			if t, ok := cg.target[sm.id]; ok {
				cg.target[n.id] = t
				delete(cg.target, sm.id)
			}
			m, changed = n, true
			c.log.Info("static member rejoined the consumer group under a new member id", "group", g.name,
				"instance", instanceID, "member", n.id, "replaces", sm.id)
		}
		if m == nil {
			m = &cmember{id: req.MemberID, instanceID: instanceID, assigned: make(partitions), revoking: make(partitions)}
			cg.members[m.id] = m
			changed, joined = true, true
			c.log.Info("member joined the consumer group", "group", g.name, "member", m.id, "instance", instanceID)
		}
		// A known member rejoining with epoch 0 (its answer was lost, or it
		// was fenced) owns nothing now: its partitions are re-sent to it.
	} else {
		if m == nil {
			return nil, kerr.UnknownMemberID.Code, "group " + req.Group + " has no member " + req.MemberID, false
		}
		if instanceID != "" && m.instanceID != instanceID {
			return nil, kerr.FencedInstanceID.Code, "member " + m.id + " is not instance " + instanceID, false
		}
		switch {
		case req.MemberEpoch > m.epoch:
			return nil, kerr.FencedMemberEpoch.Code, fencedMessage(req.MemberEpoch, m.epoch), false
		case req.MemberEpoch < m.epoch:
			// Its answer with the new epoch may have been lost: take it if
			// it comes with the epoch before and owns nothing else.
			if req.MemberEpoch != m.prevEpoch || owned == nil || !subset(owned, m.assigned) {
				return nil, kerr.FencedMemberEpoch.Code, fencedMessage(req.MemberEpoch, m.epoch), false
			}
		}
	}
	m.left = false
	m.lastSeen = now
	ci := clientInfoFrom(ctx)
	m.clientID, m.clientHost = ci.id, ci.host
	m.visible = topicFilterFrom(ctx)

	// Subscription and member fields (a field left null keeps its value).
	subChanged := false
	if req.RebalanceTimeoutMillis >= 0 {
		m.rebalanceTimeout = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	}
	if req.RackID != nil && *req.RackID != m.rackID {
		m.rackID, changed = *req.RackID, true
	}
	if req.SubscribedTopicNames != nil {
		names := slices.Clone(req.SubscribedTopicNames)
		slices.Sort(names)
		names = slices.Compact(names)
		if !slices.Equal(names, m.topics) {
			m.topics, subChanged = names, true
		}
	}
	if req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != m.regex {
		m.regex, m.re, subChanged = *req.SubscribedTopicRegex, nil, true
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != m.assignor {
		m.assignor, subChanged = *req.ServerAssignor, true
	}
	reason := ""
	switch {
	case joined:
		reason = "member " + m.id + " joined"
	case subChanged:
		reason = "member " + m.id + " changed its subscription"
	}
	if all != nil {
		if sub := cg.subscriptionOf(all); !sameTopics(sub, cg.subscribed) {
			cg.subscribed = sub
			if reason == "" {
				reason = "subscribed topics changed"
			}
		}
	}
	if reason != "" || cg.epoch == 0 {
		if reason == "" {
			reason = "new group"
		}
		c.bumpLocked(g.name, cg, reason)
		changed = true
	}
	before := m.clone()
	if req.MemberEpoch == joinEpoch {
		owned = make(partitions)
	}
	if c.reconcileLocked(cg, m, owned) {
		changed = true
	}
	g.state = Stable
	g.emptySince = time.Time{}
	c.scheduleLocked(now.Add(c.cSession))

	resp.MemberID = strPtr(m.id)
	resp.MemberEpoch = m.epoch
	full := req.MemberEpoch == joinEpoch || (req.RebalanceTimeoutMillis != -1 && req.SubscribedTopicNames != nil && req.Topics != nil)
	if full || !before.assigned.equal(m.assigned) {
		a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
		for _, id := range m.assigned.sortedIDs() {
			at := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
			at.TopicID, at.Partitions = id, slices.Clone(m.assigned[id])
			a.Topics = append(a.Topics, at)
		}
		if a.Topics == nil {
			a.Topics = []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
		}
		resp.Assignment = &a
	}
	return resp, 0, "", changed
}

func fencedMessage(got, want int32) string {
	return "the member epoch " + strconv.Itoa(int(got)) + " is not the coordinator's " + strconv.Itoa(int(want)) + ": the member must give up its partitions and rejoin"
}

func subset(a, b partitions) bool {
	for id, ps := range a {
		for _, p := range ps {
			if !b.has(id, p) {
				return false
			}
		}
	}
	return true
}

// removeConsumerLocked removes m from its consumer group (it left, its
// session expired, or it did not release partitions in time) and moves the
// group to a new epoch, whose assignment gives its partitions to the others.
func (c *Coordinator) removeConsumerLocked(g *group, m *cmember, reason string) {
	cg := g.cg
	delete(cg.members, m.id)
	delete(cg.target, m.id)
	c.log.Info("member removed from the consumer group", "group", g.name, "member", m.id, "reason", reason)
	if len(cg.members) == 0 {
		cg.epoch++
		cg.assignEpoch = cg.epoch
		cg.target = make(map[string]partitions)
		g.state = Empty
		g.emptySince = c.now()
		c.log.Info("consumer group is empty", "group", g.name, "epoch", cg.epoch)
		return
	}
	c.bumpLocked(g.name, cg, reason)
}

// expireConsumersLocked removes the members of g's consumer group whose
// session or revocation time is up, and returns the next such deadline.
func (c *Coordinator) expireConsumersLocked(g *group, now time.Time) (next time.Time) {
	cg := g.cg
	if cg == nil {
		return time.Time{}
	}
	removed := false
	for _, m := range cg.sortedMembers() {
		switch {
		case !now.Before(m.lastSeen.Add(c.cSession)):
			c.removeConsumerLocked(g, m, "member "+m.id+" session expired")
			removed = true
		case m.state == memberUnrevokedPartitions && !m.revokeBy.IsZero() && !now.Before(m.revokeBy):
			c.removeConsumerLocked(g, m, "member "+m.id+" did not release its partitions within its rebalance timeout")
			removed = true
		}
	}
	if removed {
		c.storeGroupLater(g.name, cg.epoch)
	}
	for _, m := range cg.members {
		t := m.lastSeen.Add(c.cSession)
		if m.state == memberUnrevokedPartitions && !m.revokeBy.IsZero() && m.revokeBy.Before(t) {
			t = m.revokeBy
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

// storeGroupNow stores the current state of group name and waits for it.
func (c *Coordinator) storeGroupNow(ctx context.Context, name string) error {
	ctx, cancel := c.commitContext(ctx)
	defer cancel()
	unlock := c.lockCommits(ctx, name)
	if unlock == nil {
		return context.DeadlineExceeded
	}
	defer unlock()
	c.mu.Lock()
	s, ok := GroupState{Group: name}, true
	if g := c.getGroupLocked(name); g != nil {
		s, ok = stateLocked(g)
	}
	c.mu.Unlock()
	if !ok {
		return nil
	}
	return c.groupStore.StoreGroup(ctx, s)
}

// ConsumerState is the stored state of a consumer-protocol group (in
// GroupState.Consumer).
type ConsumerState struct {
	Epoch           int32                 `json:"epoch"`
	AssignmentEpoch int32                 `json:"assignment_epoch"`
	Assignor        string                `json:"assignor,omitempty"`
	Members         []ConsumerMemberState `json:"members,omitempty"`
	Topics          []StoredTopic         `json:"topics,omitempty"`
}

// StoredTopic is a subscribed topic as the group last saw it.
type StoredTopic struct {
	Name       string `json:"name"`
	ID         string `json:"id"` // hex
	Partitions int32  `json:"partitions"`
}

// ConsumerMemberState is one member of a stored consumer group.
type ConsumerMemberState struct {
	ID                 string             `json:"id"`
	InstanceID         string             `json:"instance_id,omitempty"`
	RackID             string             `json:"rack_id,omitempty"`
	ClientID           string             `json:"client_id,omitempty"`
	ClientHost         string             `json:"client_host,omitempty"`
	RebalanceTimeoutMs int64              `json:"rebalance_timeout_ms"`
	Topics             []string           `json:"topics,omitempty"`
	Regex              string             `json:"regex,omitempty"`
	Assignor           string             `json:"assignor,omitempty"`
	Epoch              int32              `json:"epoch"`
	PrevEpoch          int32              `json:"prev_epoch"`
	State              string             `json:"state"`
	Left               bool               `json:"left,omitempty"`
	Assigned           []StoredPartitions `json:"assigned,omitempty"`
	Revoking           []StoredPartitions `json:"revoking,omitempty"`
	Target             []StoredPartitions `json:"target,omitempty"`
}

// StoredPartitions is a topic's partitions in a stored assignment.
type StoredPartitions struct {
	TopicID    string  `json:"topic_id"` // hex
	Partitions []int32 `json:"partitions"`
}

func storePartitions(p partitions) []StoredPartitions {
	var out []StoredPartitions
	for _, id := range p.sortedIDs() {
		if len(p[id]) > 0 {
			out = append(out, StoredPartitions{TopicID: hex.EncodeToString(id[:]), Partitions: slices.Clone(p[id])})
		}
	}
	return out
}

func loadPartitions(s []StoredPartitions) partitions {
	out := make(partitions)
	for _, sp := range s {
		var id [16]byte
		if b, err := hex.DecodeString(sp.TopicID); err == nil && len(b) == 16 {
			copy(id[:], b)
			for _, p := range sp.Partitions {
				out.add(id, p)
			}
		}
	}
	return out
}

func (cg *cgroup) stored() *ConsumerState {
	s := &ConsumerState{Epoch: cg.epoch, AssignmentEpoch: cg.assignEpoch, Assignor: cg.assignor}
	for _, m := range cg.sortedMembers() {
		s.Members = append(s.Members, ConsumerMemberState{
			ID: m.id, InstanceID: m.instanceID, RackID: m.rackID, ClientID: m.clientID, ClientHost: m.clientHost,
			RebalanceTimeoutMs: m.rebalanceTimeout.Milliseconds(), Topics: slices.Clone(m.topics), Regex: m.regex,
			Assignor: m.assignor, Epoch: m.epoch, PrevEpoch: m.prevEpoch, State: m.state.String(), Left: m.left,
			Assigned: storePartitions(m.assigned), Revoking: storePartitions(m.revoking), Target: storePartitions(cg.target[m.id]),
		})
	}
	for _, name := range sortedKeys(cg.subscribed) {
		t := cg.subscribed[name]
		s.Topics = append(s.Topics, StoredTopic{Name: name, ID: hex.EncodeToString(t.ID[:]), Partitions: t.Partitions})
	}
	return s
}

// loadCGroup rebuilds a consumer group from its stored state; each member
// has a full session from now.
func loadCGroup(s *ConsumerState, now time.Time) *cgroup {
	cg := newCGroup()
	cg.epoch, cg.assignEpoch, cg.assignor = s.Epoch, s.AssignmentEpoch, s.Assignor
	for _, t := range s.Topics {
		var id [16]byte
		if b, err := hex.DecodeString(t.ID); err == nil && len(b) == 16 {
			copy(id[:], b)
		}
		cg.subscribed[t.Name] = TopicInfo{Name: t.Name, ID: id, Partitions: t.Partitions}
	}
	for _, ms := range s.Members {
		m := &cmember{
			id: ms.ID, instanceID: ms.InstanceID, rackID: ms.RackID, clientID: ms.ClientID, clientHost: ms.ClientHost,
			rebalanceTimeout: time.Duration(ms.RebalanceTimeoutMs) * time.Millisecond,
			topics:           slices.Clone(ms.Topics), regex: ms.Regex, assignor: ms.Assignor,
			epoch: ms.Epoch, prevEpoch: ms.PrevEpoch, state: parseMemberState(ms.State), left: ms.Left,
			assigned: loadPartitions(ms.Assigned), revoking: loadPartitions(ms.Revoking),
			lastSeen: now,
		}
		if m.state == memberUnrevokedPartitions {
			m.revokeBy = now.Add(m.rebalanceTimeout)
		}
		cg.members[m.id] = m
		cg.target[m.id] = loadPartitions(ms.Target)
	}
	return cg
}

// topicNames maps the ids of the group's subscribed topics to their names.
func (cg *cgroup) topicNames() map[[16]byte]string {
	out := make(map[[16]byte]string, len(cg.subscribed))
	for name, t := range cg.subscribed {
		out[t.ID] = name
	}
	return out
}
