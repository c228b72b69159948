package main

import (
	"context"
	"encoding/base64"
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
//   - --delete deletes topics.
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
	)
	fs := flag.NewFlagSet("topics", flag.ContinueOnError)
	conn.flags(fs, "topics", &bootstrap)
	fs.BoolVar(&create, "create", false, "create the named topic")
	fs.BoolVar(&alter, "alter", false, "change the named topics' configs (--config, --delete-config) or partition count (--partitions)")
	fs.BoolVar(&del, "delete", false, "delete the named topics and their records")
	fs.IntVar(&partitions, "partitions", 0, "with --create: the partition count (default 1); with --alter: the new, higher count")
	fs.Var(&configs, "config", "with --create or --alter: a topic config KEY=VALUE (repeatable), e.g. min.insync.replicas=2")
	fs.Var(&unset, "delete-config", "with --alter: remove the topic's own value of KEY, so that the node's default applies (repeatable)")
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
	switch {
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
	adm, closeAdm, err := conn.admin(bootstrap, stdin)
	if err != nil {
		return err
	}
	defer closeAdm()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case create:
		return createTopic(ctx, adm, topics[0], max(partitions, 1), set, out)
	case alter:
		return alterTopics(ctx, adm, topics, partitions, set, unset, out)
	case del:
		return deleteTopics(ctx, adm, topics, out)
	}
	return describeTopics(ctx, adm, topics, out)
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
		return fmt.Errorf("creating topic %s: %w%s", topic, err, detail(r.ErrMessage))
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
				failed = append(failed, fmt.Sprintf("%s: %v%s", r.Name, r.Err, detail(r.ErrMessage)))
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
				failed = append(failed, fmt.Sprintf("%s: %v%s", t, r.Err, detail(r.ErrMessage)))
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
			failed = append(failed, fmt.Sprintf("%s: %v%s", t, r.Err, detail(r.ErrMessage)))
		default:
			fmt.Fprintf(out, "deleted topic %s\n", t)
		}
	}
	if len(failed) > 0 {
		return errors.New("deleting topics: " + strings.Join(failed, "; "))
	}
	return nil
}

// detail is a broker's error message, for appending to an error.
func detail(msg string) string {
	if msg == "" {
		return ""
	}
	return " (" + msg + ")"
}

// describeTopics lists every topic (none named) or describes the named
// ones.
func describeTopics(ctx context.Context, adm *kadm.Client, topics []string, out io.Writer) error {
	md, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("reading the topics' metadata: %w", err)
	}
	names := md.Names()
	sort.Strings(names)
	var cfgs kadm.ResourceConfigs
	if len(names) > 0 {
		if cfgs, err = adm.DescribeTopicConfigs(ctx, names...); err != nil {
			return fmt.Errorf("reading the topics' configs: %w", err)
		}
	}
	byTopic := map[string]kadm.ResourceConfig{}
	for _, rc := range cfgs {
		byTopic[rc.Name] = rc
	}
	minISR := func(t string) string {
		for _, c := range byTopic[t].Configs {
			if c.Key == "min.insync.replicas" && c.Value != nil {
				return *c.Value
			}
		}
		return "?"
	}
	if len(topics) == 0 {
		if len(names) == 0 {
			fmt.Fprintln(out, "no topics")
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICAS\tMIN.INSYNC\tUNDER-REPLICATED")
		for _, t := range names {
			d := md[t]
			under := 0
			for _, p := range d.Partitions {
				if p.Err != nil || len(p.ISR) < len(p.Replicas) {
					under++
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\n", t, len(d.Partitions), d.Partitions.NumReplicas(), minISR(t), under)
		}
		return tw.Flush()
	}
	var failed []string
	for i, t := range topics {
		if i > 0 {
			fmt.Fprintln(out)
		}
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
		fmt.Fprintf(out, "topic %s: %d partition(s), replication factor %d, min.insync.replicas %s, id %s\n",
			t, len(d.Partitions), d.Partitions.NumReplicas(), minISR(t), base64.RawURLEncoding.EncodeToString(d.ID[:]))
		var own []string
		rc := byTopic[t]
		for _, c := range rc.Configs {
			if c.Source == kmsg.ConfigSourceDynamicTopicConfig && c.Value != nil {
				own = append(own, c.Key+"="+*c.Value)
			}
		}
		sort.Strings(own)
		switch {
		case rc.Err != nil:
			fmt.Fprintf(out, "configs: unknown (%v)\n", rc.Err)
		case len(own) == 0:
			fmt.Fprintln(out, "configs: none set on the topic (the nodes' defaults apply)")
		default:
			fmt.Fprintln(out, "configs: "+strings.Join(own, " "))
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tISR")
		for _, p := range d.Partitions.Sorted() {
			leader := strconv.Itoa(int(p.Leader))
			if p.Err != nil {
				leader = p.Err.Error()
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", p.Partition, leader, joinIDs(p.Replicas), joinIDs(p.ISR))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return errors.New("describing topics: " + strings.Join(failed, "; "))
	}
	return nil
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
