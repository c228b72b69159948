package e2e

// Helpers for the Docker tests (docker_cluster_test.go): they build the
// images with scripts/images.sh, run deploy/compose/compose.yaml under a
// unique project name with Docker Compose (v2 `docker compose` or v1
// `docker-compose`, whichever is installed), and drive the cluster with
// kafka-python from the host and with tandemctl and grpc-health-probe
// inside the sidecar containers. Every cluster is removed with its volumes
// (`down -v`) when its test ends; a failing test prints the containers'
// logs first.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
)

const (
	// dockerImageTag is the tag the tests build and run, so that they never
	// replace an operator's :dev images.
	dockerImageTag = "e2e"
	// dockerComposeFile is the compose file under test, from the repository root.
	dockerComposeFile = "deploy/compose/compose.yaml"
	// dockerSidecarAddr is where each sidecar serves gRPC inside its container.
	dockerSidecarAddr = "127.0.0.1:9192"
	// dockerProbe and dockerTandemctl are the binaries in the sidecar image.
	dockerProbe     = "/usr/local/bin/grpc-health-probe"
	dockerTandemctl = "/usr/local/bin/tandemctl"
	// dockerPython has the Debian python3-kafka package.
	dockerPython = "/usr/bin/python3"
	// dockerProbeNotServing is grpc-health-probe's exit status for a service that
	// answered NOT_SERVING (0 is SERVING; 2 and 3 are connection and RPC
	// failures).
	dockerProbeNotServing = 4
)

// dockerClusterEnv are the compose settings the tests use: heartbeats,
// peer timeout, lag bound and health interval short enough that a lost
// peer is noticed in seconds.
var dockerClusterEnv = []string{
	"TANDEM_IMAGE_TAG=" + dockerImageTag,
	"TANDEM_HEALTH_INTERVAL=1s",
	"TANDEM_HEARTBEAT_INTERVAL=500ms",
	"TANDEM_PEER_TIMEOUT=3s",
	"TANDEM_REPLICA_LAG_TIME_MAX=3s",
	"TANDEM_LEADER=1",
}

var (
	dockerOnce      sync.Once
	dockerErr       error    // why Docker cannot be used (nil when it can)
	dockerComposeCm []string // "docker compose" or "docker-compose"
	dockerImagesErr error    // scripts/images.sh failure
)

// requireDocker checks that the Docker engine and Compose are usable and
// that the images are built (once per test binary), failing the test with
// a clear message when they are not. The Docker tests never skip: CI has
// Docker.
func requireDocker(t *testing.T) []string {
	t.Helper()
	root := testutil.RepoRoot(t)
	dockerOnce.Do(func() {
		if _, err := exec.LookPath("docker"); err != nil {
			dockerErr = fmt.Errorf("the docker CLI is not installed (%v); the Docker tests need a Docker engine with Compose", err)
			return
		}
		if out, err := dockerRunCmd(30*time.Second, nil, "", "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
			dockerErr = fmt.Errorf("cannot reach the Docker engine (is dockerd running and may this user use it?): %v\n%s", err, out)
			return
		}
		if _, err := dockerRunCmd(30*time.Second, nil, "", "docker", "compose", "version"); err == nil {
			dockerComposeCm = []string{"docker", "compose"}
		} else if _, err := dockerRunCmd(30*time.Second, nil, "", "docker-compose", "version"); err == nil {
			dockerComposeCm = []string{"docker-compose"}
		} else {
			dockerErr = errors.New("neither `docker compose` (v2) nor `docker-compose` (v1) works; install Docker Compose")
			return
		}
		env := append(os.Environ(), "TANDEM_IMAGE_TAG="+dockerImageTag)
		if out, err := dockerRunCmd(10*time.Minute, env, root, "bash", "scripts/images.sh"); err != nil {
			dockerImagesErr = fmt.Errorf("scripts/images.sh failed: %v\n%s", err, out)
		}
	})
	if dockerErr != nil {
		t.Fatalf("Docker test: %v", dockerErr)
	}
	if dockerImagesErr != nil {
		t.Fatalf("Docker test: %v", dockerImagesErr)
	}
	return dockerComposeCm
}

// dockerRunCmd runs a command and returns its combined output.
func dockerRunCmd(timeout time.Duration, env []string, dir string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: timed out after %v", strings.Join(argv, " "), timeout)
	}
	return out.String(), err
}

// composeCluster is one running copy of deploy/compose/compose.yaml.
type composeCluster struct {
	t          *testing.T
	root       string
	cli        []string
	project    string
	env        []string
	kafkaPorts [4]int // index = node id (1..3)
	host       string // advertised host: reachable from the host and from the containers
	mu         sync.Mutex
	ids        map[string]string // service -> container id
}

