package main

import (
	"bufio"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/sasl"
)

// saslUserCmd manages SASL/SCRAM users, in one of two places.
//
// With --file it adds, changes or deletes a user in a broker's SASL users
// file (tandem-broker --sasl-users), which keeps SCRAM credentials, never
// the password: tandemctl sasl-user --file users.json --user alice (the
// password is read from --password-file, else from the first line of
// standard input); --delete removes the user; --list prints the users.
//
// With --bootstrap (or $TANDEM_BOOTSTRAP when --file is absent) it manages
// the users of the whole cluster through the brokers' Kafka listener
// (KIP-554's AlterUserScramCredentials and DescribeUserScramCredentials),
// connecting as `tandemctl acls` does: --sasl-user is the admin who logs
// in, --user the user changed. A user set this way gets SCRAM-SHA-256 and
// SCRAM-SHA-512 credentials (salted here; the password never leaves
// tandemctl) that every node applies and that come before any node's
// users file; --delete deletes the mechanisms the cluster lists for the
// user; --list prints each user with its mechanisms and iterations (the
// users of the answering node's file included). When both the admin's
// password and the user's come from standard input, the first line is the
// admin's and the second the user's.
func saslUserCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var o saslUserOpts
	fs := flag.NewFlagSet("sasl-user", flag.ContinueOnError)
	fs.StringVar(&o.file, "file", "", "the users file (created when missing; required unless --bootstrap)")
	fs.StringVar(&o.user, "user", "", "the user to add, change or delete")
	fs.StringVar(&o.passwordFile, "password-file", "", "file whose first line is the password (default: the first line of standard input; "+
		"with --bootstrap, the second line when the --sasl-user password is read from standard input too)")
	fs.IntVar(&o.iterations, "iterations", 4096, "SCRAM iterations (at least 4096; with --bootstrap 4096 to 16384)")
	fs.BoolVar(&o.del, "delete", false, "delete the user")
	fs.BoolVar(&o.list, "list", false, "list the users")
	o.conn.flags(fs, "sasl-user", &o.bootstrap)
	fs.Lookup("bootstrap").Usage = "Kafka listeners, HOST:PORT,...: manage the users of the whole cluster through the Kafka API instead of a --file " +
		"(default $TANDEM_BOOTSTRAP when --file is absent)"
	fs.Lookup("sasl-user").Usage = "with --bootstrap, log in with SASL as this user (the admin; --user is the user changed)"
	fs.Lookup("sasl-password-file").Usage = "file whose first line is the password of --sasl-user (default: the first line of standard input, " +
		"and then the user's password is the second line unless --password-file is given)"
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{"sasl-user: " + err.Error()}
	}
	o.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.given[f.Name] = true })
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("sasl-user takes no arguments (got %q)", fs.Args())}
	}
	if o.given["file"] {
		if o.given["bootstrap"] {
			return usageError{"sasl-user: --file and --bootstrap exclude each other (one node's users file, or the cluster through the Kafka API)"}
		}
		for _, name := range []string{"sasl-user", "sasl-password-file", "sasl-mechanism", "tls-ca", "tls-cert", "tls-key", "tls-server-name"} {
			if o.given[name] {
				return usageError{fmt.Sprintf("sasl-user --file: --%s applies only with --bootstrap", name)}
			}
		}
		return o.runFile(stdin, out)
	}
	if len(splitList(o.bootstrap, ",")) == 0 {
		return usageError{"sasl-user needs --file FILE or --bootstrap HOST:PORT (or $TANDEM_BOOTSTRAP), and either --user NAME or --list"}
	}
	return o.runCluster(ctx, stdin, out, timeout)
}

// saslUserOpts is the command line of `tandemctl sasl-user`.
type saslUserOpts struct {
	file, user, passwordFile string
	iterations               int
	del, list                bool
	bootstrap                string
	conn                     kafkaConn
	given                    map[string]bool // the flags on the command line
}

