package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tandem-io/tandem/broker/acl"
	"github.com/tandem-io/tandem/sidecar"
)

// aclsCmd implements `tandemctl acls`, the operator's kafka-acls.sh: it
// lists, adds and removes the Kafka ACLs of brokers started with --acls,
// through their Kafka listener (DescribeAcls, CreateAcls, DeleteAcls; any
// broker answers, followers hand changes to the leader). It logs in as a
// super user, or as a principal with ALTER (DESCRIBE to list) on the
// cluster, with SASL and/or a TLS client certificate.
//
// --list prints one line per binding; with a resource flag only the
// bindings that apply to that resource (its LITERAL name, the LITERAL
// wildcard "*", the PREFIXED patterns it starts with; with --prefixed, the
// PREFIXED pattern of that name only). --add and --remove take the
// principals, hosts (default "*"), operations and resources, and act on
// every combination of them, as kafka-acls.sh; --remove deletes exactly
// those bindings (--operation Any: whatever their operation).
//
// Every error the brokers answer (CLUSTER_AUTHORIZATION_FAILED,
// SECURITY_DISABLED on a broker without --acls, INVALID_REQUEST) is
// returned with the broker's message; command-line mistakes are usage
// errors.
func aclsCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var o aclsOpts
	fs := flag.NewFlagSet("acls", flag.ContinueOnError)
	o.conn.flags(fs, "acls", &o.bootstrap)
	fs.BoolVar(&o.list, "list", false, "list the ACLs (all, or those that apply to the resources given)")
	fs.BoolVar(&o.add, "add", false, "add ACLs")
	fs.BoolVar(&o.remove, "remove", false, "remove ACLs")
	fs.Var(&o.allow, "allow-principal", "principal to allow, e.g. User:alice or User:CN=app,O=Example (repeatable)")
	fs.Var(&o.deny, "deny-principal", "principal to deny (repeatable)")
	fs.Var(&o.principals, "principal", "with --list: only the ACLs of this principal (repeatable)")
	fs.Var(&o.hosts, "host", "host the principals connect from (repeatable; default * = any host)")
	fs.Var(&o.ops, "operation", "operations, comma separated or repeated: Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All")
	fs.Var(&o.topics, "topic", "topic (repeatable; * means every topic)")
	fs.Var(&o.groups, "group", "consumer group (repeatable; * means every group)")
	fs.BoolVar(&o.cluster, "cluster", false, "the cluster resource (kafka-cluster)")
	fs.Var(&o.txnIDs, "transactional-id", "transactional id (repeatable; * means every id)")
	fs.BoolVar(&o.prefixed, "prefixed", false, "the resource names are prefixes (pattern PREFIXED; default LITERAL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{"acls: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("acls takes no arguments (got %q)", fs.Args())}
	}
	ops, err := o.check()
	if err != nil {
		return err
	}
	ctx, adm, closeAdm, err := o.conn.admin(ctx, o.bootstrap, stdin, timeout)
	if err != nil {
		return err
	}
	defer closeAdm()
	switch {
	case o.list:
		return o.runList(ctx, adm, out)
	case o.add:
		return o.runAdd(ctx, adm, ops, out)
	}
	return o.runRemove(ctx, adm, ops, out)
}

// aclsOpts is the command line of `tandemctl acls`.
type aclsOpts struct {
	bootstrap               string
	conn                    kafkaConn
	list, add, remove       bool
	allow, deny, principals stringsFlag
	hosts, ops              stringsFlag
	topics, groups, txnIDs  stringsFlag
	cluster, prefixed       bool
}

