package broker

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tandem-io/tandem/broker/sasl"
)

// A user created through AlterUserScramCredentials (kadm, as
// kafka-configs.sh --entity-type users --add-config 'SCRAM-SHA-512=[...]')
// logs in with SCRAM and PLAIN; a new password replaces the old one, also
// over the users file's; the users survive a restart (and a state
// checkpoint); deleting them ends their logins; Describe lists both
// sources; bad requests get Kafka's errors.
func TestSCRAMCredentialsAPI(t *testing.T) {
	users := writeUsers(t, map[string]string{"admin": "admin-pw", "alice": "file-pw"})
	dir := t.TempDir()
	start := func() (*Broker, string) {
		return startBrokerWith(t, dir, func(c *Config) { c.SASLUsersFile = users })
	}
	b, addr := start()
	ctx := context.Background()
	adm := kadm.NewClient(newClient(t, addr, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha512Mechanism())))
	upsert := func(user, pw string) {
		t.Helper()
		res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
			{User: user, Mechanism: kadm.ScramSha256, Iterations: 4096, Password: pw},
			{User: user, Mechanism: kadm.ScramSha512, Iterations: 8192, Password: pw},
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := res[user]; r.Err != nil {
			t.Fatalf("AlterUserSCRAMs %s: %v %s", user, r.Err, r.ErrMessage)
		}
	}
	logsIn := func(user, pw string) error {
		for _, m := range []kgo.Opt{
			kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha256Mechanism()),
			kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha512Mechanism()),
			kgo.SASL(plain.Auth{User: user, Pass: pw}.AsMechanism()),
		} {
			if err := roundTrip(t, addr, "scram-api", m); err != nil {
				return err
			}
		}
		return nil
	}

	upsert("carol", "carol-pw")
	if err := logsIn("carol", "carol-pw"); err != nil {
		t.Fatalf("carol, created through the API: %v", err)
	}
	// alice is in the file; the API's credentials come first.
	upsert("alice", "api-pw")
	if err := logsIn("alice", "api-pw"); err != nil {
		t.Fatalf("alice with her new password: %v", err)
	}
	if err := logsIn("alice", "file-pw"); err == nil {
		t.Fatal("alice's old (file) password still works after a change through the API")
	}
	described, err := adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(described) != 3 || len(described["carol"].CredInfos) != 2 || described["admin"].Err != nil {
		t.Fatalf("DescribeUserSCRAMs: %+v", described)
	}
	for _, ci := range described["carol"].CredInfos {
		if want := map[kadm.ScramMechanism]int32{kadm.ScramSha256: 4096, kadm.ScramSha512: 8192}[ci.Mechanism]; ci.Iterations != want {
			t.Fatalf("carol's %v: %d iterations, want %d", ci.Mechanism, ci.Iterations, want)
		}
	}
	if d, _ := adm.DescribeUserSCRAMs(ctx, "nobody"); !errors.Is(d["nobody"].Err, kerr.ResourceNotFound) {
		t.Fatalf("describing an unknown user: %+v", d)
	}

	// Refused: too few iterations, the same mechanism twice.
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "dave", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "x"}})
	if err != nil || res["dave"].Err != nil {
		t.Fatalf("dave: %+v %v", res, err)
	}
	// kadm checks iterations itself: a raw request, as another client
	// might send, with too many iterations and the same mechanism twice.
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	for _, u := range []struct {
		name       string
		iterations int32
	}{{"eve", 20000}, {"frank", 4096}, {"frank", 4096}} {
		up := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		up.Name, up.Mechanism, up.Iterations = u.name, 1, u.iterations
		up.Salt, up.SaltedPassword = []byte("salt"), scramSalted(t, "x", []byte("salt"), int(u.iterations))
		req.Upsertions = append(req.Upsertions, up)
	}
	raw, err := req.RequestWith(ctx, newClient(t, addr, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha512Mechanism())))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Results) != 2 || raw.Results[0].ErrorCode != kerr.UnacceptableCredential.Code || raw.Results[1].ErrorCode != kerr.DuplicateResource.Code {
		t.Fatalf("eve (20000 iterations), frank (twice): %+v, want UNACCEPTABLE_CREDENTIAL and DUPLICATE_RESOURCE", raw.Results)
	}
	if _, ok := b.scram.Get("frank", sasl.ScramSHA256); ok {
		t.Fatal("frank was stored despite the error")
	}

	// A restart keeps the API's users, and so does a state checkpoint.
	b.Close()
	b, addr = start()
	if err := logsIn("carol", "carol-pw"); err != nil {
		t.Fatalf("carol after a restart: %v", err)
	}
	b.appendMu.Lock()
	cp := b.snapshotLocked()
	b.resetStateLocked()
	b.restoreCheckpointLocked(cp)
	b.appendMu.Unlock()
	if _, ok := b.scram.Get("carol", sasl.ScramSHA512); !ok {
		t.Fatal("the state checkpoint lost carol")
	}

	// Deleting carol's credentials ends her logins; deleting alice's API
	// credentials brings back her file password.
	adm = kadm.NewClient(newClient(t, addr, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha512Mechanism())))
	res, err = adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{
		{User: "carol", Mechanism: kadm.ScramSha256}, {User: "carol", Mechanism: kadm.ScramSha512},
		{User: "alice", Mechanism: kadm.ScramSha256}, {User: "alice", Mechanism: kadm.ScramSha512},
	}, nil)
	if err != nil || res["carol"].Err != nil || res["alice"].Err != nil {
		t.Fatalf("deleting: %+v %v", res, err)
	}
	if err := logsIn("carol", "carol-pw"); err == nil {
		t.Fatal("carol logs in after her credentials were deleted")
	}
	if err := logsIn("alice", "file-pw"); err != nil {
		t.Fatalf("alice's file password after her API credentials went: %v", err)
	}
	res, _ = adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "carol", Mechanism: kadm.ScramSha256}}, nil)
	if !errors.Is(res["carol"].Err, kerr.ResourceNotFound) {
		t.Fatalf("deleting carol again: %+v, want RESOURCE_NOT_FOUND", res)
	}
}

// The credential derived from a salted password is the one the password
// gives directly.
func TestCredentialFromSalted(t *testing.T) {
	c, err := sasl.NewCredential(sasl.ScramSHA256, "pw", 4096)
	if err != nil {
		t.Fatal(err)
	}
	salted := scramSalted(t, "pw", c.Salt, c.Iterations)
	got, err := sasl.CredentialFromSalted(sasl.ScramSHA256, c.Salt, salted, c.Iterations)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.StoredKey) != string(c.StoredKey) || string(got.ServerKey) != string(c.ServerKey) {
		t.Fatal("keys differ")
	}
	if _, err := sasl.CredentialFromSalted(sasl.ScramSHA512, c.Salt, salted, 4096); err == nil {
		t.Fatal("a 32-byte salted password accepted for SCRAM-SHA-512")
	}
}

func scramSalted(t *testing.T, pw string, salt []byte, iterations int) []byte {
	t.Helper()
	k, err := pbkdf2.Key(sha256.New, pw, salt, iterations, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
