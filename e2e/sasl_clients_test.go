package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// TestKafkaClientsOverSASL: a three-node cluster whose brokers require a
// SASL login (--sasl-users, a users file made with `tandemctl sasl-user`;
// the followers log in to the leader as user "broker" to have topics
// created). kcat (SCRAM-SHA-512, through a follower, auto-creating the
// topic), kafka-python (PLAIN and SCRAM-SHA-256, SASL handshake v0 with
// bare tokens), sarama (PLAIN) and franz-go (SCRAM-SHA-512) write; franz-go
// and kcat read everything back. A wrong password and a client without
// SASL are refused.
func TestKafkaClientsOverSASL(t *testing.T) {
	c := startCluster(t, clusterOpts{brokerFlags: saslBrokerFlags(t, map[string]string{"alice": "wonderland"})})
	const topic = "over-sasl"
	kcatSASL := func(mech, pw string) []string {
		return []string{"-X", "security.protocol=sasl_plaintext", "-X", "sasl.mechanisms=" + mech,
			"-X", "sasl.username=alice", "-X", "sasl.password=" + pw}
	}

	// kcat through node 2, a follower: the topic is created through it.
	kcatVals := seqValues("kcat-", 100)
	kcat(t, strings.Join(kcatVals, "\n")+"\n", 60*time.Second,
		append([]string{"-P", "-b", c.node(2).kafka, "-t", topic}, kcatSASL("SCRAM-SHA-512", "wonderland")...)...)

	var want []string
	want = append(want, kcatVals...)
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256"} {
		var res pyProduceResult
		runScript(t, 90*time.Second, &res, python, clientScript(t, "kafka_python_produce.py"),
			"--bootstrap", c.node(3).kafka, "--topic", topic, "--count", "50", "--acks", "all", "--prefix", "python-"+mech+"-",
			"--sasl-mechanism", mech, "--sasl-user", "alice", "--sasl-password", "wonderland")
		if res.Sent != 50 {
			t.Fatalf("kafka-python %s sent %d of 50", mech, res.Sent)
		}
		want = append(want, seqValues("python-"+mech+"-", 50)...)
	}

	scfg := saramaConfig()
	scfg.Net.SASL.Enable, scfg.Net.SASL.Mechanism = true, sarama.SASLTypePlaintext
	scfg.Net.SASL.User, scfg.Net.SASL.Password = "alice", "wonderland"
	saramaVals := seqValues("sarama-", 50)
	saramaSend(t, c.node(1).kafka, scfg, topic, saramaVals)
	want = append(want, saramaVals...)

	readBackAll(t, c.node(3).kafka, topic, want, kgo.SASL(scram.Auth{User: "alice", Pass: "wonderland"}.AsSha512Mechanism()))
	out := kcat(t, "", 60*time.Second, append([]string{"-C", "-b", c.node(2).kafka, "-t", topic, "-o", "beginning", "-e", "-q"},
		kcatSASL("PLAIN", "wonderland")...)...)
	if n := len(strings.Fields(out)); n != len(want) {
		t.Fatalf("kcat read %d records, want %d", n, len(want))
	}

	// Refused: a wrong password, and no SASL at all.
	if err := kcatErr("", 20*time.Second, append([]string{"-L", "-b", c.node(1).kafka, "-m", "5"},
		kcatSASL("SCRAM-SHA-256", "wrong")...)...); err == nil {
		t.Fatal("kcat with a wrong password listed the cluster")
	}
	if err := kcatErr("", 20*time.Second, "-L", "-b", c.node(1).kafka, "-m", "5"); err == nil {
		t.Fatal("kcat without SASL listed the cluster")
	}
	c.waitInSync(30 * time.Second)
	c.mustVerify(1)
}

// saslBrokerFlags writes a users file with these users (password by name)
// and user "broker", with `tandemctl sasl-user`, and returns the broker
// flags that require SASL logins and log followers in to the leader as
// "broker".
func saslBrokerFlags(t *testing.T, users map[string]string) []string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "users.json")
	const brokerPassword = "inter-broker-secret"
	users["broker"] = brokerPassword
	for user, pw := range users {
		cmd := exec.Command(testutil.Bin(t, "tandemctl"), "sasl-user", "--file", file, "--user", user)
		cmd.Stdin = strings.NewReader(pw + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tandemctl sasl-user: %v\n%s", err, out)
		}
	}
	pwFile := filepath.Join(dir, "broker-password")
	if err := os.WriteFile(pwFile, []byte(brokerPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--sasl-users", file, "--sasl-broker-user", "broker", "--sasl-broker-password-file", pwFile}
}

// TestSCRAMUsersThroughKafkaAPI: a user created with Kafka's
// AlterUserScramCredentials (kadm, bootstrapped on a follower: the
// request goes to the leader) logs in on every node with kcat without any
// node's users file knowing it; a new password works everywhere and the
// old one nowhere, also on the node that leads after a failover; deleting
// the user ends its logins.
func TestSCRAMUsersThroughKafkaAPI(t *testing.T) {
	c := startCluster(t, clusterOpts{
		brokerFlags:  saslBrokerFlags(t, map[string]string{"admin": "admin-secret"}),
		sidecarFlags: failoverSidecarFlags(),
	})
	ctx := ctxTimeout(t, 3*time.Minute)
	admin := kadm.NewClient(kclient(t, []string{c.node(3).kafka}, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism())))
	setPassword := func(pw string) {
		t.Helper()
		res, err := admin.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
			{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: pw},
			{User: "carol", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: pw},
		})
		if err != nil || res["carol"].Err != nil {
			t.Fatalf("AlterUserSCRAMs: %+v %v", res, err)
		}
	}
	kcatAs := func(node *node, pw string) error {
		return kcatErr("", 20*time.Second, "-L", "-b", node.kafka, "-m", "5", "-X", "security.protocol=sasl_plaintext",
			"-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=carol", "-X", "sasl.password="+pw)
	}
	everyNode := func(nodes []*node, pw string, want bool) {
		t.Helper()
		for _, n := range nodes {
			testutil.Eventually(t, 20*time.Second, func() error {
				err := kcatAs(n, pw)
				switch {
				case want && err != nil:
					return fmt.Errorf("carol with %q on %s: %v", pw, n.kafka, err)
				case !want && err == nil:
					return fmt.Errorf("carol with %q still logs in on %s", pw, n.kafka)
				}
				return nil
			})
		}
	}
	setPassword("first")
	everyNode(c.nodes, "first", true)
	setPassword("second")
	everyNode(c.nodes, "second", true)
	everyNode(c.nodes, "first", false)

	c.caughtUp(30*time.Second, 1, 2, 3)
	c.node(1).killPair()
	if out, err := c.promoteNode(2); err != nil {
		t.Fatalf("tandemctl promote: %v\n%s", err, out)
	}
	c.waitRole(30*time.Second, 2, adminv1.Role_ROLE_LEADER, 2, 2)
	rest := []*node{c.node(2), c.node(3)}
	everyNode(rest, "second", true)
	res, err := admin.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{
		{User: "carol", Mechanism: kadm.ScramSha256}, {User: "carol", Mechanism: kadm.ScramSha512}}, nil)
	if err != nil || res["carol"].Err != nil {
		t.Fatalf("deleting carol on the new leader: %+v %v", res, err)
	}
	everyNode(rest, "second", false)
}