// stringsFlag is a flag that may be given several times.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// check refuses inconsistent command lines and returns the operations of
// --add and --remove.
func (o *aclsOpts) check() ([]kmsg.ACLOperation, error) {
	modes := 0
	for _, m := range []bool{o.list, o.add, o.remove} {
		if m {
			modes++
		}
	}
	mode := "--list"
	switch {
	case o.add:
		mode = "--add"
	case o.remove:
		mode = "--remove"
	}
	hasResource := len(o.topics)+len(o.groups)+len(o.txnIDs) > 0 || o.cluster
	if err := o.conn.check(o.bootstrap); err != nil {
		return nil, err
	}
	switch {
	case modes != 1:
		return nil, usageError{"acls needs exactly one of --list, --add and --remove"}
	case o.prefixed && o.cluster:
		return nil, usageError{"acls: --prefixed does not apply to --cluster"}
	case o.prefixed && !hasResource:
		return nil, usageError{"acls: --prefixed needs --topic, --group or --transactional-id"}
	}
	for _, names := range []stringsFlag{o.topics, o.groups, o.txnIDs} {
		for _, n := range names {
			if n == "" {
				return nil, usageError{"acls: empty resource name"}
			}
		}
	}
	for _, p := range append(append(append([]string{}, o.allow...), o.deny...), o.principals...) {
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return nil, usageError{fmt.Sprintf("acls: principal %q is not of the form User:name", p)}
		}
	}
	if o.list {
		if len(o.allow)+len(o.deny)+len(o.hosts)+len(o.ops) > 0 {
			return nil, usageError{"acls --list filters by resource and --principal only (no --allow-principal, --deny-principal, --host, --operation)"}
		}
		return nil, nil
	}
	switch {
	case len(o.principals) > 0:
		return nil, usageError{fmt.Sprintf("acls %s takes --allow-principal or --deny-principal, not --principal", mode)}
	case len(o.allow)+len(o.deny) == 0:
		return nil, usageError{fmt.Sprintf("acls %s needs --allow-principal or --deny-principal", mode)}
	case len(o.ops) == 0:
		return nil, usageError{fmt.Sprintf("acls %s needs --operation", mode)}
	case !hasResource:
		return nil, usageError{fmt.Sprintf("acls %s needs a resource: --topic, --group, --cluster or --transactional-id", mode)}
	}
	for _, h := range o.hosts {
		if h == "" {
			return nil, usageError{"acls: empty --host (use * for every host)"}
		}
	}
	var ops []kmsg.ACLOperation
	for _, s := range o.ops {
		for _, name := range splitList(s, ",") {
			op, err := kmsg.ParseACLOperation(name)
			switch {
			case err != nil || op == kmsg.ACLOperationUnknown:
				return nil, usageError{fmt.Sprintf("acls: unknown operation %q (Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All)", name)}
			case op == kmsg.ACLOperationAny && o.add:
				return nil, usageError{"acls --add: operation Any only matches (with --remove); to grant every operation use All"}
			}
			ops = append(ops, op)
		}
	}
	if len(ops) == 0 {
		return nil, usageError{fmt.Sprintf("acls %s needs --operation", mode)}
	}
	return ops, nil
}

// kafkaConn is the connection flags of the commands that talk to the
// brokers' Kafka listener (acls, quotas, transactions, sasl-user
// --bootstrap): SASL and TLS. The bootstrap addresses are the command's
// own field (--bootstrap, default $TANDEM_BOOTSTRAP).
type kafkaConn struct {
	cmd                           string // the command, for messages
	mechanism, user, passwordFile string
	tls                           sidecar.TLSFiles
}

// flags defines --bootstrap (into bootstrap) and the connection flags of
// command cmd in fs.
func (c *kafkaConn) flags(fs *flag.FlagSet, cmd string, bootstrap *string) {
	c.cmd = cmd
	fs.StringVar(bootstrap, "bootstrap", os.Getenv("TANDEM_BOOTSTRAP"), "Kafka listeners, HOST:PORT,... (default $TANDEM_BOOTSTRAP; required)")
	fs.StringVar(&c.mechanism, "sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default SCRAM-SHA-512 with --sasl-user)")
	fs.StringVar(&c.user, "sasl-user", "", "log in with SASL as this user")
	fs.StringVar(&c.passwordFile, "sasl-password-file", "", "file whose first line is the password of --sasl-user (default: the first line of standard input)")
	fs.StringVar(&c.tls.CAFile, "tls-ca", "", "CA certificate to verify a TLS Kafka listener (empty: plaintext)")
	fs.StringVar(&c.tls.CertFile, "tls-cert", "", "client certificate for a listener that asks for one (its subject is the principal unless SASL is used)")
	fs.StringVar(&c.tls.KeyFile, "tls-key", "", "key of --tls-cert")
	fs.StringVar(&c.tls.ServerName, "tls-server-name", "", "name expected in the brokers' certificates (default: the host dialed)")
}

