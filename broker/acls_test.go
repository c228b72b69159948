package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tandem-io/tandem/broker/acl"
)

func loginAs(user string) kgo.Opt {
	return kgo.SASL(scram.Auth{User: user, Pass: user + "-pw"}.AsSha256Mechanism())
}

func createACLs(t *testing.T, adm *kadm.Client, b *kadm.ACLBuilder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := adm.CreateACLs(ctx, b)
	if err != nil {
		t.Fatalf("CreateACLs: %v", err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("CreateACLs %s %s %s: %v %s", r.Principal, r.Name, r.Operation, r.Err, r.ErrMessage)
		}
	}
}

func produceOne(cl *kgo.Client, topic, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr()
}

// With --acls a client may do only what an ACL allows it (or what a super
// user may): the story of a Kafka operator setting up ACLs with an admin
// client. alice gets WRITE on a topic, READ on topics with a prefix and on
// her group; bob gets nothing; a DENY beats an ALLOW; the ACLs survive a
// restart.
func TestACLsEnforced(t *testing.T) {
	users := writeUsers(t, map[string]string{"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw"})
	dir := t.TempDir()
	var logs syncBuffer
	start := func() (*Broker, string) {
		return startBrokerWith(t, dir, func(c *Config) {
			c.SASLUsersFile = users
			c.ACLs = true
			c.SuperUsers = "User:admin"
			c.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: &logs, Level: hclog.Info})
		})
	}
	b, addr := start()
	ctx := context.Background()
	admin := kadm.NewClient(newClient(t, addr, loginAs("admin")))
	if _, err := admin.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTopic(ctx, 1, 1, nil, "ord-archive"); err != nil {
		t.Fatal(err)
	}
	if err := produceOne(newClient(t, addr, loginAs("admin")), "orders", "by-admin"); err != nil {
		t.Fatalf("super user produce: %v", err)
	}

	// No ACL yet: alice can neither write (her idempotent producer is
	// refused a producer id) nor see the topic.
	alice := newClient(t, addr, loginAs("alice"), kgo.RecordRetries(1))
	if err := produceOne(alice, "orders", "x"); !errors.Is(err, kerr.ClusterAuthorizationFailed) && !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice without ACLs: produce error %v, want an authorization error", err)
	}
	// Nor may she grant herself anything: that needs ALTER on the cluster.
	res, err := kadm.NewClient(newClient(t, addr, loginAs("alice"))).CreateACLs(ctx,
		kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpAll))
	if err != nil || len(res) != 1 || !errors.Is(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice granting herself ALL on orders: %+v, %v; want CLUSTER_AUTHORIZATION_FAILED", res, err)
	}

	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpWrite))
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Topics("ord").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead))
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Groups("alice-group").Operations(kadm.OpRead))

	alice = newClient(t, addr, loginAs("alice"))
	for i := range 5 {
		if err := produceOne(alice, "orders", "alice-"+string(rune('a'+i))); err != nil {
			t.Fatalf("alice with WRITE: %v", err)
		}
	}
	if err := produceOne(alice, "ord-archive", "x"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice writing ord-archive (READ only): %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	consumer := newClient(t, addr, loginAs("alice"), kgo.ConsumeTopics("orders"), kgo.ConsumerGroup("alice-group"),
		kgo.DisableAutoCommit())
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < 6 && time.Now().Before(deadline) {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := consumer.PollFetches(fctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Fatalf("alice consuming in her group: %v", e.Err)
			}
		}
	}
	if len(got) != 6 {
		t.Fatalf("alice read %d records, want 6: %v", len(got), got)
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("alice committing in her group: %v", err)
	}
	consumer.Close()

	// bob: nothing. The topic list hides what he may not describe; his
	// writes, reads and group are refused.
	bob := newClient(t, addr, loginAs("bob"), kgo.RecordRetries(1))
	bobAdm := kadm.NewClient(bob)
	topics, err := bobAdm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 0 {
		t.Fatalf("bob lists topics %v, want none", topics.Names())
	}
	if err := produceOne(bob, "orders", "x"); err == nil {
		t.Fatal("bob wrote to orders")
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis, fetch.MaxBytes = 10, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "orders"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	fr, err := fetch.RequestWith(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if c := fr.Topics[0].Partitions[0].ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("bob's fetch of orders: error %v, want TOPIC_AUTHORIZATION_FAILED", kerr.ErrorForCode(c))
	}
	offs, err := bobAdm.FetchOffsets(ctx, "alice-group")
	if err == nil {
		err = offs.Error()
	}
	if !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("bob reading alice-group's offsets: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	if n := promtest.ToFloat64(b.metrics.aclDenied.WithLabelValues("topic")); n < 2 {
		t.Fatalf("tandem_broker_authorization_failures_total{resource_type=topic} = %v", n)
	}
	if !strings.Contains(logs.String(), "request refused by the ACLs") {
		t.Fatal("no log line for refused requests")
	}

	// A DENY beats the prefixed ALLOW.
	createACLs(t, admin, kadm.NewACLs().Deny("User:alice").Topics("ord-archive").Operations(kadm.OpRead))
	fr, err = func() (*kmsg.FetchResponse, error) {
		f := *fetch
		f.Topics = []kmsg.FetchRequestTopic{ft}
		f.Topics[0].Topic = "ord-archive"
		return f.RequestWith(ctx, newClient(t, addr, loginAs("alice")))
	}()
	if err != nil {
		t.Fatal(err)
	}
	if c := fr.Topics[0].Partitions[0].ErrorCode; c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("alice fetching ord-archive under a DENY: %v", kerr.ErrorForCode(c))
	}

	described, err := admin.DescribeACLs(ctx, kadm.NewACLs().Allow().AllowHosts().Deny().DenyHosts().AnyResource().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range described {
		if d.Err != nil {
			t.Fatal(d.Err)
		}
		n += len(d.Described)
	}
	if n != 4 {
		t.Fatalf("DescribeACLs: %d bindings, want 4: %+v", n, described)
	}

	// Restart: the ACLs come back from the WAL.
	want := b.acls.All()
	b.Close()
	b, addr = start()
	if got := b.acls.All(); len(got) != len(want) {
		t.Fatalf("after a restart %d ACLs, want %d: %v", len(got), len(want), got)
	}
	if err := produceOne(newClient(t, addr, loginAs("alice")), "orders", "after-restart"); err != nil {
		t.Fatalf("alice after a restart: %v", err)
	}

	// DeleteAcls with a filter: every ACL of alice's on topics.
	admin = kadm.NewClient(newClient(t, addr, loginAs("admin")))
	del, err := admin.DeleteACLs(ctx, kadm.NewACLs().Allow("User:alice").AllowHosts().Deny("User:alice").DenyHosts().Topics().
		Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for _, d := range del {
		if d.Err != nil {
			t.Fatal(d.Err)
		}
		deleted += len(d.Deleted)
	}
	if deleted != 3 || b.acls.Len() != 1 {
		t.Fatalf("deleted %d (want 3), %d left (want 1: the group's)", deleted, b.acls.Len())
	}
	if err := produceOne(newClient(t, addr, loginAs("alice"), kgo.RecordRetries(1)), "orders", "x"); err == nil {
		t.Fatal("alice wrote after her ACLs were deleted")
	}
}

// Without --acls the ACL APIs answer SECURITY_DISABLED, as Kafka without an
// authorizer, and everything is allowed.
func TestACLsDisabled(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, nil, "anything"); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType, req.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.SecurityDisabled.Code {
		t.Fatalf("DescribeAcls without --acls: %v, want SECURITY_DISABLED", kerr.ErrorForCode(resp.ErrorCode))
	}
	if err := produceOne(cl, "anything", "x"); err != nil {
		t.Fatal(err)
	}
}

