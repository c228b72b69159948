package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tandem-io/tandem/sidecar"
)

// forgetISRCmd implements `tandemctl forget-isr`: delete the ISR a leader
// published in etcd, so that every running node may be elected again
// (docs/operations.md, "What happens when a node dies": a follower that
// refuses to follow, logging `refusing to drop entries that were
// committed`). It talks to etcd, not to a sidecar.
func forgetISRCmd(ctx context.Context, args []string, out io.Writer, timeout time.Duration) error {
	fs := flag.NewFlagSet("forget-isr", flag.ContinueOnError)
	endpoints := fs.String("etcd-endpoints", "", "etcd endpoints, comma separated, as given to the sidecars (required)")
	clusterID := fs.String("cluster-id", "", "the sidecars' --cluster-id (the key prefix is then /tandem/<cluster-id>/)")
	prefix := fs.String("etcd-prefix", "", "the sidecars' --etcd-prefix, if they were given one (instead of --cluster-id)")
	wait := fs.Duration("wait", 15*time.Second, "how long to wait for the leader that published the ISR to leave the election (a killed sidecar's lease runs out after its --lease-ttl)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	eps := splitList(*endpoints, ",")
	switch {
	case len(eps) == 0:
		return usageError{"forget-isr needs --etcd-endpoints"}
	case (*clusterID == "") == (*prefix == ""):
		return usageError{"forget-isr needs exactly one of --cluster-id and --etcd-prefix"}
	case *wait < 0:
		return usageError{"forget-isr: --wait must be >= 0"}
	}
	p := *prefix
	if p == "" {
		p = sidecar.DefaultEtcdPrefix(*clusterID)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+*wait)
	defer cancel()
	f, err := sidecar.ForgetISR(ctx, eps, p, *wait)
	if err != nil {
		return err
	}
	switch {
	case !f.Found:
		fmt.Fprintf(out, "no ISR published at %s: nothing to delete\n", f.Key)
	case f.Raw != "":
		fmt.Fprintf(out, "deleted %s (it held %q, not an ISR this tandemctl reads)\n", f.Key, f.Raw)
	default:
		fmt.Fprintf(out, "deleted %s: node %d's ISR of epoch %d, %v; every running node may now be elected, and a winner that finds a peer holding more of the log resigns to it\n",
			f.Key, f.LeaderID, f.Epoch, f.ISR)
	}
	return nil
}
