package broker

// DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key
// 51), v0: SASL/SCRAM users managed through Kafka's API (KIP-554;
// kafka-configs.sh --alter --entity-type users --add-config
// 'SCRAM-SHA-512=[password=...]'), besides the users file.
//
// The client sends a salt, an iteration count and the salted password
// (never the password); the leader derives the stored and server keys
// from it, writes them as one WAL entry (type 14) and answers once it is
// committed. Every replica applies the entry and state checkpoints carry
// the users, so a user set this way logs in on every node, and after a
// failover, without touching any node's users file. Such credentials come
// before the users file's for the same user and mechanism. Followers
// answer NOT_CONTROLLER (clients send the request to the controller, the
// leader). Describe lists the users of both sources, with each
// mechanism's iteration count.
//
// With --acls, altering needs Alter on the cluster and describing Describe
// on the cluster, as in Kafka.

import (
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/sasl"
	"github.com/tandem-io/tandem/broker/wal"
)

func init() {
	register(kmsg.DescribeUserSCRAMCredentials.Int16(), 0, 0, handleDescribeUserSCRAMCredentials)
	register(kmsg.AlterUserSCRAMCredentials.Int16(), 0, 0, handleAlterUserSCRAMCredentials)
}

// scramEntry is the WAL entry of one AlterUserScramCredentials request.
type scramEntry struct {
	Set    []scramSet    `json:"set,omitempty"`
	Delete []scramDelete `json:"delete,omitempty"`
}

type scramSet struct {
	User       string          `json:"user"`
	Mechanism  string          `json:"mechanism"`
	Credential sasl.Credential `json:"credential"`
}

type scramDelete struct {
	User      string `json:"user"`
	Mechanism string `json:"mechanism"`
}

// scramMechanism maps Kafka's mechanism numbers (1 SCRAM-SHA-256, 2
// SCRAM-SHA-512) to names.
func scramMechanism(m int8) (string, bool) {
	switch m {
	case 1:
		return sasl.ScramSHA256, true
	case 2:
		return sasl.ScramSHA512, true
	}
	return "", false
}

func scramMechanismNumber(name string) int8 {
	if name == sasl.ScramSHA256 {
		return 1
	}
	return 2
}

// scramUsers is every SASL user this node knows: the replicated ones over
// the users file's.
func (b *Broker) scramUsers() map[string]map[string]sasl.Credential {
	out := map[string]map[string]sasl.Credential{}
	if b.sasl != nil {
		for u, m := range b.sasl.FileUsers() {
			out[u] = map[string]sasl.Credential{}
			for k, c := range m {
				out[u][k] = c
			}
		}
	}
	for u, m := range b.scram.All() {
		if out[u] == nil {
			out[u] = map[string]sasl.Credential{}
		}
		for k, c := range m {
			out[u][k] = c
		}
	}
	return out
}

func handleDescribeUserSCRAMCredentials(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !b.allowedCluster(rc, kmsg.ACLOperationDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return now(resp)
	}
	users := b.scramUsers()
	var names []string
	if r.Users == nil {
		for u := range users {
			names = append(names, u)
		}
		sort.Strings(names)
	} else {
		for _, u := range r.Users {
			names = append(names, u.Name)
		}
	}
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	for _, n := range names {
		res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		res.User = n
		switch {
		case count[n] > 1:
			res.ErrorCode, res.ErrorMessage = kerr.DuplicateResource.Code, errMsg("user "+n+" named more than once")
		case len(users[n]) == 0:
			res.ErrorCode, res.ErrorMessage = kerr.ResourceNotFound.Code, errMsg("no SCRAM credential for user "+n)
		default:
			var mechs []string
			for m := range users[n] {
				mechs = append(mechs, m)
			}
			sort.Strings(mechs)
			for _, m := range mechs {
				ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
				ci.Mechanism, ci.Iterations = scramMechanismNumber(m), int32(users[n][m].Iterations)
				res.CredentialInfos = append(res.CredentialInfos, ci)
			}
		}
		resp.Results = append(resp.Results, res)
	}
	return now(resp)
}

