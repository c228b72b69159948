package testutil

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// A Network is a private IPv4 network of hosts for tests of network
// partitions: every host is a Linux network namespace of its own, with one
// address, and all of them are joined by a bridge in a further namespace
// (the hub). The test process reaches every host through a veth pair into
// the hub, so clients in the test keep reaching every host while a
// partition separates hosts from each other.
//
// Cut drops every packet between two hosts, both ways, with nftables rules
// inside each of the two namespaces: established TCP connections go silent
// (no reset, no error), as when a switch or a cable fails, and new
// connections time out. Heal removes the rules.
//
// It needs root, iproute2 (ip) and nftables (nft); scripts/test.sh installs
// both. The namespaces are removed when the test ends, and those left by a
// test process that died are removed by the next NewNetwork.
type Network struct {
	t      testing.TB
	base   string // prefix of every namespace and the root veth's name
	prefix string // the /24's first three octets, e.g. "10.241.17."
	hosts  []*Host

	mu  sync.Mutex
	cut map[[2]string]bool // host pairs (sorted names) now cut
}

// A Host is one namespace of a Network.
type Host struct {
	Name string // as given to NewNetwork
	NS   string // the network namespace ("ip netns exec NS ...")
	IP   string // its address on the network
}

// Addr is host:port on h.
func (h *Host) Addr(port int) string { return net.JoinHostPort(h.IP, strconv.Itoa(port)) }

// Wrap runs cfg's program inside h's namespace (through "ip netns exec",
// which execs the program: the process Start returns is the program itself,
// so Kill and Pause reach it).
func (h *Host) Wrap(cfg ProcessConfig) ProcessConfig {
	if cfg.Name == "" {
		cfg.Name = h.Name + "-" + baseName(cfg.Path)
	}
	cfg.Args = append([]string{"netns", "exec", h.NS, cfg.Path}, cfg.Args...)
	cfg.Path = ipPath()
	return cfg
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func ipPath() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	return "/usr/sbin/ip"
}

// nsPrefix starts the name of every namespace a Network makes; the test
// process's pid follows it, so that stale ones can be found.
const nsPrefix = "tdmt"

var networkSeq struct {
	sync.Mutex
	n int
}