// check refuses a missing bootstrap address and SASL flags without
// --sasl-user.
func (c *kafkaConn) check(bootstrap string) error {
	switch {
	case len(splitList(bootstrap, ",")) == 0:
		return usageError{c.cmd + " needs --bootstrap HOST:PORT (or $TANDEM_BOOTSTRAP)"}
	case c.mechanism != "" && c.user == "":
		return usageError{c.cmd + ": --sasl-mechanism needs --sasl-user"}
	case c.passwordFile != "" && c.user == "":
		return usageError{c.cmd + ": --sasl-password-file needs --sasl-user"}
	}
	return nil
}

// admin checks the flags (check) and returns an admin client of the
// brokers at bootstrap (as client does), a context for the command's
// requests that ends after timeout, and the function that closes both.
func (c *kafkaConn) admin(ctx context.Context, bootstrap string, stdin io.Reader, timeout time.Duration) (context.Context, *kadm.Client, func(), error) {
	if err := c.check(bootstrap); err != nil {
		return nil, nil, nil, err
	}
	cl, err := c.client(bootstrap, stdin)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, kadm.NewClient(cl), func() { cancel(); cl.Close() }, nil
}

// parseWithNames parses a command's flags in fs, with names (of groups,
// topics) allowed before, between or after them, and returns the names.
func parseWithNames(fs *flag.FlagSet, args []string) ([]string, error) {
	var names []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{fs.Name() + ": " + err.Error()}
		}
		if fs.NArg() == 0 {
			return names, nil
		}
		names, rest = append(names, fs.Arg(0)), fs.Args()[1:]
	}
}

// client returns a Kafka client of the brokers at bootstrap, with SASL and
// TLS as the flags say. The SASL password is read here (from stdin when no
// --sasl-password-file is given). Mistakes in the flags and files are
// usage errors.
func (c *kafkaConn) client(bootstrap string, stdin io.Reader) (*kgo.Client, error) {
	opts, err := c.clientOpts(bootstrap, stdin)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, usageError{c.cmd + ": " + err.Error()}
	}
	return cl, nil
}

// clientOpts returns the options of the Kafka client: the bootstrap
// brokers, SASL and TLS.
func (c *kafkaConn) clientOpts(bootstrap string, stdin io.Reader) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(splitList(bootstrap, ",")...), kgo.ClientID("tandemctl")}
	if c.tls.Enabled() {
		tc, err := sidecar.ClientTLSConfig(c.tls)
		if err != nil {
			return nil, usageError{c.cmd + ": " + err.Error()}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.user == "" {
		return opts, nil
	}
	src := stdin
	if c.passwordFile != "" {
		f, err := os.Open(c.passwordFile)
		if err != nil {
			return nil, usageError{c.cmd + ": " + err.Error()}
		}
		defer f.Close()
		src = f
	}
	line, err := bufio.NewReader(src).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return nil, usageError{c.cmd + ": no SASL password (give --sasl-password-file or one line on standard input)"}
	}
	var mech sasl.Mechanism
	switch strings.ToUpper(c.mechanism) {
	case "PLAIN":
		mech = plain.Auth{User: c.user, Pass: password}.AsMechanism()
	case "SCRAM-SHA-256":
		mech = scram.Auth{User: c.user, Pass: password}.AsSha256Mechanism()
	case "", "SCRAM-SHA-512":
		mech = scram.Auth{User: c.user, Pass: password}.AsSha512Mechanism()
	default:
		return nil, usageError{fmt.Sprintf("%s: unknown --sasl-mechanism %q (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)", c.cmd, c.mechanism)}
	}
	return append(opts, kgo.SASL(mech)), nil
}

