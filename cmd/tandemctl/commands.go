package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/sidecar"
)

const defaultTimeout = 5 * time.Second

// client holds connections to sidecars' admin APIs.
type client struct {
	addr    string
	timeout time.Duration
	out     io.Writer
	conns   map[string]*grpc.ClientConn
	token   string                           // sent as "authorization: Bearer <token>" when set
	creds   credentials.TransportCredentials // TLS; nil means plaintext
}

// dialOptions adds TLS and the admin token to the sidecar package's options.
func (c *client) dialOptions() []grpc.DialOption {
	opts := sidecar.ClientOptions(hclog.NewNullLogger(), 16<<20)
	if c.creds != nil {
		opts = append(opts, grpc.WithTransportCredentials(c.creds))
	}
	if c.token != "" {
		opts = append(opts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	}
	return opts
}

func (c *client) admin(addr string) (adminv1.AdminServiceClient, error) {
	if c.conns == nil {
		c.conns = map[string]*grpc.ClientConn{}
	}
	conn := c.conns[addr]
	if conn == nil {
		var err error
		conn, err = grpc.NewClient(addr, c.dialOptions()...)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", addr, err)
		}
		c.conns[addr] = conn
	}
	return adminv1.NewAdminServiceClient(conn), nil
}

func (c *client) close() {
	for _, conn := range c.conns {
		conn.Close()
	}
}