// A malformed binding gets INVALID_REQUEST with a message and stores
// nothing; the valid ones of the same request are stored.
func TestCreateACLsValidates(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.ACLs = true; c.AllowEveryoneIfNoACL = true })
	req := kmsg.NewPtrCreateACLsRequest()
	good := kmsg.NewCreateACLsRequestCreation()
	good.ResourceType, good.ResourceName, good.ResourcePatternType = kmsg.ACLResourceTypeTopic, "t", kmsg.ACLResourcePatternTypeLiteral
	good.Principal, good.Host, good.Operation, good.PermissionType = "User:x", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
	bad := good
	bad.Principal = "nobody" // no type
	req.Creations = []kmsg.CreateACLsRequestCreation{bad, good}
	// ANONYMOUS may alter the cluster: no ACL names the cluster and
	// allow-everyone-if-no-acl is on.
	resp, err := req.RequestWith(context.Background(), newClient(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Results[0].ErrorCode != kerr.InvalidRequest.Code || resp.Results[0].ErrorMessage == nil ||
		!strings.Contains(*resp.Results[0].ErrorMessage, "principal") {
		t.Fatalf("bad binding: %+v", resp.Results[0])
	}
	if resp.Results[1].ErrorCode != 0 {
		t.Fatalf("good binding: %v", kerr.ErrorForCode(resp.Results[1].ErrorCode))
	}
	if got := b.acls.All(); len(got) != 1 || got[0].Principal != "User:x" {
		t.Fatalf("stored %v", got)
	}
}

// The state checkpoint carries the ACLs: a node whose WAL segments with
// the ACL entries are gone still has them.
func TestACLsInCheckpoint(t *testing.T) {
	b, _ := startBrokerWith(t, t.TempDir(), func(c *Config) { c.ACLs = true })
	bd := acl.Binding{ResourceType: kmsg.ACLResourceTypeGroup, ResourceName: "g", PatternType: kmsg.ACLResourcePatternTypePrefixed,
		Principal: "User:carol", Host: "*", Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow}
	if err := b.appendMeta(context.Background(), 12, aclEntry{Add: []acl.Binding{bd}}); err != nil {
		t.Fatal(err)
	}
	b.appendMu.Lock()
	cp := b.snapshotLocked()
	b.resetStateLocked()
	if b.acls.Len() != 0 {
		b.appendMu.Unlock()
		t.Fatal("reset kept the ACLs")
	}
	b.restoreCheckpointLocked(cp)
	b.appendMu.Unlock()
	if !b.acls.Has(bd) || b.acls.Len() != 1 {
		t.Fatalf("restored %v", b.acls.All())
	}
}

// startACLBroker starts a broker with --acls, SASL users admin (a super
// user) and alice, and creates topic as admin. It returns the broker's
// address and admin's admin client.
func startACLBroker(t *testing.T, topic string) (string, *kadm.Client) {
	t.Helper()
	users := writeUsers(t, map[string]string{"admin": "admin-pw", "alice": "alice-pw"})
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.SASLUsersFile = users
		c.ACLs = true
		c.SuperUsers = "User:admin"
	})
	admin := kadm.NewClient(newClient(t, addr, loginAs("admin")))
	if _, err := admin.CreateTopic(t.Context(), 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	return addr, admin
}