// runFile edits the users file.
func (o *saslUserOpts) runFile(stdin io.Reader, out io.Writer) error {
	if o.file == "" || (o.user == "") == !o.list {
		return usageError{"sasl-user needs --file FILE and either --user NAME or --list"}
	}
	u, err := sasl.LoadUsers(o.file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		u = &sasl.Users{}
	case err != nil:
		return err
	}
	if o.list {
		for _, name := range u.Names() {
			fmt.Fprintln(out, name)
		}
		return nil
	}
	if o.del {
		if _, ok := u.Users[o.user]; !ok {
			return fmt.Errorf("sasl-user: %s has no user %q", o.file, o.user)
		}
		delete(u.Users, o.user)
		if err := u.Save(o.file); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted user %s from %s\n", o.user, o.file)
		return nil
	}
	password, err := o.password(stdin)
	if err != nil {
		return err
	}
	if password == "" {
		return usageError{"sasl-user: no password (give --password-file or one line on standard input)"}
	}
	if err := u.SetPassword(o.user, password, o.iterations); err != nil {
		return err
	}
	if err := u.Save(o.file); err != nil {
		return err
	}
	fmt.Fprintf(out, "user %s: SCRAM-SHA-256 and SCRAM-SHA-512 credentials (PLAIN checks against them) written to %s\n", o.user, o.file)
	return nil
}

