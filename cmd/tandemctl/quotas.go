package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// quotasCmd implements `tandemctl quotas`, the operator's kafka-configs.sh
// for client quotas: it describes and alters the producer_byte_rate and
// consumer_byte_rate quotas of users, client ids, users with client ids
// and their defaults, through the brokers' Kafka listener
// (DescribeClientQuotas, AlterClientQuotas; any broker answers, followers
// hand changes to the leader). It connects as `tandemctl acls` does; with
// --acls the brokers want DESCRIBE_CONFIGS (to describe) or ALTER_CONFIGS
// (to alter) on the cluster, or a super user.
//
// --describe prints one line per entity with quotas, sorted: all of them,
// or those that have the entity parts given (--user alice: user=alice and
// user=alice with any client id). --alter sets (--add-config) and removes
// (--delete-config) quotas of exactly the entity given. Values are whole
// bytes per second, optionally with K, M or G (powers of 1024); keys go to
// the brokers as given, so that their own refusal of an unsupported one
// (INVALID_REQUEST with the reason) is what the operator sees.
func quotasCmd(ctx context.Context, args []string, stdin io.Reader, out io.Writer, timeout time.Duration) error {
	var o quotasOpts
	fs := flag.NewFlagSet("quotas", flag.ContinueOnError)
	o.conn.flags(fs, "quotas", &o.bootstrap)
	fs.BoolVar(&o.describe, "describe", false, "print the client quotas (all, or those of the entity given)")
	fs.BoolVar(&o.alter, "alter", false, "set or remove quotas of the entity given")
	fs.Var(&o.user, "user", "the user (the principal's name: User:alice is alice)")
	fs.BoolVar(&o.userDefault, "user-default", false, "the default of users (applies to each user without its own quota)")
	fs.Var(&o.clientID, "client-id", "the client id")
	fs.BoolVar(&o.clientIDDefault, "client-id-default", false, "the default of client ids")
	fs.Var(&o.add, "add-config", "quotas to set, KEY=VALUE[,KEY=VALUE] (repeatable): producer_byte_rate, consumer_byte_rate; VALUE in bytes/s, e.g. 1048576 or 1M")
	fs.Var(&o.del, "delete-config", "quotas to remove, KEY[,KEY] (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{"quotas: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("quotas takes no arguments (got %q)", fs.Args())}
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
	if o.describe {
		return o.runDescribe(ctx, adm, out)
	}
	return o.runAlter(ctx, adm, ops, out)
}

// quotasOpts is the command line of `tandemctl quotas`.
type quotasOpts struct {
	bootstrap                    string
	conn                         kafkaConn
	describe, alter              bool
	user, clientID               nameFlag
	userDefault, clientIDDefault bool
	add, del                     stringsFlag
}

// nameFlag is a flag given at most once, whose value may not be empty.
type nameFlag struct {
	name string
	set  bool
}

func (f *nameFlag) String() string { return f.name }

func (f *nameFlag) Set(v string) error {
	switch {
	case f.set:
		return errors.New("given twice")
	case v == "":
		return errors.New("empty name (the default is --user-default or --client-id-default)")
	}
	f.name, f.set = v, true
	return nil
}

// check refuses inconsistent command lines and returns the quota changes
// of --alter, in the order given (sets first).
func (o *quotasOpts) check() ([]kadm.AlterClientQuotaOp, error) {
	if err := o.conn.check(o.bootstrap); err != nil {
		return nil, err
	}
	switch {
	case o.describe == o.alter:
		return nil, usageError{"quotas needs exactly one of --describe and --alter"}
	case o.user.set && o.userDefault:
		return nil, usageError{"quotas: --user and --user-default exclude each other"}
	case o.clientID.set && o.clientIDDefault:
		return nil, usageError{"quotas: --client-id and --client-id-default exclude each other"}
	}
	if o.describe {
		if len(o.add)+len(o.del) > 0 {
			return nil, usageError{"quotas --describe takes no --add-config or --delete-config"}
		}
		return nil, nil
	}
	if len(o.entity()) == 0 {
		return nil, usageError{"quotas --alter needs an entity: --user NAME, --user-default, --client-id NAME or --client-id-default"}
	}
	var ops []kadm.AlterClientQuotaOp
	seen := map[string]bool{}
	addOp := func(op kadm.AlterClientQuotaOp) error {
		if seen[op.Key] {
			return usageError{fmt.Sprintf("quotas: %s given twice", op.Key)}
		}
		seen[op.Key] = true
		ops = append(ops, op)
		return nil
	}
	for _, s := range o.add {
		for _, kv := range splitList(s, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok || k == "" || v == "" {
				return nil, usageError{fmt.Sprintf("quotas: --add-config %q is not of the form KEY=VALUE", kv)}
			}
			n, err := parseQuotaValue(v)
			if err != nil {
				return nil, usageError{fmt.Sprintf("quotas: %s: %v", k, err)}
			}
			if err := addOp(kadm.AlterClientQuotaOp{Key: k, Value: float64(n)}); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range o.del {
		for _, k := range splitList(s, ",") {
			if strings.Contains(k, "=") {
				return nil, usageError{fmt.Sprintf("quotas: --delete-config takes keys only (got %q)", k)}
			}
			if err := addOp(kadm.AlterClientQuotaOp{Key: k, Remove: true}); err != nil {
				return nil, err
			}
		}
	}
	if len(ops) == 0 {
		return nil, usageError{"quotas --alter needs --add-config KEY=VALUE or --delete-config KEY"}
	}
	return ops, nil
}

// maxQuotaValue bounds a quota value so that it is exact as the float64
// the protocol carries.
const maxQuotaValue = 1 << 53

// parseQuotaValue reads a whole number of bytes per second, at least 1,
// optionally with K, M or G (1024, 1024², 1024³).
func parseQuotaValue(s string) (int64, error) {
	orig, mult := s, int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange):
		return 0, errors.New("value too large")
	case err != nil:
		return 0, fmt.Errorf("%q is not a whole number of bytes per second (e.g. 1048576, 512K, 10M, 1G)", orig)
	case n < 1:
		return 0, fmt.Errorf("the value must be at least 1 byte per second (got %s)", orig)
	case n > maxQuotaValue/mult:
		return 0, errors.New("value too large")
	}
	return n * mult, nil
}

