package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tandem-io/tandem/broker/sasl"
)

// saslUserCmd adds, changes or deletes a user in a broker's SASL users file
// (tandem-broker --sasl-users), which keeps SCRAM credentials, never the
// password: tandemctl sasl-user --file users.json --user alice (the
// password is read from --password-file, else from the first line of
// standard input); --delete removes the user; --list prints the users.
func saslUserCmd(args []string, stdin io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("sasl-user", flag.ContinueOnError)
	file := fs.String("file", "", "the users file (created when missing; required)")
	user := fs.String("user", "", "the user to add, change or delete")
	passwordFile := fs.String("password-file", "", "file whose first line is the password (default: the first line of standard input)")
	iterations := fs.Int("iterations", 4096, "SCRAM iterations (at least 4096)")
	del := fs.Bool("delete", false, "delete the user")
	list := fs.Bool("list", false, "list the users")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 || (*user == "") == !*list {
		return usageError{"sasl-user needs --file FILE and either --user NAME or --list"}
	}
	u, err := sasl.LoadUsers(*file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		u = &sasl.Users{}
	case err != nil:
		return err
	}
	if *list {
		for _, name := range u.Names() {
			fmt.Fprintln(out, name)
		}
		return nil
	}
	if *del {
		if _, ok := u.Users[*user]; !ok {
			return fmt.Errorf("sasl-user: %s has no user %q", *file, *user)
		}
		delete(u.Users, *user)
		if err := u.Save(*file); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted user %s from %s\n", *user, *file)
		return nil
	}
	src := stdin
	if *passwordFile != "" {
		f, err := os.Open(*passwordFile)
		if err != nil {
			return err
		}
		defer f.Close()
		src = f
	}
	line, err := bufio.NewReader(src).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return usageError{"sasl-user: no password (give --password-file or one line on standard input)"}
	}
	if err := u.SetPassword(*user, password, *iterations); err != nil {
		return err
	}
	if err := u.Save(*file); err != nil {
		return err
	}
	fmt.Fprintf(out, "user %s: SCRAM-SHA-256 and SCRAM-SHA-512 credentials (PLAIN checks against them) written to %s\n", *user, *file)
	return nil
}