// startComposeCluster brings up the three pairs under a unique project
// name, on free host ports, and waits until every sidecar is healthy
// (Docker's healthcheck: grpc-health-probe on the readiness service).
func startComposeCluster(t *testing.T) *composeCluster {
	t.Helper()
	cli := requireDocker(t)
	c := &composeCluster{t: t, root: testutil.RepoRoot(t), cli: cli, ids: map[string]string{}}
	c.project = dockerProjectName(t)
	c.env = append(os.Environ(), dockerClusterEnv...)
	c.env = append(c.env, "TANDEM_CLUSTER_ID="+c.project)
	c.host = dockerHostAddr(t)
	c.env = append(c.env, "TANDEM_ADVERTISE_HOST="+c.host)
	for i := 1; i <= 3; i++ {
		c.kafkaPorts[i] = testutil.FreePort(t)
		c.env = append(c.env, fmt.Sprintf("TANDEM_KAFKA_PORT_%d=%d", i, c.kafkaPorts[i]))
	}
	t.Cleanup(c.down)
	t.Logf("compose project %s, Kafka on %s:%d,%d,%d", c.project, c.host, c.kafkaPorts[1], c.kafkaPorts[2], c.kafkaPorts[3])
	c.mustCompose(2*time.Minute, "up", "-d")
	c.waitHealth(60*time.Second, "healthy", "sidecar-1", "sidecar-2", "sidecar-3")
	return c
}

var dockerProjectChars = regexp.MustCompile(`[^a-z0-9]+`)

// dockerProjectName is unique per test run: tandem-e2e-<test>-<random>.
func dockerProjectName(t *testing.T) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := strings.Trim(dockerProjectChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 30 {
		name = name[:30]
	}
	return "tandem-e2e-" + name + "-" + hex.EncodeToString(b)
}

