package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultEtcdPrefix is the etcd key prefix of a cluster's election and ISR
// keys when the sidecars run without --etcd-prefix.
func DefaultEtcdPrefix(clusterID string) string { return "/tandem/" + clusterID + "/" }

// ErrLeaderRunning is ForgetISR's refusal while the node that published the
// ISR still holds the etcd election.
var ErrLeaderRunning = errors.New("sidecar: the leader that published the ISR still holds the election")

// ForgottenISR is what ForgetISR found and deleted.
type ForgottenISR struct {
	Key      string  // the ISR key under the prefix
	Found    bool    // false: there was no ISR key (nothing deleted)
	LeaderID int32   // node that published it
	Epoch    uint32  // its epoch
	ISR      []int32 // the members it named
	Raw      string  // the value as stored, when it did not parse
}

// ForgetISR deletes the ISR published under prefix in etcd (the key
// `<prefix>isr`), the operator's way out when the elected leader lacks
// entries that followers outside its ISR served as committed (they refuse
// to follow it, docs/operations.md): with no published ISR every running
// sidecar campaigns, and a winner that finds a peer holding more of the
// log resigns to it.
//
// It refuses (ErrLeaderRunning) while the node that published the ISR
// still holds an election key under the prefix: that node would publish
// its ISR again at once, and the nodes outside it would still not be
// elected. Stop that node's pair first. A sidecar that was killed (not
// stopped) keeps its key until its lease runs out (--lease-ttl, 6 s by
// default), so ForgetISR waits up to wait for the key to go before it
// refuses. The deletion is one transaction that checks the ISR is still
// the one read.
func ForgetISR(ctx context.Context, endpoints []string, prefix string, wait time.Duration) (ForgottenISR, error) {
	out := ForgottenISR{Key: prefix + "isr"}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		Context:     ctx,
	})
	if err != nil {
		return out, fmt.Errorf("sidecar: etcd client for %v: %w", endpoints, err)
	}
	defer cli.Close()

	r, err := cli.Get(ctx, out.Key)
	if err != nil {
		return out, fmt.Errorf("sidecar: reading %s from etcd: %w", out.Key, err)
	}
	if len(r.Kvs) == 0 {
		return out, nil
	}
	kv := r.Kvs[0]
	out.Found = true
	var v isrValue
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		out.Raw = string(kv.Value)
	} else {
		out.LeaderID, out.Epoch, out.ISR = v.LeaderID, v.Epoch, v.ISR
	}

	if out.Raw == "" {
		deadline := time.Now().Add(wait)
		for {
			key, err := electionKeyOf(ctx, cli, prefix, out.LeaderID)
			if err != nil {
				return out, err
			}
			if key == "" {
				break
			}
			if time.Now().After(deadline) {
				return out, fmt.Errorf("%w: node %d (key %s, still there after %s); stop node %d's broker and sidecar first "+
					"(a killed sidecar's key goes when its lease runs out, --lease-ttl), then run this again",
					ErrLeaderRunning, out.LeaderID, key, wait, out.LeaderID)
			}
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(250 * time.Millisecond): // polling etcd until the lease runs out
			}
		}
	}

	tr, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(out.Key), "=", kv.ModRevision)).
		Then(clientv3.OpDelete(out.Key)).
		Commit()
	if err != nil {
		return out, fmt.Errorf("sidecar: deleting %s in etcd: %w", out.Key, err)
	}
	if !tr.Succeeded {
		return out, fmt.Errorf("sidecar: %s changed while it was being deleted (a leader published a new ISR); look at the cluster again", out.Key)
	}
	return out, nil
}

// electionKeyOf returns the election key that node id holds under prefix,
// or "" when it holds none.
func electionKeyOf(ctx context.Context, cli *clientv3.Client, prefix string, id int32) (string, error) {
	el, err := cli.Get(ctx, prefix+"election/", clientv3.WithPrefix())
	if err != nil {
		return "", fmt.Errorf("sidecar: reading the election keys from etcd: %w", err)
	}
	for _, e := range el.Kvs {
		var lv leaderValue
		if json.Unmarshal(e.Value, &lv) == nil && lv.NodeID == id {
			return string(e.Key), nil
		}
	}
	return "", nil
}