// password returns the first line of --password-file, else the next line
// of stdin ("" when there is none).
func (o *saslUserOpts) password(stdin io.Reader) (string, error) {
	src := stdin
	if o.passwordFile != "" {
		f, err := os.Open(o.passwordFile)
		if err != nil {
			return "", usageError{"sasl-user: " + err.Error()}
		}
		defer f.Close()
		src = f
	}
	// A *bufio.Reader (the one stdin is wrapped in) comes back unchanged,
	// so that a line read before (the --sasl-user password) stays read.
	line, err := bufio.NewReader(src).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// checkCluster refuses inconsistent command lines of the --bootstrap mode.
func (o *saslUserOpts) checkCluster() error {
	if err := o.conn.check(o.bootstrap); err != nil {
		return err
	}
	switch {
	case (o.user == "") == !o.list:
		return usageError{"sasl-user --bootstrap needs either --user NAME or --list"}
	case o.list && o.del:
		return usageError{"sasl-user: --delete needs --user NAME, not --list"}
	case o.iterations < sasl.MinIterations || o.iterations > sasl.MaxIterations:
		return usageError{fmt.Sprintf("sasl-user --bootstrap: --iterations %d is outside %d..%d", o.iterations, sasl.MinIterations, sasl.MaxIterations)}
	}
	if o.list || o.del {
		for _, name := range []string{"password-file", "iterations"} {
			if o.given[name] {
				return usageError{fmt.Sprintf("sasl-user: --%s applies only when setting a password (not with --list or --delete)", name)}
			}
		}
	}
	return nil
}

// runCluster manages the users of the cluster through the Kafka API.
func (o *saslUserOpts) runCluster(ctx context.Context, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	if err := o.checkCluster(); err != nil {
		return err
	}
	// One reader of stdin for both passwords: the admin's (read by
	// client, when it has no --sasl-password-file) is its first line, the
	// user's the next.
	in := bufio.NewReader(stdin)
	cl, err := o.conn.client(o.bootstrap, in)
	if err != nil {
		return err
	}
	defer cl.Close()
	var password string
	if !o.list && !o.del {
		if password, err = o.password(in); err != nil {
			return err
		}
		if password == "" {
			msg := "one line on standard input"
			if o.conn.user != "" && o.conn.passwordFile == "" {
				msg = "a second line on standard input, after the --sasl-user password"
			}
			return usageError{fmt.Sprintf("sasl-user: no password for user %s (give --password-file or %s)", o.user, msg)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case o.list:
		return o.runList(ctx, cl, out)
	case o.del:
		return o.runDelete(ctx, cl, out)
	}
	return o.runSet(ctx, cl, password, out)
}

// scramMechanisms are the mechanisms a user gets, in Kafka's numbers.
var scramMechanisms = []kadm.ScramMechanism{kadm.ScramSha256, kadm.ScramSha512}

func (o *saslUserOpts) runSet(ctx context.Context, cl *kgo.Client, password string, out io.Writer) error {
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	for _, m := range scramMechanisms {
		up, err := saltedUpsertion(o.user, m, password, o.iterations)
		if err != nil {
			return err
		}
		req.Upsertions = append(req.Upsertions, up)
	}
	if err := alterSCRAM(ctx, cl, req, o.user); err != nil {
		return fmt.Errorf("setting user %s at %s: %w", o.user, o.bootstrap, err)
	}
	fmt.Fprintf(out, "user %s: SCRAM-SHA-256 and SCRAM-SHA-512 credentials set on the cluster (every node; they come before any users file)\n", o.user)
	return nil
}

// saltedUpsertion is the upsertion of a new credential of user: a random
// salt and the salted password (RFC 5802's SaltedPassword, PBKDF2 with
// the mechanism's hash), as KIP-554 has clients send them.
func saltedUpsertion(user string, m kadm.ScramMechanism, password string, iterations int) (kmsg.AlterUserSCRAMCredentialsRequestUpsertion, error) {
	up := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
	salt := make([]byte, 24)
	if _, err := rand.Read(salt); err != nil {
		return up, err
	}
	var salted []byte
	var err error
	switch m {
	case kadm.ScramSha256:
		salted, err = pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	case kadm.ScramSha512:
		salted, err = pbkdf2.Key(sha512.New, password, salt, iterations, sha512.Size)
	default:
		err = fmt.Errorf("unknown SCRAM mechanism %d", m)
	}
	if err != nil {
		return up, err
	}
	up.Name, up.Mechanism, up.Iterations = user, int8(m), int32(iterations)
	up.Salt, up.SaltedPassword = salt, salted
	return up, nil
}

// alterSCRAM sends req (kgo sends it to the controller, the leader) and
// returns the error the broker answered for user, with its message.
func alterSCRAM(ctx context.Context, cl *kgo.Client, req *kmsg.AlterUserSCRAMCredentialsRequest, user string) error {
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, r := range resp.Results {
		if r.User == user {
			if r.ErrorCode != 0 {
				return brokerErr(kerr.ErrorForCode(r.ErrorCode), deref(r.ErrorMessage, ""))
			}
			return nil
		}
	}
	return fmt.Errorf("the broker answered no result for user %s", user)
}

// describeSCRAM returns DescribeUserScramCredentials' results for users
// (every user when none is given).
func describeSCRAM(ctx context.Context, cl *kgo.Client, users ...string) ([]kmsg.DescribeUserSCRAMCredentialsResponseResult, error) {
	req := kmsg.NewPtrDescribeUserSCRAMCredentialsRequest()
	for _, u := range users {
		ru := kmsg.NewDescribeUserSCRAMCredentialsRequestUser()
		ru.Name = u
		req.Users = append(req.Users, ru)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if resp.ErrorCode != 0 {
		return nil, brokerErr(kerr.ErrorForCode(resp.ErrorCode), deref(resp.ErrorMessage, ""))
	}
	return resp.Results, nil
}

// scramCreds formats a user's mechanisms: "SCRAM-SHA-256(4096) SCRAM-SHA-512(8192)".
func scramCreds(infos []kmsg.DescribeUserSCRAMCredentialsResponseResultCredentialInfo) string {
	infos = slices.Clone(infos)
	sort.Slice(infos, func(i, j int) bool { return infos[i].Mechanism < infos[j].Mechanism })
	var s []string
	for _, ci := range infos {
		s = append(s, fmt.Sprintf("%s(%d)", kadm.ScramMechanism(ci.Mechanism), ci.Iterations))
	}
	return strings.Join(s, " ")
}

func (o *saslUserOpts) runList(ctx context.Context, cl *kgo.Client, out io.Writer) error {
	res, err := describeSCRAM(ctx, cl)
	if err != nil {
		return fmt.Errorf("listing SCRAM users at %s: %w", o.bootstrap, err)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].User < res[j].User })
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	var errs []error
	for _, r := range res {
		if r.ErrorCode != 0 {
			errs = append(errs, fmt.Errorf("user %s: %w", r.User, brokerErr(kerr.ErrorForCode(r.ErrorCode), deref(r.ErrorMessage, ""))))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\n", r.User, scramCreds(r.CredentialInfos))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// runDelete deletes the mechanisms DescribeUserScramCredentials lists for
// the user. Describe lists the users of the answering node's users file
// too, which the API cannot delete (RESOURCE_NOT_FOUND): when both
// mechanisms are listed and deleting them together fails so, each is
// deleted alone, so that those set through the API go.
func (o *saslUserOpts) runDelete(ctx context.Context, cl *kgo.Client, out io.Writer) error {
	noneSet := fmt.Errorf("no SCRAM credentials set through the Kafka API for user %s", o.user)
	res, err := describeSCRAM(ctx, cl, o.user)
	if err != nil {
		return fmt.Errorf("describing user %s at %s: %w", o.user, o.bootstrap, err)
	}
	var mechs []kadm.ScramMechanism
	for _, r := range res {
		if r.User != o.user {
			continue
		}
		switch err := kerr.ErrorForCode(r.ErrorCode); {
		case errors.Is(err, kerr.ResourceNotFound):
			return noneSet
		case err != nil:
			return fmt.Errorf("describing user %s: %w", o.user, brokerErr(err, deref(r.ErrorMessage, "")))
		}
		for _, ci := range r.CredentialInfos {
			if m := kadm.ScramMechanism(ci.Mechanism); slices.Contains(scramMechanisms, m) && !slices.Contains(mechs, m) {
				mechs = append(mechs, m)
			}
		}
	}
	if len(mechs) == 0 {
		return noneSet
	}
	slices.Sort(mechs)
	deleted := mechs
	err = alterSCRAM(ctx, cl, o.deletions(mechs...), o.user)
	if errors.Is(err, kerr.ResourceNotFound) && len(mechs) > 1 {
		deleted = nil
		for _, m := range mechs {
			switch e := alterSCRAM(ctx, cl, o.deletions(m), o.user); {
			case e == nil:
				deleted = append(deleted, m)
			case !errors.Is(e, kerr.ResourceNotFound):
				return fmt.Errorf("deleting user %s's %s at %s: %w", o.user, m, o.bootstrap, e)
			}
		}
		if len(deleted) > 0 {
			err = nil
		}
	}
	switch {
	case errors.Is(err, kerr.ResourceNotFound):
		return fmt.Errorf("%w: DescribeUserScramCredentials lists its %s from a node's users file, which only `tandemctl sasl-user --file` changes (%w)",
			noneSet, mechNames(mechs), err)
	case err != nil:
		return fmt.Errorf("deleting user %s at %s: %w", o.user, o.bootstrap, err)
	}
	fmt.Fprintf(out, "deleted user %s from the cluster (mechanisms: %s)\n", o.user, mechNames(deleted))
	// What the cluster lists now comes from the users file: that password
	// applies again.
	if res, err := describeSCRAM(ctx, cl, o.user); err == nil {
		for _, r := range res {
			if r.User == o.user && r.ErrorCode == 0 && len(r.CredentialInfos) > 0 {
				fmt.Fprintf(out, "user %s is still in a node's users file (%s): its password there applies again; change it with `tandemctl sasl-user --file`\n",
					o.user, scramCreds(r.CredentialInfos))
			}
		}
	}
	return nil
}

// deletions is the request deleting the user's mechs.
func (o *saslUserOpts) deletions(mechs ...kadm.ScramMechanism) *kmsg.AlterUserSCRAMCredentialsRequest {
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	for _, m := range mechs {
		d := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
		d.Name, d.Mechanism = o.user, int8(m)
		req.Deletions = append(req.Deletions, d)
	}
	return req
}

func mechNames(mechs []kadm.ScramMechanism) string {
	var s []string
	for _, m := range mechs {
		s = append(s, m.String())
	}
	return strings.Join(s, ", ")
}