// compose runs a Compose subcommand for this project.
func (c *composeCluster) compose(timeout time.Duration, args ...string) (string, error) {
	argv := append(slices.Clone(c.cli), "-f", filepath.Join(c.root, dockerComposeFile), "-p", c.project)
	argv = append(argv, args...)
	out, err := dockerRunCmd(timeout, c.env, c.root, argv...)
	if err != nil {
		return out, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out, nil
}

func (c *composeCluster) mustCompose(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.compose(timeout, args...)
	if err != nil {
		c.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// down prints the logs when the test failed, then removes the containers,
// the network and the volumes.
func (c *composeCluster) down() {
	if c.t.Failed() || os.Getenv("TANDEM_TEST_VERBOSE") != "" {
		out, _ := c.compose(time.Minute, "logs", "--no-color", "--tail=60")
		c.t.Logf("logs of compose project %s:\n%s", c.project, out)
	}
	if out, err := c.compose(2*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		c.t.Errorf("removing compose project %s: %v\n%s", c.project, err, out)
	}
}

// container returns the id of a service's container.
func (c *composeCluster) container(service string) string {
	c.t.Helper()
	c.mu.Lock()
	id := c.ids[service]
	c.mu.Unlock()
	if id != "" {
		return id
	}
	out := strings.TrimSpace(c.mustCompose(time.Minute, "ps", "-q", service))
	if out == "" || strings.Contains(out, "\n") {
		c.t.Fatalf("compose ps -q %s: want one container id, got %q", service, out)
	}
	c.mu.Lock()
	c.ids[service] = out
	c.mu.Unlock()
	return out
}

// docker runs a docker subcommand.
func (c *composeCluster) docker(timeout time.Duration, args ...string) (string, error) {
	out, err := dockerRunCmd(timeout, c.env, c.root, append([]string{"docker"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

func (c *composeCluster) mustDocker(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.docker(timeout, args...)
	if err != nil {
		c.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// health returns Docker's health status of a service's container
// (starting, healthy, unhealthy).
func (c *composeCluster) health(service string) (string, error) {
	out, err := c.docker(30*time.Second, "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", c.container(service))
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	state, health, _ := strings.Cut(strings.TrimSpace(out), " ")
	if state != "running" {
		return state, nil
	}
	return health, nil
}

// waitHealth waits until every service's health status is want.
func (c *composeCluster) waitHealth(timeout time.Duration, want string, services ...string) {
	c.t.Helper()
	testutil.Eventually(c.t, timeout, func() error {
		for _, s := range services {
			h, err := c.health(s)
			if err != nil {
				return err
			}
			if h != want {
				return fmt.Errorf("%s is %q, want %q", s, h, want)
			}
		}
		return nil
	})
}

// probe runs grpc-health-probe inside a sidecar's container against its
// own port and returns the probe's exit status (0 SERVING, 4 NOT_SERVING).
// service "" is liveness.
func (c *composeCluster) probe(sidecarService, service string) (int, string) {
	c.t.Helper()
	args := []string{"exec", c.container(sidecarService), dockerProbe, "-addr=" + dockerSidecarAddr,
		"-connect-timeout=2s", "-rpc-timeout=2s"}
	if service != "" {
		args = append(args, "-service="+service)
	}
	out, err := c.docker(30*time.Second, args...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out
	case errors.As(err, &ee):
		return ee.ExitCode(), out
	}
	c.t.Fatalf("running grpc-health-probe in %s: %v\n%s", sidecarService, err, out)
	return -1, ""
}

// tandemctl runs tandemctl inside node's sidecar container against that
// sidecar.
func (c *composeCluster) tandemctl(node int, args ...string) (string, error) {
	c.t.Helper()
	argv := append([]string{"exec", c.container(dockerSidecar(node)), dockerTandemctl, "--sidecar", dockerSidecarAddr}, args...)
	return c.docker(time.Minute, argv...)
}

// status is `tandemctl status --json` of a node, decoded.
func (c *composeCluster) status(node int) (*adminv1.StatusResponse, error) {
	c.t.Helper()
	out, err := c.tandemctl(node, "status", "--json")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	var st adminv1.StatusResponse
	if err := protojson.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("tandemctl status --json on node %d printed no StatusResponse (%v): %s", node, err, out)
	}
	return &st, nil
}

// waitInSync waits until leader reports every other running node as a
// connected, in-sync replica that has flushed everything, and each of those
// nodes reports itself a ready follower of leader at the leader's last LSN.
// It returns the leader's final status.
func (c *composeCluster) waitInSync(timeout time.Duration, leader int, followers ...int) *adminv1.StatusResponse {
	c.t.Helper()
	var last *adminv1.StatusResponse
	testutil.Eventually(c.t, timeout, func() error {
		st, err := c.status(leader)
		if err != nil {
			return err
		}
		if st.GetRole() != adminv1.Role_ROLE_LEADER || st.GetLeaderId() != int32(leader) {
			return fmt.Errorf("node %d is %s with leader %d, want the leader", leader, st.GetRole(), st.GetLeaderId())
		}
		if !st.GetReady() {
			return fmt.Errorf("leader %d not ready: %s", leader, st.GetNotReadyReason())
		}
		for _, f := range followers {
			if !slices.Contains(st.GetIsr(), int32(f)) {
				return fmt.Errorf("node %d not in the leader's ISR %v", f, st.GetIsr())
			}
			var rep *adminv1.Replica
			for _, r := range st.GetReplicas() {
				if r.GetNodeId() == int32(f) {
					rep = r
				}
			}
			if rep == nil || !rep.GetConnected() || !rep.GetInIsr() || rep.GetFlushedLsn() != st.GetLastLsn() {
				return fmt.Errorf("leader's view of node %d: %v (leader last LSN %d)", f, rep, st.GetLastLsn())
			}
			fs, err := c.status(f)
			if err != nil {
				return err
			}
			if fs.GetRole() != adminv1.Role_ROLE_FOLLOWER || fs.GetLeaderId() != int32(leader) ||
				!fs.GetStreaming() || !fs.GetReady() || fs.GetLastLsn() != st.GetLastLsn() {
				return fmt.Errorf("node %d: role %s leader %d streaming %v ready %v (%s) last LSN %d, leader's %d",
					f, fs.GetRole(), fs.GetLeaderId(), fs.GetStreaming(), fs.GetReady(), fs.GetNotReadyReason(),
					fs.GetLastLsn(), st.GetLastLsn())
			}
		}
		last = st
		return nil
	})
	return last
}

func dockerBroker(node int) string  { return "broker-" + strconv.Itoa(node) }
func dockerSidecar(node int) string { return "sidecar-" + strconv.Itoa(node) }

// kafkaAddr is node's Kafka listener as published on the host.
func (c *composeCluster) kafkaAddr(node int) string {
	return net.JoinHostPort(c.host, strconv.Itoa(c.kafkaPorts[node]))
}

// dockerHostAddr returns an IPv4 address of this machine that both the
// machine itself and containers on a compose network reach it on: the
// address of Docker's docker0 bridge. The brokers advertise it, so that a
// follower broker can forward a topic creation to the leader's advertised
// address from inside its container (127.0.0.1 there is the container
// itself), while kafka-python on the host uses the same published ports.
func dockerHostAddr(t *testing.T) string {
	t.Helper()
	if ifi, err := net.InterfaceByName("docker0"); err == nil {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	out, err := dockerRunCmd(30*time.Second, nil, "", "docker", "network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}")
	if f := strings.Fields(out); err == nil && len(f) > 0 {
		return f[0]
	}
	t.Fatalf("Docker test: cannot find the docker0 bridge address to advertise (%v %s); the Docker tests expect a Linux Docker host", err, out)
	return ""
}

// kill SIGKILLs both containers of node.
func (c *composeCluster) kill(node int) {
	c.t.Helper()
	c.mustDocker(time.Minute, "kill", c.container(dockerBroker(node)), c.container(dockerSidecar(node)))
}

// start starts node's containers again (same volumes, same command).
func (c *composeCluster) start(node int) {
	c.t.Helper()
	c.mustDocker(time.Minute, "start", c.container(dockerSidecar(node)), c.container(dockerBroker(node)))
}

// network returns the compose network a container is attached to.
func (c *composeCluster) network(service string) string {
	c.t.Helper()
	out := strings.Fields(c.mustDocker(30*time.Second, "inspect", "-f",
		"{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", c.container(service)))
	if len(out) != 1 {
		c.t.Fatalf("%s is attached to networks %v, want exactly one", service, out)
	}
	return out[0]
}

// dockerProduceScript produces count messages PREFIX0..PREFIXn-1 with
// acks=all and prints {"sent": n}.
const dockerProduceScript = `
import json, sys
from kafka import KafkaProducer
boot, topic, count, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
p = KafkaProducer(bootstrap_servers=[boot], client_id="e2e-docker-producer", acks="all",
                  retries=3, linger_ms=5, request_timeout_ms=15000, max_block_ms=30000)
futures = [p.send(topic, value=("%s%d" % (prefix, i)).encode()) for i in range(count)]
p.flush(timeout=60)
for f in futures:
    f.get(timeout=30)
p.close(timeout=10)
json.dump({"sent": len(futures)}, sys.stdout)
`

// dockerConsumeScript reads every partition of a topic from the beginning
// until it has count messages or 40 s pass, and prints {"values": [...]}.
const dockerConsumeScript = `
import json, sys, time
from kafka import KafkaConsumer, TopicPartition
boot, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 40
c = KafkaConsumer(bootstrap_servers=[boot], client_id="e2e-docker-consumer", enable_auto_commit=False,
                  auto_offset_reset="earliest", request_timeout_ms=20000, fetch_max_wait_ms=200)
parts = None
while parts is None and time.time() < deadline:
    parts = c.partitions_for_topic(topic)
    if parts is None:
        time.sleep(0.2)
if parts is None:
    raise SystemExit("topic %s has no partitions in the metadata" % topic)
tps = [TopicPartition(topic, p) for p in sorted(parts)]
c.assign(tps)
c.seek_to_beginning(*tps)
values = []
while len(values) < count and time.time() < deadline:
    for tp, msgs in c.poll(timeout_ms=200).items():
        values.extend(m.value.decode() for m in msgs)
c.close(autocommit=False)
json.dump({"values": values}, sys.stdout)
`

// runPython runs a kafka-python script and decodes the JSON it prints.
func (c *composeCluster) runPython(script string, out any, args ...string) {
	c.t.Helper()
	argv := append([]string{dockerPython, "-c", script}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("kafka-python %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), dockerTail(stderr.String(), 40))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		c.t.Fatalf("kafka-python %s printed no JSON (%v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), dockerTail(stderr.String(), 40))
	}
}

// produce sends PREFIX0..PREFIX<count-1> through node's published Kafka port.
func (c *composeCluster) produce(node int, topic string, count int, prefix string) []string {
	c.t.Helper()
	var res struct {
		Sent int `json:"sent"`
	}
	c.runPython(dockerProduceScript, &res, c.kafkaAddr(node), topic, strconv.Itoa(count), prefix)
	if res.Sent != count {
		c.t.Fatalf("kafka-python sent %d messages through node %d, want %d", res.Sent, node, count)
	}
	want := make([]string, count)
	for i := range want {
		want[i] = prefix + strconv.Itoa(i)
	}
	return want
}

// consume reads the topic from the beginning, bootstrapping from node, and
// fails the test unless it holds exactly the values want (each once).
func (c *composeCluster) consume(node int, topic string, want []string) {
	c.t.Helper()
	var res struct {
		Values []string `json:"values"`
	}
	c.runPython(dockerConsumeScript, &res, c.kafkaAddr(node), topic, strconv.Itoa(len(want)))
	got := slices.Clone(res.Values)
	w := slices.Clone(want)
	slices.Sort(got)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		c.t.Fatalf("consumed %d values through node %d, want %d:\ngot  %s\nwant %s", len(got), node, len(w), dockerAbbrev(got), dockerAbbrev(w))
	}
}

func dockerAbbrev(vs []string) string {
	if len(vs) <= 12 {
		return fmt.Sprint(vs)
	}
	return fmt.Sprintf("%v ... %v", vs[:6], vs[len(vs)-6:])
}

func dockerTail(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// dockerReadiness is the health service name of DESIGN.md decision 10.
const dockerReadiness = sidecar.ReadinessService
