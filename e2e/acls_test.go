package e2e

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// TestACLsAcrossNodesAndFailover: a three-node cluster with SASL logins
// and --acls, admin the only super user. The ACLs an operator creates
// through followers (franz-go's kadm, kafka-python's admin client) reach
// every node; alice may write and read what they allow, through any node
// and with kcat, kafka-python and franz-go; bob is refused everywhere.
// After the leader is SIGKILLed and node 2 promoted, the new leader
// enforces the same ACLs, takes a new one from sarama's ClusterAdmin, and
// deleting one with `tandemctl acls` through a follower takes effect on
// it.
func TestACLsAcrossNodesAndFailover(t *testing.T) {
	pw := map[string]string{"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
	flags := append(saslBrokerFlags(t, pw), "--acls", "--super-users", "User:admin")
	c := startCluster(t, clusterOpts{brokerFlags: flags, sidecarFlags: failoverSidecarFlags()})
	login := func(user string) kgo.Opt {
		return kgo.SASL(scram.Auth{User: user, Pass: pw[user]}.AsSha512Mechanism())
	}
	const topic = "payments"
	ctx := ctxTimeout(t, 4*time.Minute)

	// Through node 2, a follower: CreateTopics goes to the leader (the
	// controller), CreateAcls to whichever broker kadm picks.
	admin := kadm.NewClient(kclient(t, []string{c.node(2).kafka}, login("admin")))
	if _, err := admin.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:alice").Topics(topic).Operations(kadm.OpWrite, kadm.OpRead),
		kadm.NewACLs().Allow("User:alice").Groups("alice-").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead),
	} {
		res, err := admin.CreateACLs(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("CreateACLs: %v %s", r.Err, r.ErrMessage)
			}
		}
	}
	// kafka-python's admin client, bootstrapped on node 3, adds DESCRIBE
	// on the topic for bob: not enough to write or read.
	var created struct {
		Succeeded int      `json:"succeeded"`
		Failed    []string `json:"failed"`
	}
	pyAdmin := []string{python, clientScript(t, "kafka_python_acls.py"), "--bootstrap", c.node(3).kafka,
		"--sasl-mechanism", "SCRAM-SHA-256", "--sasl-user", "admin", "--sasl-password", pw["admin"]}
	runScript(t, 60*time.Second, &created, append(pyAdmin, "create", "--principal", "User:bob", "--topic", topic, "--operation", "DESCRIBE")...)
	if created.Succeeded != 1 || len(created.Failed) != 0 {
		t.Fatalf("kafka-python create_acls: %+v", created)
	}

	// Every node holds the same four bindings.
	wantACLs := []string{
		"GROUP PREFIXED alice- User:alice * READ ALLOW",
		"TOPIC LITERAL payments User:alice * READ ALLOW",
		"TOPIC LITERAL payments User:alice * WRITE ALLOW",
		"TOPIC LITERAL payments User:bob * DESCRIBE ALLOW",
	}
	for _, n := range c.nodes {
		testutil.Eventually(t, 20*time.Second, func() error {
			got, err := describeACLsOn(ctx, n.kafka, login("admin"))
			if err != nil {
				return err
			}
			if !slices.Equal(got, wantACLs) {
				return errors.New("node " + n.kafka + " has ACLs " + strings.Join(got, "; "))
			}
			return nil
		})
	}
	var listed struct {
		Error string     `json:"error"`
		ACLs  [][]string `json:"acls"`
	}
	runScript(t, 60*time.Second, &listed, append(pyAdmin, "list")...)
	if listed.Error != "NoError" || len(listed.ACLs) != 3 {
		t.Fatalf("kafka-python describe_acls on topics: %+v", listed)
	}

	// alice writes with kcat through node 3 and kafka-python through
	// node 2; bob's writes are refused, with either client.
	kcatAs := func(user string) []string {
		return []string{"-X", "security.protocol=sasl_plaintext", "-X", "sasl.mechanisms=SCRAM-SHA-512",
			"-X", "sasl.username=" + user, "-X", "sasl.password=" + pw[user]}
	}
	want := seqValues("kcat-", 40)
	kcat(t, strings.Join(want, "\n")+"\n", 60*time.Second, append([]string{"-P", "-b", c.node(3).kafka, "-t", topic}, kcatAs("alice")...)...)
	var res pyProduceResult
	runScript(t, 90*time.Second, &res, python, clientScript(t, "kafka_python_produce.py"),
		"--bootstrap", c.node(2).kafka, "--topic", topic, "--count", "20", "--acks", "all", "--prefix", "py-",
		"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "alice", "--sasl-password", pw["alice"])
	if res.Sent != 20 {
		t.Fatalf("kafka-python as alice sent %d of 20", res.Sent)
	}
	want = append(want, seqValues("py-", 20)...)
	bobWrites := func(seed string) error {
		cl := kclient(t, []string{seed}, login("bob"), kgo.RecordRetries(2), kgo.RecordDeliveryTimeout(15*time.Second))
		return cl.ProduceSync(ctxTimeout(t, 30*time.Second), &kgo.Record{Topic: topic, Value: []byte("bob")}).FirstErr()
	}
	if err := bobWrites(c.node(1).kafka); !isAuthzError(err) {
		t.Fatalf("bob writing: %v, want an authorization error", err)
	}
	if err := kcatErr("bob\n", 30*time.Second, append([]string{"-P", "-b", c.node(2).kafka, "-t", topic}, kcatAs("bob")...)...); err == nil ||
		!strings.Contains(err.Error(), "uthorization") {
		t.Fatalf("kcat as bob: %v, want an authorization failure", err)
	}
	// alice reads in a group her prefix covers; in another group she is refused.
	groupReadAs(t, c.node(3).kafka, topic, "alice-readers", want, login("alice"))
	cl := kclient(t, []string{c.node(1).kafka}, login("alice"), kgo.ConsumeTopics(topic), kgo.ConsumerGroup("other-group"))
	fs := cl.PollFetches(ctxTimeout(t, 30*time.Second))
	if err := fs.Err(); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("alice in other-group: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	cl.Close()

	// The leader dies; node 2 takes over with the same ACLs.
	c.caughtUp(30*time.Second, 1, 2, 3)
	c.node(1).killPair()
	if out, err := c.promoteNode(2); err != nil {
		t.Fatalf("tandemctl promote: %v\n%s", err, out)
	}
	c.waitRole(30*time.Second, 2, adminv1.Role_ROLE_LEADER, 2, 2)
	c.waitRole(30*time.Second, 3, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	seeds := []string{c.node(2).kafka, c.node(3).kafka}
	after := seqValues("after-failover-", 10)
	produceSync(t, kclient(t, seeds, login("alice")), topic, after)
	want = append(want, after...)
	if err := bobWrites(c.node(3).kafka); !isAuthzError(err) {
		t.Fatalf("bob writing after the failover: %v, want an authorization error", err)
	}

	// sarama's ClusterAdmin, bootstrapped on node 3, adds an ACL on the
	// new leader (the controller) and lists it.
	scfg := saramaConfig()
	scfg.Net.SASL.Enable, scfg.Net.SASL.Mechanism = true, sarama.SASLTypePlaintext
	scfg.Net.SASL.User, scfg.Net.SASL.Password = "admin", pw["admin"]
	sadm, err := sarama.NewClusterAdmin([]string{c.node(3).kafka}, scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sadm.Close()
	if err := sadm.CreateACLs([]*sarama.ResourceAcls{{
		Resource: sarama.Resource{ResourceType: sarama.AclResourceTopic, ResourceName: topic, ResourcePatternType: sarama.AclPatternLiteral},
		Acls:     []*sarama.Acl{{Principal: "User:dave", Host: "*", Operation: sarama.AclOperationDescribe, PermissionType: sarama.AclPermissionAllow}},
	}}); err != nil {
		t.Fatalf("sarama CreateACLs: %v", err)
	}
	dave := "User:dave"
	listedACLs, err := sadm.ListAcls(sarama.AclFilter{ResourceType: sarama.AclResourceAny, ResourcePatternTypeFilter: sarama.AclPatternAny,
		Principal: &dave, Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny})
	if err != nil || len(listedACLs) != 1 || len(listedACLs[0].Acls) != 1 || listedACLs[0].ResourceName != topic {
		t.Fatalf("sarama ListAcls for dave: %+v, %v", listedACLs, err)
	}

	// admin takes alice's WRITE away with `tandemctl acls` through node 3
	// (a follower of the new leader); from then on her writes are
	// refused, her reads go on.
	ctl := exec.Command(testutil.Bin(t, "tandemctl"), "--timeout", "30s", "acls", "--bootstrap", c.node(3).kafka,
		"--sasl-user", "admin", "--remove", "--allow-principal", "User:alice", "--operation", "Write", "--topic", topic)
	ctl.Stdin = strings.NewReader(pw["admin"] + "\n")
	out, err := ctl.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "removed:") || !strings.Contains(string(out), "WRITE") {
		t.Fatalf("tandemctl acls --remove: %v\n%s", err, out)
	}
	ctl = exec.Command(testutil.Bin(t, "tandemctl"), "acls", "--bootstrap", c.node(2).kafka,
		"--sasl-user", "admin", "--list", "--topic", topic)
	ctl.Stdin = strings.NewReader(pw["admin"] + "\n")
	out, err = ctl.CombinedOutput()
	if err != nil || strings.Contains(string(out), "WRITE") || !strings.Contains(string(out), "User:bob") {
		t.Fatalf("tandemctl acls --list on the new leader after the removal: %v\n%s", err, out)
	}
	cl = kclient(t, seeds, login("alice"), kgo.RecordRetries(2), kgo.RecordDeliveryTimeout(15*time.Second))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("refused")}).FirstErr(); !isAuthzError(err) {
		t.Fatalf("alice writing after her WRITE was deleted: %v", err)
	}
	readBackAll(t, c.node(3).kafka, topic, want, login("alice"))
}