// entity is the entity of the flags, user first; empty without entity
// flags.
func (o *quotasOpts) entity() kadm.ClientQuotaEntity {
	var e kadm.ClientQuotaEntity
	switch {
	case o.user.set:
		name := o.user.name
		e = append(e, kadm.ClientQuotaEntityComponent{Type: "user", Name: &name})
	case o.userDefault:
		e = append(e, kadm.ClientQuotaEntityComponent{Type: "user"})
	}
	switch {
	case o.clientID.set:
		name := o.clientID.name
		e = append(e, kadm.ClientQuotaEntityComponent{Type: "client-id", Name: &name})
	case o.clientIDDefault:
		e = append(e, kadm.ClientQuotaEntityComponent{Type: "client-id"})
	}
	return e
}

func (o *quotasOpts) runDescribe(ctx context.Context, adm *kadm.Client, out io.Writer) error {
	// Each part given is matched exactly (a name, or the default);
	// entities with other parts too are described as well (not strict).
	var filter []kadm.DescribeClientQuotaComponent
	for _, c := range o.entity() {
		fc := kadm.DescribeClientQuotaComponent{Type: c.Type, MatchName: c.Name, MatchType: 0} // exact
		if c.Name == nil {
			fc.MatchType = 1 // the default
		}
		filter = append(filter, fc)
	}
	described, err := adm.DescribeClientQuotas(ctx, false, filter)
	if err != nil {
		return fmt.Errorf("describing client quotas at %s: %w", o.bootstrap, err)
	}
	if len(described) == 0 {
		fmt.Fprintln(out, "no client quotas")
		return nil
	}
	type row struct{ entity, values string }
	rows := make([]row, 0, len(described))
	for _, d := range described {
		vals := append(kadm.ClientQuotaValues(nil), d.Values...)
		sort.Slice(vals, func(i, j int) bool { return vals[i].Key < vals[j].Key })
		var vs []string
		for _, v := range vals {
			vs = append(vs, v.Key+"="+strconv.FormatFloat(v.Value, 'f', -1, 64))
		}
		rows = append(rows, row{entityString(d.Entity), strings.Join(vs, " ")})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].entity < rows[j].entity })
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTITY\tQUOTAS")
	for _, r := range rows {
		fmt.Fprintln(tw, r.entity+"\t"+r.values)
	}
	tw.Flush()
	_, err = out.Write(buf.Bytes())
	return err
}

func (o *quotasOpts) runAlter(ctx context.Context, adm *kadm.Client, ops []kadm.AlterClientQuotaOp, out io.Writer) error {
	entity := o.entity()
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{Entity: entity, Ops: ops}})
	if err != nil {
		return fmt.Errorf("altering client quotas at %s: %w", o.bootstrap, err)
	}
	if len(res) != 1 {
		return fmt.Errorf("altering client quotas at %s: the broker answered %d results for 1 entity", o.bootstrap, len(res))
	}
	if r := res[0]; r.Err != nil {
		return fmt.Errorf("altering %s: %w", entityString(entity), brokerErr(r.Err, r.ErrMessage))
	}
	var changes []string
	for _, op := range ops {
		if op.Remove {
			changes = append(changes, op.Key+" removed")
		} else {
			changes = append(changes, op.Key+"="+strconv.FormatFloat(op.Value, 'f', -1, 64))
		}
	}
	fmt.Fprintf(out, "altered: %s: %s\n", entityString(entity), strings.Join(changes, ", "))
	return nil
}

// entityString is an entity as kafka-configs.sh names it, the user first:
// user=alice,client-id=<default>.
func entityString(e kadm.ClientQuotaEntity) string {
	rank := func(t string) int {
		switch t {
		case "user":
			return 0
		case "client-id":
			return 1
		}
		return 2
	}
	cs := append(kadm.ClientQuotaEntity(nil), e...)
	sort.SliceStable(cs, func(i, j int) bool { return rank(cs[i].Type) < rank(cs[j].Type) })
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String() // type=name, type=<default>
	}
	return strings.Join(parts, ",")
}
