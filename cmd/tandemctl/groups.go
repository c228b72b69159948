package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// groupsCmd implements `tandemctl groups`, the operator's
// kafka-consumer-groups.sh:
//
//   - with no group named, it lists every consumer group with its type
//     (classic or consumer, KIP-848), state, member count and total lag;
//   - with groups named, it describes each: per partition the committed
//     offset, the partition's end (high watermark), the lag and the member
//     that consumes it;
//   - --reset-offsets TO moves a stopped group's committed offsets (to the
//     earliest or latest offset, an offset, a number of records forward or
//     back, a time, or a time ago) for the
//     partitions --topic or --all-topics name; it prints the plan and
//     commits it only with --execute, as Kafka's tool;
//   - --delete deletes stopped groups with their committed offsets;
//   - --members describes the named groups' members instead: client id,
//     host and assigned partitions (kafka-consumer-groups.sh --members
//     --verbose), which shows consumers left without a partition;
//   - --json prints the list or the description as JSON, for scripts.
//
// A group with members refuses both changes, as Kafka does: its consumers
// would overwrite the reset with their next commit. It connects as
// `tandemctl acls` does; with --acls the brokers show only the groups the
// principal may Describe.
func groupsCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var (
		bootstrap string
		conn      kafkaConn
		reset     string
		topics    stringsFlag
		allTopics bool
		execute   bool
		del       bool
		asJSON    bool
		members   bool
	)
	fs := flag.NewFlagSet("groups", flag.ContinueOnError)
	conn.flags(fs, "groups", &bootstrap)
	fs.StringVar(&reset, "reset-offsets", "", "move GROUP's committed offsets to: earliest, latest, an offset, +N or -N records from the committed offset, a time (RFC 3339) or a duration ago (e.g. 90m)")
	fs.Var(&topics, "topic", "with --reset-offsets: TOPIC (every partition) or TOPIC:P[,P...] (repeatable)")
	fs.BoolVar(&allTopics, "all-topics", false, "with --reset-offsets: every partition GROUP has committed offsets for")
	fs.BoolVar(&execute, "execute", false, "with --reset-offsets: commit the new offsets (without it, only print them)")
	fs.BoolVar(&del, "delete", false, "delete the named groups (they must have no members) with their committed offsets")
	fs.BoolVar(&asJSON, "json", false, "list or describe the groups as JSON")
	fs.BoolVar(&members, "members", false, "describe the named groups' members (client id, host, assigned partitions) rather than their partitions")
	groups, err := parseWithNames(fs, args)
	if err != nil {
		return err
	}
	switch {
	case reset != "" && del:
		return usageError{"groups: --reset-offsets and --delete do not go together"}
	case reset != "" && len(groups) != 1:
		return usageError{"groups --reset-offsets needs exactly one GROUP"}
	case reset != "" && len(topics) == 0 == !allTopics:
		return usageError{"groups --reset-offsets needs --topic or --all-topics (one of them)"}
	case reset == "" && (len(topics) > 0 || allTopics || execute):
		return usageError{"groups: --topic, --all-topics and --execute go with --reset-offsets"}
	case asJSON && (reset != "" || del):
		return usageError{"groups: --json goes with listing or describing, not with --reset-offsets or --delete"}
	case members && (reset != "" || del || len(groups) == 0):
		return usageError{"groups --members describes the named groups' members: name the groups, without --reset-offsets or --delete"}
	case del && len(groups) == 0:
		return usageError{"groups --delete needs the groups to delete"}
	}
	var target resetTarget
	var selected map[string][]int32
	if reset != "" {
		if target, err = parseResetTarget(reset, time.Now()); err != nil {
			return usageError{"groups --reset-offsets: " + err.Error()}
		}
		if selected, err = parseTopicPartitions(topics); err != nil {
			return usageError{"groups --topic: " + err.Error()}
		}
	}
	ctx, adm, closeAdm, err := conn.admin(ctx, bootstrap, stdin, timeout)
	if err != nil {
		return err
	}
	defer closeAdm()
	switch {
	case reset != "":
		return resetGroupOffsets(ctx, adm, groups[0], target, selected, execute, out)
	case del:
		return deleteGroups(ctx, adm, groups, out)
	case len(groups) == 0:
		return listGroups(ctx, adm, asJSON, out)
	}
	return describeGroups(ctx, adm, groups, asJSON, members, out)
}