// describeACLsOn lists every ACL one node holds, one line per binding.
func describeACLsOn(ctx context.Context, addr string, opts ...kgo.Opt) ([]string, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType, req.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	// Straight to this node: kgo sends ACL requests to any broker.
	resp, err := req.RequestWith(ctx, cl.SeedBrokers()[0])
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range resp.Resources {
		for _, a := range r.ACLs {
			out = append(out, strings.Join([]string{r.ResourceType.String(), r.ResourcePatternType.String(), r.ResourceName,
				a.Principal, a.Host, a.Operation.String(), a.PermissionType.String()}, " "))
		}
	}
	slices.Sort(out)
	return out, nil
}

// isAuthzError reports whether a produce failed for want of an ACL: the
// topic, or the cluster (an idempotent producer's InitProducerId).
func isAuthzError(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed)
}

// groupReadAs reads want from topic in consumer group g and commits.
func groupReadAs(t *testing.T, seed, topic, g string, want []string, opts ...kgo.Opt) {
	t.Helper()
	cl := kclient(t, []string{seed}, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumerGroup(g),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit()}, opts...)...)
	defer cl.Close()
	got := values(consumeN(t, cl, len(want), 60*time.Second))
	requireSameValues(t, "group "+g, got, want)
	if err := cl.CommitUncommittedOffsets(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatalf("committing in group %s: %v", g, err)
	}
}