// NewNetwork makes a network with one host for each name; host i (from 0)
// gets address .i+1 of a /24 in 10.241.0.0/16 that no interface of this
// machine uses. The test fails if the network cannot be made (not root, or
// ip or nft missing).
func NewNetwork(t testing.TB, names ...string) *Network {
	t.Helper()
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("testutil: NewNetwork needs %s (iproute2, nftables; scripts/test.sh installs them): %v", tool, err)
		}
	}
	removeStaleNamespaces(t)
	networkSeq.Lock()
	networkSeq.n++
	seq := networkSeq.n
	networkSeq.Unlock()
	n := &Network{
		t:    t,
		base: fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), seq),
		cut:  map[[2]string]bool{},
	}
	n.prefix = freeSubnet(t)
	t.Cleanup(n.remove)

	hub := n.base + "-hub"
	n.run("ip", "netns", "add", hub)
	n.run("ip", "-n", hub, "link", "set", "lo", "up")
	n.run("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
	n.run("ip", "-n", hub, "link", "set", "br0", "up")
	// The test process's way in: a veth whose other end is on the bridge.
	n.run("ip", "link", "add", n.base, "type", "veth", "peer", "name", "root", "netns", hub)
	n.run("ip", "-n", hub, "link", "set", "root", "master", "br0", "up")
	n.run("ip", "addr", "add", n.prefix+"254/24", "dev", n.base)
	n.run("ip", "link", "set", n.base, "up")

	for i, name := range names {
		h := &Host{Name: name, NS: fmt.Sprintf("%s-%d", n.base, i+1), IP: n.prefix + strconv.Itoa(i+1)}
		port := fmt.Sprintf("h%d", i+1)
		n.run("ip", "netns", "add", h.NS)
		n.run("ip", "-n", h.NS, "link", "set", "lo", "up")
		n.run("ip", "link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", port, "netns", hub)
		n.run("ip", "-n", hub, "link", "set", port, "master", "br0", "up")
		n.run("ip", "-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
		n.run("ip", "-n", h.NS, "link", "set", "eth0", "up")
		// The set "cut" holds the addresses this host neither sends to nor
		// hears from.
		n.runStdin(`table inet tandem {
	set cut { type ipv4_addr; }
	chain input { type filter hook input priority 0; policy accept; ip saddr @cut drop; }
	chain output { type filter hook output priority 0; policy accept; ip daddr @cut drop; }
}
`, "ip", "netns", "exec", h.NS, "nft", "-f", "-")
		n.hosts = append(n.hosts, h)
	}
	return n
}

// Host is the host of that name; the test fails if there is none.
func (n *Network) Host(name string) *Host {
	for _, h := range n.hosts {
		if h.Name == name {
			return h
		}
	}
	n.t.Fatalf("testutil: no host %q in the network", name)
	return nil
}

// Cut drops every packet between a and b, both ways, until Heal.
func (n *Network) Cut(a, b *Host) { n.setCut(a, b, true) }

// Heal undoes Cut(a, b).
func (n *Network) Heal(a, b *Host) { n.setCut(a, b, false) }

// Isolate cuts h from every other host (the test process still reaches it).
func (n *Network) Isolate(h *Host) {
	for _, o := range n.hosts {
		if o != h {
			n.Cut(h, o)
		}
	}
}

// HealAll undoes every cut.
func (n *Network) HealAll() {
	for _, a := range n.hosts {
		for _, b := range n.hosts {
			if a.Name < b.Name {
				n.Heal(a, b)
			}
		}
	}
}

func (n *Network) setCut(a, b *Host, on bool) {
	n.t.Helper()
	key := [2]string{a.Name, b.Name}
	if key[1] < key[0] {
		key[0], key[1] = key[1], key[0]
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut[key] == on {
		return
	}
	verb := "add"
	if !on {
		verb = "delete"
	}
	for _, p := range [][2]*Host{{a, b}, {b, a}} {
		n.run("ip", "netns", "exec", p[0].NS, "nft", verb, "element", "inet", "tandem", "cut", "{", p[1].IP, "}")
	}
	n.cut[key] = on
}

func (n *Network) run(args ...string) { n.t.Helper(); n.runStdin("", args...) }

func (n *Network) runStdin(stdin string, args ...string) {
	n.t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("testutil: network: %s: %v: %s (needs root)", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// remove deletes the namespaces (their interfaces go with them) and the
// root veth. Register processes running in the hosts after NewNetwork, so
// that they are stopped first.
func (n *Network) remove() {
	for _, h := range n.hosts {
		exec.Command("ip", "netns", "del", h.NS).Run()
	}
	exec.Command("ip", "netns", "del", n.base+"-hub").Run()
	exec.Command("ip", "link", "del", n.base).Run() // usually gone with its peer already
}

// freeSubnet picks a /24 of 10.241.0.0/16 that no address of this machine
// is in, and returns its first three octets with a trailing dot.
func freeSubnet(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("ip", "-4", "-o", "addr").Output()
	if err != nil {
		t.Fatalf("testutil: ip addr: %v", err)
	}
	for range 100 {
		p := fmt.Sprintf("10.241.%d.", 1+rand.IntN(250))
		if !strings.Contains(string(out), " "+p) {
			return p
		}
	}
	t.Fatal("testutil: no free /24 in 10.241.0.0/16")
	return ""
}

// removeStaleNamespaces deletes the namespaces (and root veths) of networks
// whose test process is gone, e.g. after a test binary was killed.
func removeStaleNamespaces(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test is still running
		}
		t.Logf("testutil: removing network namespace %s left by process %d", name, pid)
		exec.Command("ip", "netns", "del", name).Run()
		if strings.HasSuffix(name, "-hub") {
			exec.Command("ip", "link", "del", strings.TrimSuffix(name, "-hub")).Run()
		}
	}
}