func handleAlterUserSCRAMCredentials(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := r.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	// One result per user, in the order first named.
	var order []string
	errs := map[string]*kerr.Error{}
	msgs := map[string]string{}
	fail := func(user string, code *kerr.Error, msg string) {
		if errs[user] == nil {
			errs[user], msgs[user] = code, msg
		}
	}
	// A user may change both mechanisms in one request, but each
	// (user, mechanism) only once, as in Kafka.
	type pair struct {
		user string
		mech int8
	}
	seen := map[pair]int{}
	note := func(user string, mech int8) {
		if !slices.Contains(order, user) {
			order = append(order, user)
		}
		seen[pair{user, mech}]++
	}
	for _, d := range r.Deletions {
		note(d.Name, d.Mechanism)
	}
	for _, u := range r.Upsertions {
		note(u.Name, u.Mechanism)
	}
	for p, n := range seen {
		if n > 1 {
			fail(p.user, kerr.DuplicateResource, "user "+p.user+" has more than one change of one mechanism in the request")
		}
	}
	var entry scramEntry
	switch {
	case !b.allowedCluster(rc, kmsg.ACLOperationAlter):
		for _, u := range order {
			fail(u, kerr.ClusterAuthorizationFailed, "altering SCRAM credentials needs ALTER on the cluster")
		}
	case !b.isLeader():
		for _, u := range order {
			fail(u, kerr.NotController, "not the leader")
		}
	default:
		for _, d := range r.Deletions {
			mech, ok := scramMechanism(d.Mechanism)
			switch {
			case d.Name == "":
				fail(d.Name, kerr.UnacceptableCredential, "the user name must not be empty")
			case !ok:
				fail(d.Name, kerr.UnsupportedSaslMechanism, "unknown SCRAM mechanism")
			default:
				if _, found := b.scram.Get(d.Name, mech); !found {
					fail(d.Name, kerr.ResourceNotFound, "user "+d.Name+" has no "+mech+" credential set through the API (users of the users file are changed there)")
				}
				entry.Delete = append(entry.Delete, scramDelete{User: d.Name, Mechanism: mech})
			}
		}
		for _, u := range r.Upsertions {
			mech, ok := scramMechanism(u.Mechanism)
			switch {
			case u.Name == "":
				fail(u.Name, kerr.UnacceptableCredential, "the user name must not be empty")
			case !ok:
				fail(u.Name, kerr.UnsupportedSaslMechanism, "unknown SCRAM mechanism")
			case u.Iterations < sasl.MinIterations:
				fail(u.Name, kerr.UnacceptableCredential, "too few iterations (at least 4096)")
			case u.Iterations > sasl.MaxIterations:
				fail(u.Name, kerr.UnacceptableCredential, "too many iterations (at most 16384)")
			default:
				c, err := sasl.CredentialFromSalted(mech, u.Salt, u.SaltedPassword, int(u.Iterations))
				if err != nil {
					fail(u.Name, kerr.UnacceptableCredential, err.Error())
					break
				}
				entry.Set = append(entry.Set, scramSet{User: u.Name, Mechanism: mech, Credential: c})
			}
		}
	}
	// Only the users without an error go into the entry.
	keptSet := entry.Set[:0]
	for _, s := range entry.Set {
		if errs[s.User] == nil {
			keptSet = append(keptSet, s)
		}
	}
	keptDel := entry.Delete[:0]
	for _, d := range entry.Delete {
		if errs[d.User] == nil {
			keptDel = append(keptDel, d)
		}
	}
	entry.Set, entry.Delete = keptSet, keptDel
	answer := func() kmsg.Response {
		for _, u := range order {
			res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
			res.User = u
			if e := errs[u]; e != nil {
				res.ErrorCode, res.ErrorMessage = e.Code, errMsg(msgs[u])
			}
			resp.Results = append(resp.Results, res)
		}
		return resp
	}
	if len(entry.Set) == 0 && len(entry.Delete) == 0 {
		return answer
	}
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(0)
		defer cancel()
		if err := b.appendMeta(ctx, wal.TypeScramCredential, entry); err != nil {
			b.log.Warn("altering SCRAM credentials failed", "error", err)
			for _, u := range order {
				fail(u, kerr.RequestTimedOut, err.Error()) // users refused before keep their error
			}
			return answer()
		}
		for _, s := range entry.Set {
			b.log.Info("SCRAM credential set", "user", s.User, "mechanism", s.Mechanism, "iterations", s.Credential.Iterations, "by", rc.auth.principal)
		}
		for _, d := range entry.Delete {
			b.log.Info("SCRAM credential deleted", "user", d.User, "mechanism", d.Mechanism, "by", rc.auth.principal)
		}
		return answer()
	}
}
