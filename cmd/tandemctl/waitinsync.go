package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
)

// waitInSync waits until the cluster is back to full strength: a node leads
// with its broker attached and ready, and every other node is connected to
// it and in its ISR. It is the step between two nodes of a rolling restart
// (docs/operations.md): restart a node, `tandemctl wait-in-sync`, restart
// the next. Whenever what it waits for changes it prints a line; it exits
// 0 once the cluster is in sync and 1 when --max-wait passes first.
func (c *client) waitInSync(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wait-in-sync", flag.ContinueOnError)
	maxWait := fs.Duration("max-wait", 10*time.Minute, "give up (exit 1) after this long")
	interval := fs.Duration("interval", time.Second, "how often to ask")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"wait-in-sync takes no arguments"}
	}
	if *interval <= 0 || *maxWait <= 0 {
		return usageError{"--interval and --max-wait must be positive"}
	}
	start := time.Now()
	deadline := start.Add(*maxWait)
	last := ""
	for {
		done, msg := c.inSyncNow(ctx)
		if done {
			fmt.Fprintf(c.out, "in sync after %s: %s\n", time.Since(start).Round(time.Millisecond), msg)
			return nil
		}
		if msg != last {
			fmt.Fprintf(c.out, "%s waiting: %s\n", time.Now().Format(time.TimeOnly), msg)
			last = msg
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("not in sync after %s: %s", *maxWait, msg)
		}
		t := time.NewTimer(min(*interval, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("interrupted while waiting: %s", msg)
		case <-t.C:
		}
	}
}

// inSyncNow asks the sidecar, then the leader it names, and says whether
// every node is in the leader's ISR; msg says what is still missing, or,
// when done, who leads with which ISR.
func (c *client) inSyncNow(ctx context.Context) (done bool, msg string) {
	st, err := c.getStatus(ctx, c.addr)
	if err != nil {
		return false, err.Error()
	}
	peers := map[int32]string{}
	for _, p := range st.GetPeers() {
		peers[p.GetNodeId()] = p.GetAddress()
	}
	if len(peers) == 0 {
		return false, fmt.Sprintf("node %d lists no peers (a standalone node has no ISR to wait for)", st.GetNodeId())
	}
	lid := st.GetLeaderId()
	lst := st
	if st.GetRole() != adminv1.Role_ROLE_LEADER {
		if lid == 0 {
			return false, fmt.Sprintf("node %d knows no leader (an election may be running)", st.GetNodeId())
		}
		addr, ok := peers[lid]
		if !ok {
			return false, fmt.Sprintf("node %d follows node %d, which is not among its peers", st.GetNodeId(), lid)
		}
		if lst, err = c.getStatus(ctx, addr); err != nil {
			return false, fmt.Sprintf("leader node %d: %v", lid, err)
		}
		if lst.GetRole() != adminv1.Role_ROLE_LEADER {
			return false, fmt.Sprintf("node %d names node %d as leader, which is %s", st.GetNodeId(), lid, roleName(lst.GetRole()))
		}
	}
	lid = lst.GetNodeId()
	switch {
	case !lst.GetLinked():
		return false, fmt.Sprintf("leader node %d: its broker is not attached", lid)
	case !lst.GetReady():
		return false, fmt.Sprintf("leader node %d is not ready: %s", lid, lst.GetNotReadyReason())
	}
	var missing []string
	for _, r := range lst.GetReplicas() {
		switch {
		case !r.GetConnected():
			missing = append(missing, fmt.Sprintf("node %d is not connected to the leader", r.GetNodeId()))
		case !r.GetInIsr():
			missing = append(missing, fmt.Sprintf("node %d is not in the ISR yet (%s, %d entries behind)", r.GetNodeId(), replicaState(r), r.GetLagEntries()))
		}
	}
	for id := range peers {
		if id != lid && !slices.ContainsFunc(lst.GetReplicas(), func(r *adminv1.Replica) bool { return r.GetNodeId() == id }) {
			missing = append(missing, fmt.Sprintf("leader node %d does not list node %d", lid, id))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return false, strings.Join(missing, "; ")
	}
	return true, fmt.Sprintf("node %d leads epoch %d with ISR %v", lid, lst.GetEpoch(), lst.GetIsr())
}
