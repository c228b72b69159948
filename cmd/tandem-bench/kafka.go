package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger routes franz-go's log lines through hclog (STYLE.md: hclog
// everywhere), under the "kgo" name.
type kgoLogger struct{ l hclog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	switch {
	case k.l.IsDebug() || k.l.IsTrace():
		return kgo.LogLevelDebug
	case k.l.IsInfo():
		return kgo.LogLevelInfo
	case k.l.IsWarn():
		return kgo.LogLevelWarn
	default:
		return kgo.LogLevelError
	}
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error(msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn(msg, keyvals...)
	case kgo.LogLevelInfo:
		k.l.Info(msg, keyvals...)
	default:
		k.l.Debug(msg, keyvals...)
	}
}

// splitBrokers turns "a:1,b:2" into its addresses.
func splitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// ensureTopic creates topic with the given partitions unless it exists.
// replicationFactor -1 asks for the broker's default (CreateTopics v4+); a
// broker that refuses -1 is asked again with 1, since Tandem replicates the
// whole node-wide WAL whatever a topic's replication factor says.
func ensureTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int32, replicationFactor int16, log hclog.Logger) error {
	adm := kadm.NewClient(cl)
	create := func(rf int16) error {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		resp, err := adm.CreateTopic(cctx, partitions, rf, nil, topic)
		if err != nil {
			return err
		}
		return resp.Err
	}
	err := create(replicationFactor)
	if err != nil && replicationFactor != 1 &&
		(errors.Is(err, kerr.InvalidReplicationFactor) || errors.Is(err, kerr.UnsupportedVersion) || errors.Is(err, kerr.InvalidRequest)) {
		log.Debug("broker refused the replication factor, retrying with 1", "topic", topic, "replication_factor", replicationFactor, "error", err)
		err = create(1)
	}
	switch {
	case err == nil:
		log.Info("created topic", "topic", topic, "partitions", partitions)
		return nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		log.Debug("topic exists", "topic", topic)
		return nil
	default:
		return fmt.Errorf("bench: create topic %q: %w", topic, err)
	}
}

// topicRecordCount is the number of records currently stored in topic: the
// sum over its partitions of (latest offset - earliest offset).
func topicRecordCount(ctx context.Context, cl *kgo.Client, topic string) (int64, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("bench: list end offsets of %q: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("bench: list start offsets of %q: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return 0, fmt.Errorf("bench: end offsets of %q: %w", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		n += o.Offset
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
			n -= s.Offset
		}
	})
	return n, nil
}