// groupInfo is what `tandemctl groups` reports of a group; --json prints
// it as is (a list leaves Partitions out).
type groupInfo struct {
	Group        string `json:"group"`
	Exists       bool   `json:"exists"`
	Type         string `json:"type,omitempty"` // classic or consumer (KIP-848), in a list
	State        string `json:"state,omitempty"`
	ProtocolType string `json:"protocol_type,omitempty"`
	Assignor     string `json:"assignor,omitempty"`
	Coordinator  *int32 `json:"coordinator,omitempty"`
	Members      *int   `json:"members"` // null: unknown
	// Lag is the records between the committed offsets and the ends,
	// summed over the partitions the group has committed on (as Kafka's
	// kafka-consumer-groups.sh and tandem_broker_consumer_group_lag
	// count it: an assigned partition with nothing committed has no lag,
	// "-"); null when a partition's end is unknown.
	Lag           *int64          `json:"lag"`
	Partitions    []groupPosition `json:"partitions,omitempty"`
	MemberDetails []groupMember   `json:"member_details,omitempty"`
	// positionless: no committed offsets (the list prints its lag as "-").
	positionless bool
}

// groupPosition is where a group stands on one partition; null fields are
// unknown (Committed: nothing committed).
type groupPosition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed *int64 `json:"committed"`
	End       *int64 `json:"end"`
	Lag       *int64 `json:"lag"`
	MemberID  string `json:"member_id,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Host      string `json:"host,omitempty"`
}

// groupMember is one member of a described group.
type groupMember struct {
	MemberID   string `json:"member_id"`
	InstanceID string `json:"instance_id,omitempty"` // group.instance.id (static membership)
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
	// Assigned maps each topic to the partitions the member consumes.
	Assigned map[string][]int32 `json:"assigned"`
}

// assignedCount is how many partitions m consumes.
func (m groupMember) assignedCount() int {
	n := 0
	for _, ps := range m.Assigned {
		n += len(ps)
	}
	return n
}

// assignment prints m's partitions as TOPIC:P,P TOPIC:P (- for none).
func (m groupMember) assignment() string {
	topics := make([]string, 0, len(m.Assigned))
	for t := range m.Assigned {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	parts := make([]string, len(topics))
	for i, t := range topics {
		parts[i] = t + ":" + joinIDs(m.Assigned[t])
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// orDash prints an unknown value as "-" or "?".
func orDash[T int | int32 | int64](v *T, none string) string {
	if v == nil {
		return none
	}
	return strconv.FormatInt(int64(*v), 10)
}

// listGroups prints one line per group.
func listGroups(ctx context.Context, adm *kadm.Client, asJSON bool, out io.Writer) error {
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("listing groups: %w", err)
	}
	var lags kadm.DescribedGroupLags
	if len(listed) > 0 {
		if lags, err = adm.Lag(ctx, listed.Groups()...); err != nil {
			return fmt.Errorf("computing the groups' lag: %w", err)
		}
	}
	infos := []groupInfo{}
	for _, g := range listed.Sorted() {
		info := groupInfo{Group: g.Group, Exists: true, Type: g.GroupType, State: g.State}
		if l, ok := lags[g.Group]; ok && l.DescribeErr == nil {
			info.Members = ptr(len(l.Members))
			if l.FetchErr == nil {
				info.Lag, info.positionless = totalLag(l.Lag), !slices.ContainsFunc(l.Lag.Sorted(), func(r kadm.GroupMemberLag) bool { return r.Commit.At >= 0 })
			}
		}
		infos = append(infos, info)
	}
	if asJSON {
		return printJSON(out, infos)
	}
	if len(infos) == 0 {
		fmt.Fprintln(out, "no groups")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tTYPE\tSTATE\tMEMBERS\tLAG")
	for _, g := range infos {
		typ := g.Type
		if typ == "" {
			typ = "-"
		}
		lag := orDash(g.Lag, "?")
		if g.positionless {
			lag = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.Group, typ, g.State, orDash(g.Members, "?"), lag)
	}
	return tw.Flush()
}

func ptr[T any](v T) *T { return &v }

// totalLag is a group's lag summed over the partitions it has committed
// on (0 when there are none), nil when such a partition's lag is unknown
// (its end offset could not be read).
func totalLag(l kadm.GroupLag) *int64 {
	var sum int64
	for _, r := range l.Sorted() {
		if r.Commit.At < 0 {
			continue // nothing committed: no lag, as Kafka's tool shows it
		}
		if r.Err != nil || r.Lag < 0 {
			return nil
		}
		sum += r.Lag
	}
	return &sum
}

// describeGroups prints each named group's partitions with their
// committed offsets, end offsets, lag and consuming member.
func describeGroups(ctx context.Context, adm *kadm.Client, groups []string, asJSON, members bool, out io.Writer) error {
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return fmt.Errorf("describing groups: %w", err)
	}
	var failed []string
	infos := []groupInfo{}
	for _, name := range groups {
		l, ok := lags[name]
		switch {
		case !ok:
			failed = append(failed, name+": not described")
			continue
		case l.DescribeErr != nil && !errors.Is(l.DescribeErr, kerr.GroupIDNotFound):
			failed = append(failed, fmt.Sprintf("%s: %v", name, l.DescribeErr))
			continue
		case l.DescribeErr != nil || l.State == "Dead":
			infos = append(infos, groupInfo{Group: name})
			continue
		}
		info := groupInfo{Group: name, Exists: true, State: l.State, ProtocolType: l.ProtocolType, Assignor: l.Protocol,
			Coordinator: ptr(l.Coordinator.NodeID), Members: ptr(len(l.Members)), MemberDetails: []groupMember{}}
		for _, m := range l.Members {
			gm := groupMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assigned: map[string][]int32{}}
			if m.InstanceID != nil {
				gm.InstanceID = *m.InstanceID
			}
			if c, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range c.Topics {
					ps := slices.Clone(t.Partitions)
					slices.Sort(ps)
					gm.Assigned[t.Topic] = ps
				}
			}
			info.MemberDetails = append(info.MemberDetails, gm)
		}
		if l.FetchErr != nil {
			failed = append(failed, fmt.Sprintf("%s: fetching its committed offsets: %v", name, l.FetchErr))
			continue
		}
		info.Lag = totalLag(l.Lag)
		info.Partitions = []groupPosition{}
		for _, r := range l.Lag.Sorted() {
			pos := groupPosition{Topic: r.Topic, Partition: r.Partition}
			if r.Commit.At >= 0 {
				pos.Committed = ptr(r.Commit.At)
			}
			if r.End.Err == nil {
				pos.End = ptr(r.End.Offset)
			}
			if r.Err == nil && r.Lag >= 0 && r.Commit.At >= 0 {
				pos.Lag = ptr(r.Lag)
			}
			if r.Member != nil {
				pos.MemberID, pos.ClientID, pos.Host = r.Member.MemberID, r.Member.ClientID, r.Member.ClientHost
			}
			info.Partitions = append(info.Partitions, pos)
		}
		infos = append(infos, info)
	}
	if asJSON {
		if err := printJSON(out, infos); err != nil {
			return err
		}
	} else {
		for i, g := range infos {
			if i > 0 {
				fmt.Fprintln(out)
			}
			show := printGroup
			if members {
				show = printGroupMembers
			}
			if err := show(out, g); err != nil {
				return err
			}
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// printGroupMembers describes one group per member.
func printGroupMembers(out io.Writer, g groupInfo) error {
	if !g.Exists {
		fmt.Fprintf(out, "group %s: does not exist\n", g.Group)
		return nil
	}
	fmt.Fprintf(out, "group %s: %s, %d member(s)\n", g.Group, g.State, *g.Members)
	if len(g.MemberDetails) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tINSTANCE\tCLIENT ID\tHOST\tPARTITIONS\tASSIGNED")
	for _, m := range g.MemberDetails {
		instance := m.InstanceID
		if instance == "" {
			instance = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", m.MemberID, instance, m.ClientID, m.Host, m.assignedCount(), m.assignment())
	}
	return tw.Flush()
}

// printGroup describes one group per partition.
func printGroup(out io.Writer, g groupInfo) error {
	if !g.Exists {
		fmt.Fprintf(out, "group %s: does not exist\n", g.Group)
		return nil
	}
	assignor := g.Assignor
	if assignor == "" {
		assignor = "-"
	}
	fmt.Fprintf(out, "group %s: %s, protocol type %q, assignor %s, coordinator node %d, %d member(s)\n",
		g.Group, g.State, g.ProtocolType, assignor, *g.Coordinator, *g.Members)
	if len(g.Partitions) == 0 {
		fmt.Fprintln(out, "no committed offsets and no assigned partitions")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER\tCLIENT ID\tHOST")
	for _, p := range g.Partitions {
		member, client, host := "-", "-", "-"
		if p.MemberID != "" {
			member, client, host = p.MemberID, p.ClientID, p.Host
		}
		lag := orDash(p.Lag, "?")
		if p.Committed == nil {
			lag = "-" // nothing committed, no lag (Kafka's tool prints the same)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Topic, p.Partition, orDash(p.Committed, "-"),
			orDash(p.End, "?"), lag, member, client, host)
	}
	return tw.Flush()
}

// resetTarget is where --reset-offsets moves offsets: the earliest or
// latest offset, a given offset, or the first offset at or after a time.
type resetTarget struct {
	kind   string // "earliest", "latest", "offset", "shift", "time"
	offset int64  // kind "offset"; kind "shift": how far to move (+ forward, - back)
	milli  int64  // kind "time": Unix milliseconds
}

// parseResetTarget reads --reset-offsets' value; a duration is taken back
// from now.
func parseResetTarget(s string, now time.Time) (resetTarget, error) {
	switch s {
	case "earliest", "latest":
		return resetTarget{kind: s}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && (s[0] == '+' || s[0] == '-') {
		return resetTarget{kind: "shift", offset: n}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return resetTarget{}, fmt.Errorf("offset %d is negative", n)
		}
		return resetTarget{kind: "offset", offset: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return resetTarget{kind: "time", milli: t.UnixMilli()}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return resetTarget{kind: "time", milli: now.Add(-d).UnixMilli()}, nil
	}
	return resetTarget{}, fmt.Errorf("%q is not earliest, latest, an offset, +N or -N, an RFC 3339 time or a positive duration", s)
}

// parseTopicPartitions reads the --topic values: TOPIC (nil: every
// partition) or TOPIC:P[,P...].
func parseTopicPartitions(vals []string) (map[string][]int32, error) {
	out := map[string][]int32{}
	for _, v := range vals {
		topic, parts, found := strings.Cut(v, ":")
		if topic == "" {
			return nil, fmt.Errorf("%q names no topic", v)
		}
		if !found {
			out[topic] = nil
			continue
		}
		for _, p := range splitList(parts, ",") {
			n, err := strconv.ParseInt(p, 10, 32)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%q: %q is not a partition number", v, p)
			}
			out[topic] = append(out[topic], int32(n))
		}
		if len(out[topic]) == 0 {
			return nil, fmt.Errorf("%q lists no partition", v)
		}
	}
	return out, nil
}

// selectPartitions resolves topic selections (parseTopicPartitions: nil
// for every partition of a topic) against md: every partition of every
// topic in md when nothing is selected. A selected topic that md lacks or
// holds with an error, or a partition it does not have, is an error.
func selectPartitions(md kadm.TopicDetails, selected map[string][]int32) (kadm.TopicsSet, error) {
	set := kadm.TopicsSet{}
	if len(selected) == 0 {
		for t, d := range md {
			for p := range d.Partitions {
				set.Add(t, p)
			}
		}
		return set, nil
	}
	for _, t := range slices.Sorted(maps.Keys(selected)) {
		d, ok := md[t]
		switch {
		case !ok:
			return nil, fmt.Errorf("topic %s: not in the metadata", t)
		case d.Err != nil:
			return nil, fmt.Errorf("topic %s: %w", t, d.Err)
		}
		parts := selected[t]
		if parts == nil {
			for p := range d.Partitions {
				set.Add(t, p)
			}
			continue
		}
		for _, p := range parts {
			if _, ok := d.Partitions[p]; !ok {
				return nil, fmt.Errorf("topic %s has no partition %d (it has %d)", t, p, len(d.Partitions))
			}
			set.Add(t, p)
		}
	}
	return set, nil
}

// resetGroupOffsets moves a group's committed offsets, or (without execute)
// prints where they would go.
func resetGroupOffsets(ctx context.Context, adm *kadm.Client, group string, target resetTarget, selected map[string][]int32, execute bool, out io.Writer) error {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return fmt.Errorf("describing group %s: %w", group, err)
	}
	// A group that does not exist (DescribeGroups v6 says so with an
	// error) has no members: its offsets may be set, as with Kafka's tool.
	if d, ok := described[group]; ok && !errors.Is(d.Err, kerr.GroupIDNotFound) {
		if d.Err != nil {
			return fmt.Errorf("describing group %s: %w", group, d.Err)
		}
		if len(d.Members) > 0 {
			return fmt.Errorf("group %s is %s with %d member(s): stop its consumers first (they would commit over the reset)", group, d.State, len(d.Members))
		}
	}
	current, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("fetching group %s's committed offsets: %w", group, err)
	}
	if err := current.Error(); err != nil {
		return fmt.Errorf("fetching group %s's committed offsets: %w", group, err)
	}
	// The partitions to move: every committed one (--all-topics), or those
	// --topic names, each topic's partitions from its metadata.
	want := kadm.TopicsSet{}
	if len(selected) == 0 {
		current.Each(func(o kadm.OffsetResponse) { want.Add(o.Topic, o.Partition) })
	} else {
		md, err := adm.ListTopics(ctx, slices.Sorted(maps.Keys(selected))...)
		if err != nil {
			return fmt.Errorf("reading the topics' metadata: %w", err)
		}
		if want, err = selectPartitions(md, selected); err != nil {
			return err
		}
	}
	if len(want) == 0 {
		return fmt.Errorf("group %s has no committed offsets: nothing to reset (name the partitions with --topic)", group)
	}
	topics := want.Topics()
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("listing the partitions' earliest offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("listing the partitions' latest offsets: %w", err)
	}
	var byTime kadm.ListedOffsets
	if target.kind == "time" {
		if byTime, err = adm.ListOffsetsAfterMilli(ctx, target.milli, topics...); err == nil {
			err = byTime.Error()
		}
		if err != nil {
			return fmt.Errorf("looking the offsets up by time: %w", err)
		}
	}
	plan := kadm.Offsets{}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tNEW")
	for _, tp := range want.Sorted() {
		ps := append([]int32(nil), tp.Partitions...)
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		for _, p := range ps {
			start, _ := starts.Lookup(tp.Topic, p)
			end, _ := ends.Lookup(tp.Topic, p)
			var next int64
			switch target.kind {
			case "earliest":
				next = start.Offset
			case "latest":
				next = end.Offset
			case "offset":
				// Out of range: the nearest end, as Kafka's tool does.
				next = min(max(target.offset, start.Offset), end.Offset)
			case "shift":
				o, ok := current.Lookup(tp.Topic, p)
				if !ok || o.At < 0 {
					return fmt.Errorf("%s/%d: group %s has no committed offset there to move by %+d (name another target for it)", tp.Topic, p, group, target.offset)
				}
				next = min(max(o.At+target.offset, start.Offset), end.Offset)
			case "time":
				at, _ := byTime.Lookup(tp.Topic, p)
				next = at.Offset
			}
			committed := "-"
			if o, ok := current.Lookup(tp.Topic, p); ok && o.At >= 0 {
				committed = strconv.FormatInt(o.At, 10)
			}
			plan.Add(kadm.Offset{Topic: tp.Topic, Partition: p, At: next, LeaderEpoch: -1})
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", tp.Topic, p, committed, next)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !execute {
		fmt.Fprintln(out, "not committed: run again with --execute to move the offsets")
		return nil
	}
	if err := adm.CommitAllOffsets(ctx, group, plan); err != nil {
		return fmt.Errorf("committing group %s's new offsets: %w", group, err)
	}
	fmt.Fprintf(out, "committed: group %s's consumers start from these offsets\n", group)
	return nil
}

// deleteGroups deletes stopped groups.
func deleteGroups(ctx context.Context, adm *kadm.Client, groups []string, out io.Writer) error {
	res, err := adm.DeleteGroups(ctx, groups...)
	if err != nil {
		return fmt.Errorf("deleting groups: %w", err)
	}
	var failed []string
	for _, g := range groups {
		r, ok := res[g]
		switch {
		case !ok:
			failed = append(failed, g+": no answer")
		case errors.Is(r.Err, kerr.NonEmptyGroup):
			failed = append(failed, fmt.Sprintf("%s: %v: it has members; stop its consumers first", g, r.Err))
		case r.Err != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", g, r.Err))
		default:
			fmt.Fprintf(out, "deleted group %s\n", g)
		}
	}
	if len(failed) > 0 {
		return errors.New("deleting groups: " + strings.Join(failed, "; "))
	}
	return nil
}