func (c *client) getStatus(ctx context.Context, addr string) (*adminv1.StatusResponse, error) {
	a, err := c.admin(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	st, err := a.Status(ctx, &adminv1.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", addr, err)
	}
	return st, nil
}

// status prints this node's status, once or every --interval.
func (c *client) status(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the StatusResponse as JSON")
	watch := fs.Bool("watch", false, "refresh until interrupted")
	interval := fs.Duration("interval", time.Second, "refresh period with --watch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"status takes no arguments"}
	}
	for {
		st, err := c.getStatus(ctx, c.addr)
		if *watch {
			fmt.Fprint(c.out, "\033[H\033[2J") // clear the terminal
			fmt.Fprintf(c.out, "%s  (every %s, Ctrl-C to stop)\n\n", time.Now().Format(time.TimeOnly), *interval)
		}
		switch {
		case err != nil && !*watch:
			return err
		case err != nil:
			fmt.Fprintln(c.out, "error:", err)
		case *asJSON:
			b, _ := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(st)
			fmt.Fprintln(c.out, string(b))
		default:
			printStatus(c.out, st, time.Now())
		}
		if !*watch {
			return nil
		}
		t := time.NewTimer(*interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func roleName(r adminv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// printStatus writes a status as text: the node, then one line per replica.
func printStatus(w io.Writer, st *adminv1.StatusResponse, now time.Time) {
	fmt.Fprintf(w, "node %d  cluster %s  role %s  epoch %d  leader %d\n",
		st.GetNodeId(), st.GetClusterId(), roleName(st.GetRole()), st.GetEpoch(), st.GetLeaderId())
	ready := yesNo(st.GetReady())
	if !st.GetReady() && st.GetNotReadyReason() != "" {
		ready += " (" + st.GetNotReadyReason() + ")"
	}
	fmt.Fprintf(w, "linked %s  ready %s", yesNo(st.GetLinked()), ready)
	if st.GetRole() == adminv1.Role_ROLE_FOLLOWER {
		fmt.Fprintf(w, "  streaming %s", yesNo(st.GetStreaming()))
		heard := "never (since its last role change)"
		if t := st.GetLastHeardFromLeader(); t != nil {
			heard = now.Sub(t.AsTime()).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(w, "  heard from leader %s", heard)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "wal: first %d  last %d (epoch %d)  durable %d  commit %d  isr %v\n",
		st.GetFirstLsn(), st.GetLastLsn(), st.GetWalLastEpoch(), st.GetDurableLsn(), st.GetCommitLsn(), st.GetIsr())
	if msg := st.GetStorageError(); msg != "" {
		fmt.Fprintf(w, "STORAGE FAILING for %s: the broker cannot write its WAL: %s\n",
			now.Sub(st.GetStorageFailingSince().AsTime()).Round(time.Second), msg)
	}
	if m := st.GetFailoverMode(); m != "" {
		fmt.Fprintf(w, "failover: %s", m)
		if n := st.GetUncleanPromotions(); n > 0 {
			fmt.Fprintf(w, "  UNCLEAN PROMOTIONS %d (acknowledged writes may have been dropped)", n)
		}
		fmt.Fprintln(w)
	}
	if len(st.GetReplicas()) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSIDECAR\tKAFKA\tSTATE\tSENT\tWRITTEN\tFLUSHED\tAPPLIED\tLAG_ENTRIES\tLAG_BYTES\tLAG_SEC\tAPPLY_LAG\tIN_ISR\tLAST_HEARTBEAT")
	for _, r := range st.GetReplicas() {
		state := replicaState(r)
		hb := "never"
		if r.GetLastHeartbeat() != nil {
			hb = now.Sub(r.GetLastHeartbeat().AsTime()).Round(100*time.Millisecond).String() + " ago"
		}
		kafka := r.GetKafkaAddress()
		if kafka == "" {
			kafka = "-"
		}
		applyLag := "-"
		if s := r.GetApplyLagSeconds(); s > 0 {
			applyLag = time.Duration(s * float64(time.Second)).Round(100 * time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\n",
			r.GetNodeId(), r.GetAddress(), kafka, state, r.GetSentLsn(), r.GetWrittenLsn(), r.GetFlushedLsn(), r.GetAppliedLsn(),
			r.GetLagEntries(), r.GetLagBytes(), r.GetLagSeconds(), applyLag, yesNo(r.GetInIsr()), hb)
	}
	tw.Flush()
}

// promote asks the sidecar to become leader.
func (c *client) promote(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("promote", flag.ContinueOnError)
	force := fs.Bool("force", false, "promote even if the node is not in sync (unclean: acknowledged writes can be lost)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := c.admin(c.addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := a.Promote(ctx, &adminv1.PromoteRequest{Force: *force})
	if err != nil {
		return fmt.Errorf("promote %s: %w", c.addr, err)
	}
	fmt.Fprintf(c.out, "node %d is leader in epoch %d\n", r.GetLeaderId(), r.GetEpoch())
	return nil
}

// verify compares every node's WAL checksum over a common LSN range.
func (c *client) verify(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	upto := fs.Uint64("upto", 0, "last LSN to compare (default: the lowest last LSN of all nodes)")
	peersFlag := fs.String("peers", "", "nodes to compare, 1=HOST:PORT,... (default: the peers the sidecar lists)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	peers := map[int32]string{}
	if *peersFlag != "" {
		p, err := sidecar.ParsePeers(*peersFlag)
		if err != nil {
			return usageError{err.Error()}
		}
		peers = p
	} else {
		st, err := c.getStatus(ctx, c.addr)
		if err != nil {
			return err
		}
		for _, p := range st.GetPeers() {
			peers[p.GetNodeId()] = p.GetAddress()
		}
		if len(peers) == 0 {
			peers[st.GetNodeId()] = c.addr
		}
	}
	ids := make([]int32, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	// The range every node holds.
	var from, to uint64 = 1, ^uint64(0)
	for _, id := range ids {
		st, err := c.getStatus(ctx, peers[id])
		if err != nil {
			return fmt.Errorf("node %d: %w", id, err)
		}
		if !st.GetLinked() {
			return fmt.Errorf("node %d (%s): its broker is not attached to the sidecar", id, peers[id])
		}
		from = max(from, st.GetFirstLsn())
		to = min(to, st.GetLastLsn())
	}
	if *upto > 0 {
		if *upto > to {
			return fmt.Errorf("--upto %d is beyond the end of some node's WAL (the lowest last LSN is %d)", *upto, to)
		}
		to = *upto
	}
	// A sidecar's status gives the first LSN its broker had when it
	// attached; retention may have deleted segments since. The checksum
	// of one entry every node holds comes back with each broker's real
	// first LSN. (A node that cannot answer fails again below, with its
	// error.)
	for _, id := range ids {
		if to < from {
			break
		}
		a, err := c.admin(peers[id])
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		r, err := a.Checksum(cctx, &adminv1.ChecksumRequest{FromLsn: to, ToLsn: to})
		cancel()
		if err == nil {
			from = max(from, r.GetFirstLsn())
		}
	}
	if to < from {
		fmt.Fprintf(c.out, "nothing to compare: the nodes hold no common LSN range (first %d, last %d)\n", from, to)
		return nil
	}
	sums := map[int32]uint64{}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tSIDECAR\tFROM\tTO\tCHECKSUM\n")
	var failed []string
	for _, id := range ids {
		a, err := c.admin(peers[id])
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, max(c.timeout, time.Minute))
		r, err := a.Checksum(cctx, &adminv1.ChecksumRequest{FromLsn: from, ToLsn: to})
		cancel()
		if err != nil {
			failed = append(failed, fmt.Sprintf("node %d: %v", id, err))
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\terror\n", id, peers[id], from, to)
			continue
		}
		sums[id] = r.GetChecksum()
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%016x\n", id, peers[id], from, to, r.GetChecksum())
	}
	tw.Flush()
	if len(failed) > 0 {
		return fmt.Errorf("checksum failed: %s", strings.Join(failed, "; "))
	}
	distinct := map[uint64]bool{}
	for _, s := range sums {
		distinct[s] = true
	}
	if len(distinct) > 1 {
		fmt.Fprintf(c.out, "DIFFERENT: the nodes' WALs differ in LSNs %d..%d\n", from, to)
		lsn, groups, err := c.firstDifference(ctx, peers, ids, from, to)
		if err != nil {
			return fmt.Errorf("%w over LSNs %d..%d (looking for the first entry that differs: %v)", errDiffer, from, to, err)
		}
		versions := "node(s) " + joinIDs(groups[0]) + " hold one version of it"
		for _, g := range groups[1:] {
			versions += ", node(s) " + joinIDs(g) + " another"
		}
		fmt.Fprintf(c.out, "the first entry that differs is LSN %d: %s\n", lsn, versions)
		fmt.Fprintf(c.out, "see it on each node with: tandemctl wal --data-dir BROKER-DATA-DIR --from %d --to %d\n", lsn, lsn)
		return fmt.Errorf("%w from LSN %d (compared LSNs %d..%d)", errDiffer, lsn, from, to)
	}
	fmt.Fprintf(c.out, "identical: %d nodes, LSNs %d..%d\n", len(sums), from, to)
	return nil
}

// firstDifference finds the lowest LSN in [from, to] whose entry is not
// the same on every node, knowing that one is, by bisection with the
// Checksum RPC: the first difference is in the lower half when the nodes'
// checksums of that half differ, and in the upper half otherwise. The
// nodes read about as many entries as one checksum of the whole range. It
// returns the nodes grouped by the version of that entry they hold.
func (c *client) firstDifference(ctx context.Context, peers map[int32]string, ids []int32, from, to uint64) (uint64, [][]int32, error) {
	sums := func(lo, hi uint64) (map[uint64][]int32, error) {
		by := map[uint64][]int32{}
		for _, id := range ids {
			a, err := c.admin(peers[id])
			if err != nil {
				return nil, err
			}
			cctx, cancel := context.WithTimeout(ctx, max(c.timeout, time.Minute))
			r, err := a.Checksum(cctx, &adminv1.ChecksumRequest{FromLsn: lo, ToLsn: hi})
			cancel()
			if err != nil {
				return nil, fmt.Errorf("node %d: %w", id, err)
			}
			by[r.GetChecksum()] = append(by[r.GetChecksum()], id)
		}
		return by, nil
	}
	lo, hi := from, to
	for lo < hi {
		mid := lo + (hi-lo)/2
		by, err := sums(lo, mid)
		if err != nil {
			return 0, nil, err
		}
		if len(by) > 1 {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	by, err := sums(lo, lo)
	if err != nil {
		return 0, nil, err
	}
	groups := make([][]int32, 0, len(by))
	for _, g := range by {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b []int32) int { return int(a[0] - b[0]) })
	return lo, groups, nil
}

// replicaState names where a follower's stream stands, as PostgreSQL's
// pg_stat_replication.state does. A sidecar from before Replica.state does
// not report it: then a connected follower with entries to go counts as
// catching up.
func replicaState(r *adminv1.Replica) string {
	switch r.GetState() {
	case adminv1.ReplicaState_REPLICA_STATE_DISCONNECTED:
		return "disconnected"
	case adminv1.ReplicaState_REPLICA_STATE_CATCHUP:
		return "catchup"
	case adminv1.ReplicaState_REPLICA_STATE_STREAMING:
		return "streaming"
	}
	switch {
	case !r.GetConnected():
		return "disconnected"
	case r.GetLagEntries() > 0:
		return "catchup"
	default:
		return "streaming"
	}
}
