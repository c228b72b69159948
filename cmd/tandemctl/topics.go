package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// topicsCmd implements `tandemctl topics`, the operator's kafka-topics.sh
// and the topic half of kafka-configs.sh:
//
//   - with no topic named, it lists every topic with its partition count,
//     replication factor, min.insync.replicas and how many partitions are
//     under-replicated (fewer in-sync replicas than replicas);
//   - with topics named, it describes each: the configs set on it, and
//     per partition the leader, replicas and ISR;
//   - --create makes a topic (--partitions, --config K=V);
//   - --alter sets (--config K=V) or removes (--delete-config K) topic
//     configs and raises the partition count (--partitions);
//   - --delete deletes topics;
//   - --under-replicated-partitions, --under-min-isr-partitions,
//     --at-min-isr-partitions and --unavailable-partitions show only those
//     partitions, as kafka-topics.sh --describe does;
//   - --json prints the list or the description as JSON, for scripts.
//
// It connects as `tandemctl acls` does.
func topicsCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var (
		bootstrap  string
		conn       kafkaConn
		create     bool
		alter      bool
		del        bool
		partitions int
		configs    stringsFlag
		unset      stringsFlag
		asJSON     bool
		filters    = []partitionFilter{underReplicated, underMinISR, atMinISR, unavailable}
		filterSet  = make([]bool, len(filters))
	)
	fs := flag.NewFlagSet("topics", flag.ContinueOnError)
	conn.flags(fs, "topics", &bootstrap)
	fs.BoolVar(&create, "create", false, "create the named topic")
	fs.BoolVar(&alter, "alter", false, "change the named topics' configs (--config, --delete-config) or partition count (--partitions)")
	fs.BoolVar(&del, "delete", false, "delete the named topics and their records")
	fs.IntVar(&partitions, "partitions", 0, "with --create: the partition count (default 1); with --alter: the new, higher count")
	fs.Var(&configs, "config", "with --create or --alter: a topic config KEY=VALUE (repeatable), e.g. min.insync.replicas=2")
	fs.Var(&unset, "delete-config", "with --alter: remove the topic's own value of KEY, so that the node's default applies (repeatable)")
	fs.BoolVar(&asJSON, "json", false, "list or describe the topics as JSON")
	for i, f := range filters {
		fs.BoolVar(&filterSet[i], string(f), false, "show only the partitions "+f.what()+", of every topic or the named ones")
	}
	topics, err := parseWithNames(fs, args)
	if err != nil {
		return err
	}
	partitionsSet := false
	fs.Visit(func(f *flag.Flag) { partitionsSet = partitionsSet || f.Name == "partitions" })
	modes := 0
	for _, m := range []bool{create, alter, del} {
		if m {
			modes++
		}
	}
	var filter partitionFilter
	for i, f := range filters {
		if filterSet[i] && filter != "" {
			return usageError{fmt.Sprintf("topics: --%s and --%s do not go together", filter, f)}
		}
		if filterSet[i] {
			filter = f
		}
	}
	switch {
	case modes > 0 && (asJSON || filter != ""):
		return usageError{"topics: --json and the partition filters go with listing or describing, not with --create, --alter or --delete"}
	case modes > 1:
		return usageError{"topics: --create, --alter and --delete do not go together"}
	case modes == 1 && len(topics) == 0:
		return usageError{"topics --create, --alter and --delete need the topics to change"}
	case create && len(topics) != 1:
		return usageError{"topics --create makes one topic at a time"}
	case !create && !alter && (partitionsSet || len(configs) > 0):
		return usageError{"topics: --partitions and --config go with --create or --alter"}
	case partitionsSet && partitions <= 0:
		return usageError{"topics --partitions must be positive"}
	case !alter && len(unset) > 0:
		return usageError{"topics: --delete-config goes with --alter"}
	case alter && !partitionsSet && len(configs) == 0 && len(unset) == 0:
		return usageError{"topics --alter needs --config, --delete-config or --partitions"}
	}
	set, err := parseConfigs(configs)
	if err != nil {
		return usageError{"topics --config: " + err.Error()}
	}
	ctx, adm, closeAdm, err := conn.admin(ctx, bootstrap, stdin, timeout)
	if err != nil {
		return err
	}
	defer closeAdm()
	switch {
	case create:
		return createTopic(ctx, adm, topics[0], max(partitions, 1), set, out)
	case alter:
		return alterTopics(ctx, adm, topics, partitions, set, unset, out)
	case del:
		return deleteTopics(ctx, adm, topics, out)
	}
	return describeTopics(ctx, adm, topics, filter, asJSON, out)
}

