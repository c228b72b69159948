package broker

// DescribeConfigs (key 32), v0-v4.
//
// Topic resources list every topic config the broker knows: the topic's own
// value (source DYNAMIC_TOPIC_CONFIG) or the broker default (source
// DEFAULT_CONFIG). Broker resources list the broker-wide settings, read-only
// (they are command-line flags).

import (
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.DescribeConfigs.Int16(), 0, 4, handleDescribeConfigs) }

const (
	configSourceTopic   = 1 // DYNAMIC_TOPIC_CONFIG
	configSourceStatic  = 4 // STATIC_BROKER_CONFIG
	configSourceDefault = 5 // DEFAULT_CONFIG
	resourceTopic       = 2
	resourceBroker      = 4
)

type configValue struct {
	Name     string
	Value    *string
	Source   int8
	ReadOnly bool
}

// selectedKeys returns the keys of all that names asks for (every key when
// names is empty), sorted.
func selectedKeys(all map[string]string, names []string) []string {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		if len(want) == 0 || want[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// describeTopicConfigs lists a topic's configs, limited to names if given.
func (b *Broker) describeTopicConfigs(snap topicSnapshot, names []string) []configValue {
	defaults := b.configDefaults()
	var out []configValue
	for _, k := range selectedKeys(defaults, names) {
		v, src := defaults[k], int8(configSourceDefault)
		if tv, ok := snap.configs[k]; ok {
			v, src = tv, configSourceTopic
		}
		out = append(out, configValue{Name: k, Value: &v, Source: src})
	}
	return out
}

func (b *Broker) describeBrokerConfigs(names []string) []configValue {
	all := map[string]string{
		"broker.id":                        strconv.Itoa(int(b.cfg.NodeID)),
		"broker.rack":                      b.cfg.Rack,
		"num.partitions":                   strconv.Itoa(int(b.cfg.NumPartitions)),
		"auto.create.topics.enable":        strconv.FormatBool(b.cfg.AutoCreateTopics),
		"min.insync.replicas":              strconv.Itoa(int(b.cfg.MinInsyncReplicas)),
		"log.retention.ms":                 strconv.FormatInt(b.cfg.RetentionMs, 10),
		"log.retention.bytes":              strconv.FormatInt(b.cfg.RetentionBytes, 10),
		"log.segment.bytes":                strconv.FormatInt(b.cfg.SegmentBytes, 10),
		"message.max.bytes":                strconv.Itoa(int(b.cfg.MaxMessageBytes)),
		"socket.request.max.bytes":         strconv.Itoa(int(b.cfg.MaxRequestBytes)),
		"fetch.max.bytes":                  strconv.Itoa(int(b.cfg.FetchMaxBytes)),
		"connections.max.idle.ms":          strconv.FormatInt(b.cfg.ConnectionsMaxIdle.Milliseconds(), 10),
		"max.connections":                  strconv.Itoa(b.maxConnections()),
		"max.connections.per.ip":           strconv.Itoa(b.maxConnectionsPerIP()),
		"max.connections.per.ip.overrides": b.connectionOverrides(),
		"log.flush.policy":                 b.cfg.Fsync.String(),
		"group.initial.rebalance.delay.ms": strconv.FormatInt(b.cfg.InitialRebalanceDelay.Milliseconds(), 10),
		"offsets.commit.timeout.ms":        strconv.FormatInt(b.cfg.OffsetsCommitTimeout.Milliseconds(), 10),
	}
	var out []configValue
	for _, k := range selectedKeys(all, names) {
		v := all[k]
		out = append(out, configValue{Name: k, Value: &v, Source: configSourceStatic, ReadOnly: true})
	}
	return out
}

func handleDescribeConfigs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DescribeConfigsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range r.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType = rr.ResourceType
		sr.ResourceName = rr.ResourceName
		var values []configValue
		switch int8(rr.ResourceType) {
		case resourceTopic:
			snap, ok := b.topicSnap(rr.ResourceName)
			if !b.allowedTopic(rc, kmsg.ACLOperationDescribeConfigs, rr.ResourceName) {
				sr.ErrorCode = kerr.TopicAuthorizationFailed.Code
			} else if !ok {
				sr.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				values = b.describeTopicConfigs(snap, rr.ConfigNames)
			}
		case resourceBroker:
			if !b.allowedCluster(rc, kmsg.ACLOperationDescribeConfigs) {
				sr.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			} else if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(b.cfg.NodeID)) {
				sr.ErrorCode = kerr.InvalidRequest.Code
				msg := "describe the configs of a broker on that broker"
				sr.ErrorMessage = &msg
			} else {
				values = b.describeBrokerConfigs(rr.ConfigNames)
			}
		default:
			sr.ErrorCode = kerr.InvalidRequest.Code
		}
		for _, v := range values {
			c := kmsg.NewDescribeConfigsResponseResourceConfig()
			c.Name = v.Name
			c.Value = v.Value
			c.ReadOnly = v.ReadOnly
			c.Source = kmsg.ConfigSource(v.Source)
			c.IsDefault = v.Source == configSourceDefault
			sr.Configs = append(sr.Configs, c)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return now(resp)
}
