package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ctxio"
)

// newBrokerPasswdCmd is 'mqtk broker passwd': the users of --password-file,
// in mosquitto's format.
func newBrokerPasswdCmd(a *app) *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "passwd FILE USER",
		Short: "Add a user to a mosquitto password file, or change their password",
		Long: `Add USER to the password FILE, or change their password, in mosquitto's
format (PBKDF2-SHA512, "$7$"), so the file works with both 'mqtk broker
--password-file' and mosquitto. Other lines are kept; the file is created
with mode 0600 if missing. The password is asked for twice on a terminal,
or read as the first line of standard input with --password-stdin.`,
		Example: `  mqtk broker passwd users.txt alice
  echo "$ALICE_PASSWORD" | mqtk broker passwd --password-stdin users.txt alice`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return clierr.Usagef("want FILE USER, got %d argument(s)", len(args)).Hintf("give FILE USER as in 'mqtk broker passwd users.txt alice'")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readNewPassword(cmd.Context(), a, fromStdin, args[1])
			if err != nil {
				return err
			}
			if err := broker.SetPassword(args[0], args[1], pw); err != nil {
				return err
			}
			a.io.Infof("password for %s set in %s", args[1], args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	return cmd
}

// readNewPassword reads the new password: the first line of stdin with
// --password-stdin, else asked twice on the terminal.
func readNewPassword(ctx context.Context, a *app, fromStdin bool, user string) ([]byte, error) {
	if fromStdin {
		b, err := ctxio.ReadLine(ctx, a.io.In)
		line := string(b)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return nil, clierr.Usagef("no password on standard input")
		}
		return []byte(pw), nil
	}
	f, ok := a.io.In.(*os.File)
	if !ok || !a.io.InTTY {
		return nil, clierr.Usagef("standard input is not a terminal, so there is nowhere to ask for the password").Hintf("use --password-stdin")
	}
	p1, err := a.askSecret(ctx, f, fmt.Sprintf("password for %s: ", user))
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	p2, err := a.askSecret(ctx, f, "again: ")
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if !bytes.Equal(p1, p2) {
		return nil, clierr.Usagef("the passwords differ; nothing changed")
	}
	if len(p1) == 0 {
		return nil, clierr.Usagef("empty password; nothing changed")
	}
	return p1, nil
}