// parseConfigs reads KEY=VALUE pairs, in order.
func parseConfigs(vals []string) ([][2]string, error) {
	var out [][2]string
	seen := map[string]bool{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not KEY=VALUE", v)
		}
		if seen[k] {
			return nil, fmt.Errorf("%s is given twice", k)
		}
		seen[k] = true
		out = append(out, [2]string{k, val})
	}
	return out, nil
}

// createTopic creates one topic with every node as a replica.
func createTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int, set [][2]string, out io.Writer) error {
	configs := map[string]*string{}
	for _, kv := range set {
		configs[kv[0]] = kadm.StringPtr(kv[1])
	}
	r, err := adm.CreateTopic(ctx, int32(partitions), -1, configs, topic)
	if err == nil {
		err = r.Err
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, brokerErr(err, r.ErrMessage))
	}
	fmt.Fprintf(out, "created topic %s: %d partition(s), replication factor %d\n", topic, r.NumPartitions, r.ReplicationFactor)
	return nil
}

// alterTopics changes the topics' configs, then their partition counts.
func alterTopics(ctx context.Context, adm *kadm.Client, topics []string, partitions int, set [][2]string, unset []string, out io.Writer) error {
	var changes []kadm.AlterConfig
	for _, kv := range set {
		changes = append(changes, kadm.AlterConfig{Op: kadm.SetConfig, Name: kv[0], Value: kadm.StringPtr(kv[1])})
	}
	for _, k := range unset {
		changes = append(changes, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	var failed []string
	if len(changes) > 0 {
		res, err := adm.AlterTopicConfigs(ctx, changes, topics...)
		if err != nil {
			return fmt.Errorf("changing topic configs: %w", err)
		}
		done := map[string]bool{}
		for _, r := range res {
			done[r.Name] = true
			if r.Err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", r.Name, brokerErr(r.Err, r.ErrMessage)))
				continue
			}
			fmt.Fprintf(out, "changed the configs of topic %s\n", r.Name)
		}
		for _, t := range topics {
			if !done[t] {
				failed = append(failed, t+": no answer to the config change")
			}
		}
	}
	if partitions > 0 && len(failed) == 0 {
		res, err := adm.UpdatePartitions(ctx, partitions, topics...)
		if err != nil {
			return fmt.Errorf("adding partitions: %w", err)
		}
		for _, t := range topics {
			r, ok := res[t]
			switch {
			case !ok:
				failed = append(failed, t+": no answer to the partition change")
			case r.Err != nil:
				failed = append(failed, fmt.Sprintf("%s: %v", t, brokerErr(r.Err, r.ErrMessage)))
			default:
				fmt.Fprintf(out, "topic %s has %d partitions\n", t, partitions)
			}
		}
	}
	if len(failed) > 0 {
		return errors.New("altering topics: " + strings.Join(failed, "; "))
	}
	return nil
}

// deleteTopics deletes the topics.
func deleteTopics(ctx context.Context, adm *kadm.Client, topics []string, out io.Writer) error {
	res, err := adm.DeleteTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("deleting topics: %w", err)
	}
	var failed []string
	for _, t := range topics {
		r, ok := res[t]
		switch {
		case !ok:
			failed = append(failed, t+": no answer")
		case r.Err != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", t, brokerErr(r.Err, r.ErrMessage)))
		default:
			fmt.Fprintf(out, "deleted topic %s\n", t)
		}
	}
	if len(failed) > 0 {
		return errors.New("deleting topics: " + strings.Join(failed, "; "))
	}
	return nil
}

// partitionFilter is the describe filter of kafka-topics.sh's
// --under-replicated-partitions, --under-min-isr-partitions,
// --at-min-isr-partitions and --unavailable-partitions ("" for none).
type partitionFilter string

const (
	underReplicated partitionFilter = "under-replicated-partitions"
	underMinISR     partitionFilter = "under-min-isr-partitions"
	atMinISR        partitionFilter = "at-min-isr-partitions"
	unavailable     partitionFilter = "unavailable-partitions"
)