// opBits is an authorized_operations bit field holding ops.
func opBits(ops ...kmsg.ACLOperation) int32 {
	var bits int32
	for _, op := range ops {
		bits |= 1 << uint(op)
	}
	return bits
}

// authorizedOpsOf asks, as a client that sets the include flags (KIP-430),
// for the operations it may perform on topic, group and the cluster. cl
// must speak Kafka 2.8's versions: Metadata v10, the last with the
// cluster's operations, and DescribeGroups v5, where an unknown group is
// Dead, not GROUP_ID_NOT_FOUND.
func authorizedOpsOf(t *testing.T, cl *kgo.Client, topic, group string) (topicOps, groupOps, clusterOps, clusterOpsV10 int32) {
	t.Helper()
	ctx := t.Context()
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	md.Topics = append(md.Topics, mt)
	md.IncludeTopicAuthorizedOperations, md.IncludeClusterAuthorizedOperations = true, true
	mresp, err := md.RequestWith(ctx, cl)
	if err != nil || len(mresp.Topics) != 1 || mresp.Topics[0].ErrorCode != 0 {
		t.Fatalf("Metadata of %s: %v %+v", topic, err, mresp)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups, dg.IncludeAuthorizedOperations = []string{group}, true
	gresp, err := dg.RequestWith(ctx, cl)
	if err != nil || len(gresp.Groups) != 1 || gresp.Groups[0].ErrorCode != 0 {
		t.Fatalf("DescribeGroups %s: %v %+v", group, err, gresp)
	}
	dc := kmsg.NewPtrDescribeClusterRequest()
	dc.IncludeClusterAuthorizedOperations = true
	cresp, err := dc.RequestWith(ctx, cl)
	if err != nil || cresp.ErrorCode != 0 {
		t.Fatalf("DescribeCluster: %v %+v", err, cresp)
	}
	return mresp.Topics[0].AuthorizedOperations, gresp.Groups[0].AuthorizedOperations, cresp.ClusterAuthorizedOperations, mresp.AuthorizedOperations
}

// A client that asks (Metadata v8+, DescribeGroups v3+, DescribeCluster)
// is told which operations it may perform, as Kafka answers KIP-430's
// authorized_operations: with --acls what its ACLs allow (WRITE implies
// DESCRIBE, READ on a group DESCRIBE), everything for a super user, and
// without --acls every operation Kafka's authorizer knows for the
// resource. A client that does not ask gets Kafka's "omitted".
func TestAuthorizedOperations(t *testing.T) {
	allTopic := opBits(kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs)
	versions := kversion.V2_8_0()
	versions.SetMaxKeyVersion(kmsg.Metadata.Int16(), 10)
	kafka28 := kgo.MaxVersions(versions)
	allGroup := opBits(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete)
	allCluster := opBits(kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe)
	check := func(who string, cl *kgo.Client, topic, group string, wantTopic, wantGroup, wantCluster int32) {
		t.Helper()
		to, gr, cluster, clusterV10 := authorizedOpsOf(t, cl, topic, group)
		if to != wantTopic || gr != wantGroup || cluster != wantCluster || clusterV10 != wantCluster {
			t.Fatalf("%s is told it may do %b on topic %s, %b on group %s, %b (DescribeCluster) and %b (Metadata) on the cluster; want %b, %b, %b",
				who, to, topic, gr, group, cluster, clusterV10, wantTopic, wantGroup, wantCluster)
		}
	}

	// Without --acls: everything.
	_, open := startBroker(t, t.TempDir())
	createTopic(t, newClient(t, open), "t", 1)
	check("a client of a broker without --acls", newClient(t, open, kafka28), "t", "g", allTopic, allGroup, allCluster)
	// Not asked: omitted.
	dc := kmsg.NewPtrDescribeClusterRequest()
	if resp, err := dc.RequestWith(t.Context(), newClient(t, open)); err != nil || resp.ClusterAuthorizedOperations != -2147483648 {
		t.Fatalf("DescribeCluster without the include flag: %v, authorized operations %d; want -2147483648", err, resp.ClusterAuthorizedOperations)
	}

	addr, admin := startACLBroker(t, "orders")
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpWrite, kadm.OpDescribeConfigs))
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Groups("alice-group").Operations(kadm.OpRead))
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpIdempotentWrite))
	check("alice", newClient(t, addr, loginAs("alice"), kafka28), "orders", "alice-group",
		opBits(kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe, kmsg.ACLOperationDescribeConfigs),
		opBits(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe),
		opBits(kmsg.ACLOperationIdempotentWrite))
	check("the super user", newClient(t, addr, loginAs("admin"), kafka28), "orders", "alice-group", allTopic, allGroup, allCluster)
}

