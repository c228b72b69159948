package broker

// IncrementalAlterConfigs (key 44), v0-v1, and AlterConfigs (key 33), v0-v2.
//
// Topic configs only (broker settings are command-line flags). Set and
// delete are supported; APPEND and SUBTRACT (list configs) are refused with
// INVALID_CONFIG since no topic config here is a list. AlterConfigs replaces
// the whole set of a topic's overrides, as Kafka's legacy API does. Changes
// go through the WAL, so followers and restarts see them.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/wal"
)

func init() {
	register(kmsg.IncrementalAlterConfigs.Int16(), 0, 1, handleIncrementalAlterConfigs)
	register(kmsg.AlterConfigs.Int16(), 0, 2, handleAlterConfigs)
}

func (b *Broker) alterTopicConfig(ctx context.Context, name string, set map[string]*string, validateOnly bool) (*kerr.Error, string) {
	if !b.isLeader() {
		return kerr.NotController, "not the leader"
	}
	if _, ok := b.topicSnap(name); !ok {
		return kerr.UnknownTopicOrPartition, "unknown topic"
	}
	for k, v := range set {
		if v != nil {
			if e := b.validateTopicConfig(k, *v); e != nil {
				return e, "config " + k + "=" + *v + " is not supported"
			}
		} else if _, known := b.configDefaults()[k]; !known {
			return kerr.InvalidConfig, "unknown config " + k
		}
	}
	if validateOnly {
		return nil, ""
	}
	if err := b.appendMeta(ctx, wal.TypeAlterConfig, alterConfigEntry{Name: name, Set: set}); err != nil {
		return kerr.RequestTimedOut, err.Error()
	}
	b.log.Info("topic config changed", "topic", name, "changes", len(set))
	return nil, ""
}

func handleIncrementalAlterConfigs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.IncrementalAlterConfigsRequest)
	resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(0)
		defer cancel()
		for _, rr := range r.Resources {
			sr := kmsg.NewIncrementalAlterConfigsResponseResource()
			sr.ResourceType = rr.ResourceType
			sr.ResourceName = rr.ResourceName
			code, msg := func() (*kerr.Error, string) {
				if int8(rr.ResourceType) != resourceTopic {
					return kerr.InvalidRequest, "only topic configs can be altered; broker settings are flags"
				}
				if !b.allowedTopic(rc, kmsg.ACLOperationAlterConfigs, rr.ResourceName) {
					return kerr.TopicAuthorizationFailed, "altering a topic's configs needs ALTER_CONFIGS on the topic"
				}
				set := map[string]*string{}
				for _, c := range rr.Configs {
					switch c.Op {
					case kmsg.IncrementalAlterConfigOpSet:
						if c.Value == nil {
							return kerr.InvalidConfig, "SET without a value"
						}
						set[c.Name] = c.Value
					case kmsg.IncrementalAlterConfigOpDelete:
						set[c.Name] = nil
					default:
						return kerr.InvalidConfig, "APPEND and SUBTRACT apply to list configs; none exist here"
					}
				}
				return b.alterTopicConfig(ctx, rr.ResourceName, set, r.ValidateOnly)
			}()
			if code != nil {
				sr.ErrorCode = code.Code
				sr.ErrorMessage = &msg
			}
			resp.Resources = append(resp.Resources, sr)
		}
		return resp
	}
}

func handleAlterConfigs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.AlterConfigsRequest)
	resp := r.ResponseKind().(*kmsg.AlterConfigsResponse)
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(0)
		defer cancel()
		for _, rr := range r.Resources {
			sr := kmsg.NewAlterConfigsResponseResource()
			sr.ResourceType = rr.ResourceType
			sr.ResourceName = rr.ResourceName
			code, msg := func() (*kerr.Error, string) {
				if int8(rr.ResourceType) != resourceTopic {
					return kerr.InvalidRequest, "only topic configs can be altered; broker settings are flags"
				}
				if !b.allowedTopic(rc, kmsg.ACLOperationAlterConfigs, rr.ResourceName) {
					return kerr.TopicAuthorizationFailed, "altering a topic's configs needs ALTER_CONFIGS on the topic"
				}
				snap, ok := b.topicSnap(rr.ResourceName)
				if !ok {
					return kerr.UnknownTopicOrPartition, "unknown topic"
				}
				set := map[string]*string{}
				for k := range snap.configs {
					set[k] = nil
				}
				for _, c := range rr.Configs {
					set[c.Name] = c.Value
				}
				return b.alterTopicConfig(ctx, rr.ResourceName, set, r.ValidateOnly)
			}()
			if code != nil {
				sr.ErrorCode = code.Code
				sr.ErrorMessage = &msg
			}
			resp.Resources = append(resp.Resources, sr)
		}
		return resp
	}
}