// what says in words which partitions the filter keeps.
func (f partitionFilter) what() string {
	switch f {
	case underReplicated:
		return "under-replicated (fewer in-sync replicas than replicas)"
	case underMinISR:
		return "under min.insync.replicas (acks=all writes to it fail with NOT_ENOUGH_REPLICAS)"
	case atMinISR:
		return "at min.insync.replicas (one more replica lost and acks=all writes to it fail)"
	case unavailable:
		return "without a leader"
	}
	return "any"
}

// keep reports whether the filter keeps p, of a topic whose
// min.insync.replicas is minISR (0: unknown, which no min-ISR filter
// keeps).
func (f partitionFilter) keep(p partitionInfo, minISR int) bool {
	switch f {
	case underReplicated:
		return p.Error != "" || len(p.ISR) < len(p.Replicas)
	case underMinISR:
		return minISR > 0 && len(p.ISR) < minISR
	case atMinISR:
		return minISR > 0 && len(p.ISR) == minISR
	case unavailable:
		return p.Error != "" || p.Leader < 0
	}
	return true
}

// topicInfo is what `tandemctl topics` reports of a topic; --json prints
// it as is.
type topicInfo struct {
	Topic             string            `json:"topic"`
	ID                string            `json:"id"`
	PartitionCount    int               `json:"partition_count"`
	ReplicationFactor int               `json:"replication_factor"`
	MinInsyncReplicas int               `json:"min_insync_replicas"` // 0: unknown
	Configs           map[string]string `json:"configs"`             // set on the topic itself
	ConfigsError      string            `json:"configs_error,omitempty"`
	Partitions        []partitionInfo   `json:"partitions"`
}

// partitionInfo is one partition of a topicInfo.
type partitionInfo struct {
	Partition int32   `json:"partition"`
	Leader    int32   `json:"leader"` // -1: none
	Replicas  []int32 `json:"replicas"`
	ISR       []int32 `json:"isr"`
	Error     string  `json:"error,omitempty"` // e.g. LEADER_NOT_AVAILABLE
}

// underReplicated counts the topic's partitions with fewer in-sync
// replicas than replicas, or none known.
func (t *topicInfo) underReplicated() int {
	n := 0
	for _, p := range t.Partitions {
		if underReplicated.keep(p, t.MinInsyncReplicas) {
			n++
		}
	}
	return n
}

// readTopics reads the named topics (every topic when none is named) from
// the metadata and their configs; failed lists the named ones that could
// not be read, with why.
func readTopics(ctx context.Context, adm *kadm.Client, topics []string) (infos []*topicInfo, failed []string, err error) {
	md, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the topics' metadata: %w", err)
	}
	names := md.Names()
	sort.Strings(names)
	var cfgs kadm.ResourceConfigs
	if len(names) > 0 {
		if cfgs, err = adm.DescribeTopicConfigs(ctx, names...); err != nil {
			return nil, nil, fmt.Errorf("reading the topics' configs: %w", err)
		}
	}
	byTopic := map[string]kadm.ResourceConfig{}
	for _, rc := range cfgs {
		byTopic[rc.Name] = rc
	}
	if len(topics) == 0 {
		topics = names
	}
	for _, t := range topics {
		d, ok := md[t]
		if !ok || d.Err != nil {
			err := errors.New("not in the metadata")
			if ok {
				err = d.Err
			}
			failed = append(failed, fmt.Sprintf("%s: %v", t, err))
			continue
		}
		// The id as Kafka's tools print it.
		info := &topicInfo{Topic: t, ID: base64.RawURLEncoding.EncodeToString(d.ID[:]), PartitionCount: len(d.Partitions),
			ReplicationFactor: d.Partitions.NumReplicas(), Configs: map[string]string{}}
		rc := byTopic[t]
		if rc.Err != nil {
			info.ConfigsError = rc.Err.Error()
		}
		for _, c := range rc.Configs {
			if c.Value == nil {
				continue
			}
			if c.Key == "min.insync.replicas" {
				info.MinInsyncReplicas, _ = strconv.Atoi(*c.Value)
			}
			if c.Source == kmsg.ConfigSourceDynamicTopicConfig {
				info.Configs[c.Key] = *c.Value
			}
		}
		for _, p := range d.Partitions.Sorted() {
			pi := partitionInfo{Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR}
			if pi.Replicas == nil {
				pi.Replicas = []int32{}
			}
			if pi.ISR == nil {
				pi.ISR = []int32{}
			}
			if p.Err != nil {
				pi.Error = p.Err.Error()
			}
			info.Partitions = append(info.Partitions, pi)
		}
		infos = append(infos, info)
	}
	return infos, failed, nil
}