// The consumer group protocol (KIP-848) under --acls: joining a group
// needs READ on it, describing it DESCRIBE (which READ implies). alice has
// READ on alice-group and DESCRIBE on seen-group; the requests go straight
// to the broker, as they would after FindCoordinator.
func TestACLsConsumerProtocolGroup(t *testing.T) {
	addr, admin := startACLBroker(t, "orders")
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Groups("alice-group").Operations(kadm.OpRead))
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Groups("seen-group").Operations(kadm.OpDescribe))
	ctx := t.Context()
	alice := newClient(t, addr, loginAs("alice")).Broker(1)
	join := func(group string) *kmsg.ConsumerGroupHeartbeatResponse {
		t.Helper()
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Group, req.MemberID, req.RebalanceTimeoutMillis = group, "m-"+group, 60000
		req.SubscribedTopicNames, req.Topics = []string{"orders"}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		resp, err := req.RequestWith(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	describe := func(group string) kmsg.ConsumerGroupDescribeResponseGroup {
		t.Helper()
		req := kmsg.NewPtrConsumerGroupDescribeRequest()
		req.Groups, req.IncludeAuthorizedOperations = []string{group}, true
		resp, err := req.RequestWith(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Groups[0]
	}
	if r := join("seen-group"); r.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("alice joining seen-group (DESCRIBE only): %v, want GROUP_AUTHORIZATION_FAILED", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := join("alice-group"); r.ErrorCode != 0 || r.MemberEpoch != 1 || r.Assignment == nil || len(r.Assignment.Topics) != 1 {
		t.Fatalf("alice joining alice-group: %v, epoch %d, assignment %+v", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch, r.Assignment)
	}
	if g := describe("other-group"); g.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("alice describing other-group: %v, want GROUP_AUTHORIZATION_FAILED", kerr.ErrorForCode(g.ErrorCode))
	}
	if g := describe("seen-group"); g.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("alice describing seen-group, which has no members: %v, want GROUP_ID_NOT_FOUND", kerr.ErrorForCode(g.ErrorCode))
	}
	g := describe("alice-group")
	if g.ErrorCode != 0 || g.State != "Stable" || len(g.Members) != 1 || g.AuthorizedOperations != opBits(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe) {
		t.Fatalf("alice describing alice-group: %v, %s, %d members, operations %b", kerr.ErrorForCode(g.ErrorCode), g.State, len(g.Members), g.AuthorizedOperations)
	}

	// A regular expression matches only the topics alice may describe:
	// orders-eu, not orders-secret.
	for _, topic := range []string{"orders-eu", "orders-secret"} {
		if _, err := admin.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Topics("orders-eu").Operations(kadm.OpRead))
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Groups("regex-group").Operations(kadm.OpRead))
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Group, req.MemberID, req.RebalanceTimeoutMillis = "regex-group", "m-regex", 60000
	req.SubscribedTopicRegex, req.Topics = kmsg.StringPtr("orders-.*"), []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	resp, err := req.RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 || resp.Assignment == nil {
		t.Fatalf("alice joining regex-group: %v, assignment %+v", kerr.ErrorForCode(resp.ErrorCode), resp.Assignment)
	}
	rg := describe("regex-group")
	if len(rg.Members) != 1 || len(rg.Members[0].Assignment.TopicPartitions) != 1 || rg.Members[0].Assignment.TopicPartitions[0].Topic != "orders-eu" {
		t.Fatalf("alice's regex orders-.* got %+v, want orders-eu only", rg.Members)
	}
}