// resources puts the resource flags into b. Only the flags given are
// set: for describe and delete, kadm reads an empty Topics() as "every
// topic".
func (o *aclsOpts) resources(b *kadm.ACLBuilder) {
	if len(o.topics) > 0 {
		b.Topics(o.topics...)
	}
	if len(o.groups) > 0 {
		b.Groups(o.groups...)
	}
	if o.cluster {
		b.Clusters()
	}
	if len(o.txnIDs) > 0 {
		b.TransactionalIDs(o.txnIDs...)
	}
}

// bindings returns the builder of --add and --remove: every principal
// from every host, every operation on every resource.
func (o *aclsOpts) bindings(ops []kmsg.ACLOperation) *kadm.ACLBuilder {
	hosts := o.hosts
	if len(hosts) == 0 {
		hosts = []string{"*"}
	}
	b := kadm.NewACLs().Operations(ops...)
	if len(o.allow) > 0 {
		b.Allow(o.allow...).AllowHosts(hosts...)
	}
	if len(o.deny) > 0 {
		b.Deny(o.deny...).DenyHosts(hosts...)
	}
	o.resources(b)
	if o.prefixed {
		b.ResourcePatternType(kadm.ACLPatternPrefixed)
	} else {
		b.ResourcePatternType(kadm.ACLPatternLiteral)
	}
	return b
}

func (o *aclsOpts) runList(ctx context.Context, adm *kadm.Client, out io.Writer) error {
	b := kadm.NewACLs().Operations() // any operation
	if len(o.principals) > 0 {
		b.Allow(o.principals...).AllowHosts().Deny(o.principals...).DenyHosts()
	} else {
		b.Allow().AllowHosts().Deny().DenyHosts() // any principal, host and permission
	}
	switch {
	case len(o.topics)+len(o.groups)+len(o.txnIDs) == 0 && !o.cluster:
		b.AnyResource().ResourcePatternType(kadm.ACLPatternAny)
	case o.prefixed:
		o.resources(b)
		b.ResourcePatternType(kadm.ACLPatternPrefixed)
	default:
		o.resources(b)
		b.ResourcePatternType(kadm.ACLPatternMatch)
	}
	res, err := adm.DescribeACLs(ctx, b)
	if err != nil {
		return fmt.Errorf("listing ACLs at %s: %w", o.bootstrap, err)
	}
	// Several filters (two principals, two topics matching the same "*")
	// may select the same binding: print it once.
	seen := map[acl.Binding]bool{}
	var bs []acl.Binding
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("listing ACLs: %w", brokerErr(r.Err, r.ErrMessage))
		}
		for _, d := range r.Described {
			bd := acl.Binding{ResourceType: d.Type, ResourceName: d.Name, PatternType: d.Pattern,
				Principal: d.Principal, Host: d.Host, Operation: d.Operation, Permission: d.Permission}
			if !seen[bd] {
				seen[bd] = true
				bs = append(bs, bd)
			}
		}
	}
	acl.Sort(bs)
	header := []string{"RESOURCE_TYPE", "PATTERN", "NAME", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"}
	for _, line := range aligned(header, bs) {
		fmt.Fprintln(out, line)
	}
	return nil
}

func (o *aclsOpts) runAdd(ctx context.Context, adm *kadm.Client, ops []kmsg.ACLOperation, out io.Writer) error {
	res, err := adm.CreateACLs(ctx, o.bindings(ops))
	if err != nil {
		return fmt.Errorf("adding ACLs at %s: %w", o.bootstrap, err)
	}
	var added []acl.Binding
	var failed failures
	for _, r := range res {
		bd := acl.Binding{ResourceType: r.Type, ResourceName: r.Name, PatternType: r.Pattern,
			Principal: r.Principal, Host: r.Host, Operation: r.Operation, Permission: r.Permission}
		if r.Err != nil {
			failed.add(bd, brokerErr(r.Err, r.ErrMessage))
			continue
		}
		added = append(added, bd)
	}
	acl.Sort(added)
	for _, line := range aligned(nil, added) {
		fmt.Fprintln(out, "added:", line)
	}
	return failed.err("adding")
}