// describeTopics lists every topic (none named) or describes the named
// ones; with a filter, it shows only the partitions the filter keeps, of
// every topic or the named ones, as kafka-topics.sh --describe does.
func describeTopics(ctx context.Context, adm *kadm.Client, topics []string, filter partitionFilter, asJSON bool, out io.Writer) error {
	infos, failed, err := readTopics(ctx, adm, topics)
	if err != nil {
		return err
	}
	if filter != "" {
		kept := infos[:0]
		for _, t := range infos {
			var ps []partitionInfo
			for _, p := range t.Partitions {
				if filter.keep(p, t.MinInsyncReplicas) {
					ps = append(ps, p)
				}
			}
			if len(ps) > 0 {
				t.Partitions = ps
				kept = append(kept, t)
			}
		}
		infos = kept
	}
	switch {
	case asJSON:
		if infos == nil {
			infos = []*topicInfo{}
		}
		if err := printJSON(out, infos); err != nil {
			return err
		}
	case filter != "":
		if len(infos) == 0 {
			fmt.Fprintf(out, "no partition is %s\n", filter.what())
			break
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tPARTITION\tLEADER\tREPLICAS\tISR\tMIN.INSYNC")
		for _, t := range infos {
			for _, p := range t.Partitions {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", t.Topic, p.Partition, leaderOf(p), joinIDs(p.Replicas), joinIDs(p.ISR), minISROf(t))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	case len(topics) == 0:
		if len(infos) == 0 {
			fmt.Fprintln(out, "no topics")
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICAS\tMIN.INSYNC\tUNDER-REPLICATED")
		for _, t := range infos {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\n", t.Topic, t.PartitionCount, t.ReplicationFactor, minISROf(t), t.underReplicated())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	default:
		for i, t := range infos {
			if i > 0 {
				fmt.Fprintln(out)
			}
			if err := printTopic(out, t); err != nil {
				return err
			}
		}
	}
	if len(failed) > 0 {
		return errors.New("describing topics: " + strings.Join(failed, "; "))
	}
	return nil
}

// printTopic describes one topic: its configs, and each partition's
// leader, replicas and ISR.
func printTopic(out io.Writer, t *topicInfo) error {
	fmt.Fprintf(out, "topic %s: %d partition(s), replication factor %d, min.insync.replicas %s, id %s\n",
		t.Topic, t.PartitionCount, t.ReplicationFactor, minISROf(t), t.ID)
	own := make([]string, 0, len(t.Configs))
	for k, v := range t.Configs {
		own = append(own, k+"="+v)
	}
	sort.Strings(own)
	switch {
	case t.ConfigsError != "":
		fmt.Fprintf(out, "configs: unknown (%s)\n", t.ConfigsError)
	case len(own) == 0:
		fmt.Fprintln(out, "configs: none set on the topic (the nodes' defaults apply)")
	default:
		fmt.Fprintln(out, "configs: "+strings.Join(own, " "))
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tISR")
	for _, p := range t.Partitions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", p.Partition, leaderOf(p), joinIDs(p.Replicas), joinIDs(p.ISR))
	}
	return tw.Flush()
}

// leaderOf prints a partition's leader, or why it has none.
func leaderOf(p partitionInfo) string {
	switch {
	case p.Error != "":
		return p.Error
	case p.Leader < 0:
		return "none"
	}
	return strconv.Itoa(int(p.Leader))
}

// minISROf prints a topic's min.insync.replicas (? when unknown).
func minISROf(t *topicInfo) string {
	if t.MinInsyncReplicas <= 0 {
		return "?"
	}
	return strconv.Itoa(t.MinInsyncReplicas)
}

// printJSON prints v as indented JSON.
func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// joinIDs prints node ids as 1,2,3 (- for none).
func joinIDs(ids []int32) string {
	if len(ids) == 0 {
		return "-"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}
