package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-io/tandem/internal/certs"
)

// certsCmd writes a CA, node certificates and an admin client certificate
// for mutual TLS between sidecars (tandemctl certs --out DIR --nodes 1,2,3).
// An existing ca.crt/ca.key in DIR is reused, so running it again with a new
// node id adds that node to the same cluster.
func certsCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	dir := fs.String("out", "", "directory to write ca.crt, ca.key, node-N.crt/.key, admin.crt/.key (required)")
	nodes := fs.String("nodes", "1,2,3", "node ids to issue certificates for")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "DNS names and IP addresses put in every node certificate")
	nodeHosts := fs.String("node-hosts", "", "extra names per node: 1=node-1.example,2=node-2.example (';' separates several names of one node)")
	shared := fs.Bool("shared", false, "also write shared.crt/.key, one certificate for every node (for scripts/cluster.sh; no per-node identity)")
	validFor := fs.Duration("valid-for", certs.DefaultValidity, "validity of the CA and the certificates")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return usageError{"certs needs --out DIR and no arguments"}
	}
	o := certs.SetOptions{Dir: *dir, ValidFor: *validFor, NodeHosts: map[int32][]string{}, Shared: *shared}
	for _, s := range splitList(*nodes, ",") {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n <= 0 {
			return usageError{fmt.Sprintf("--nodes: %q is not a node id", s)}
		}
		o.Nodes = append(o.Nodes, int32(n))
	}
	o.Hosts = splitList(*hosts, ",")
	for _, part := range splitList(*nodeHosts, ",") {
		id, names, ok := strings.Cut(part, "=")
		n, err := strconv.ParseInt(id, 10, 32)
		if !ok || err != nil || n <= 0 {
			return usageError{fmt.Sprintf("--node-hosts: %q is not ID=NAME", part)}
		}
		o.NodeHosts[int32(n)] = append(o.NodeHosts[int32(n)], splitList(names, ";")...)
	}
	f, err := certs.WriteNodeSet(o)
	if err != nil {
		return err
	}
	if f.Reused {
		fmt.Fprintf(out, "reused the CA in %s\n", *dir)
	} else {
		fmt.Fprintf(out, "new CA %s (keep ca.key private; it is only needed to issue more certificates)\n", f.CA)
	}
	for _, id := range o.Nodes {
		fmt.Fprintf(out, "node %d: --tls-cert %s --tls-key %s --tls-ca %s\n", id, f.NodeCrt[id], f.NodeKey[id], f.CA)
	}
	if *shared {
		fmt.Fprintf(out, "every node: --tls-cert %s --tls-key %s --tls-ca %s\n", f.Shared[0], f.Shared[1], f.CA)
	}
	fmt.Fprintf(out, "tandemctl: --tls-cert %s --tls-key %s --tls-ca %s\n", f.Admin[0], f.Admin[1], f.CA)
	fmt.Fprintf(out, "valid until %s\n", time.Now().Add(*validFor).Format(time.DateOnly))
	return nil
}

func splitList(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