func (o *aclsOpts) runRemove(ctx context.Context, adm *kadm.Client, ops []kmsg.ACLOperation, out io.Writer) error {
	res, err := adm.DeleteACLs(ctx, o.bindings(ops))
	if err != nil {
		return fmt.Errorf("removing ACLs at %s: %w", o.bootstrap, err)
	}
	seen := map[acl.Binding]bool{}
	var removed []acl.Binding
	var failed failures
	for _, r := range res {
		if r.Err != nil {
			// The filter's own fields name what could not be removed.
			failed.add(acl.Binding{ResourceType: r.Type, ResourceName: deref(r.Name, acl.ClusterName), PatternType: r.Pattern,
				Principal: deref(r.Principal, "*"), Host: deref(r.Host, "*"), Operation: r.Operation, Permission: r.Permission},
				brokerErr(r.Err, r.ErrMessage))
			continue
		}
		for _, d := range r.Deleted {
			bd := acl.Binding{ResourceType: d.Type, ResourceName: d.Name, PatternType: d.Pattern,
				Principal: d.Principal, Host: d.Host, Operation: d.Operation, Permission: d.Permission}
			switch {
			case d.Err != nil:
				failed.add(bd, brokerErr(d.Err, d.ErrMessage))
			case !seen[bd]:
				seen[bd] = true
				removed = append(removed, bd)
			}
		}
	}
	acl.Sort(removed)
	for _, line := range aligned(nil, removed) {
		fmt.Fprintln(out, "removed:", line)
	}
	if len(removed) == 0 && len(failed) == 0 {
		fmt.Fprintln(out, "no ACL matched")
	}
	return failed.err("removing")
}

func deref(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

// brokerErr is a Kafka error a broker answered, with the broker's message
// when it gave one: "INVALID_REQUEST: invalid ACL: ..." (errors.Is still
// matches the Kafka error).
func brokerErr(err error, msg string) error {
	if msg == "" {
		return err
	}
	return brokerError{err: err, msg: msg}
}

type brokerError struct {
	err error
	msg string
}

func (e brokerError) Error() string {
	var ke *kerr.Error
	if errors.As(e.err, &ke) {
		return ke.Message + ": " + e.msg // the code's name, then the broker's words
	}
	return fmt.Sprintf("%v (%s)", e.err, e.msg)
}

func (e brokerError) Unwrap() error { return e.err }

// fields is a binding as the columns of --list.
func fields(b acl.Binding) []string {
	return []string{b.ResourceType.String(), b.PatternType.String(), b.ResourceName,
		b.Principal, b.Host, b.Operation.String(), b.Permission.String()}
}

// aligned returns the header (when given) and one line per binding, in
// columns.
func aligned(header []string, bs []acl.Binding) []string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	if header != nil {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, b := range bs {
		fmt.Fprintln(tw, strings.Join(fields(b), "\t"))
	}
	tw.Flush()
	if buf.Len() == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

// failures collects the bindings a broker refused, grouped by error.
type failures []failure

type failure struct {
	err      error
	bindings []acl.Binding
}

func (f *failures) add(b acl.Binding, err error) {
	for i := range *f {
		if (*f)[i].err.Error() == err.Error() {
			(*f)[i].bindings = append((*f)[i].bindings, b)
			return
		}
	}
	*f = append(*f, failure{err: err, bindings: []acl.Binding{b}})
}

// err is one error per distinct broker error, naming the first binding
// it refused: "adding TOPIC LITERAL t User:x * READ ALLOW (and 2 more):
// CLUSTER_AUTHORIZATION_FAILED: ...".
func (f failures) err(verb string) error {
	var errs []error
	for _, x := range f {
		more := ""
		if n := len(x.bindings) - 1; n > 0 {
			more = fmt.Sprintf(" (and %d more)", n)
		}
		errs = append(errs, fmt.Errorf("%s %s%s: %w", verb, strings.Join(fields(x.bindings[0]), " "), more, x.err))
	}
	return errors.Join(errs...)
}
