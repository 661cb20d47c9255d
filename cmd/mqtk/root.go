package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ui"
)

// Set by the release build through -ldflags "-X main.version=… ".
var (
	version = ""
	commit  = ""
	date    = ""
)

// buildInfo returns version, commit and date: from -ldflags when the release
// build set them, else from the module build info (go install …@v1.2.3).
func buildInfo() (v, c, d string) {
	v, c, d = version, commit, date
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return cmp.Or(v, "devel"), c, d
	}
	if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if c == "" {
				c = s.Value
			}
		case "vcs.time":
			if d == "" {
				d = s.Value
			}
		}
	}
	return cmp.Or(v, "devel"), c, d
}

// app carries what every command constructor needs.
type app struct {
	io     *ui.Streams
	getenv func(string) string
	// interrupts is nil in in-process tests, which send no signals.
	interrupts *interrupts
}

// execute builds the tree, runs it and returns the process exit code.
func execute(ctx context.Context, streams *ui.Streams, args []string, getenv func(string) string) int {
	return executeApp(ctx, &app{io: streams, getenv: getenv}, args)
}

func executeApp(ctx context.Context, a *app, args []string) int {
	streams := a.io
	root := newRootCmd(a, args)
	root.SetArgs(withProperties(root, args))
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command ") {
		err = unknownCommand(err)
	}
	if err == nil {
		return 0
	}
	if ctx.Err() != nil && clierr.KindOf(err) != clierr.KindUsage {
		if !errors.Is(err, context.Canceled) {
			streams.Errorf("%s", lowerFirst(err.Error()))
		}
		return 130
	}
	reportError(streams, err)
	return clierr.ExitCode(err)
}

// unknownCommand makes cobra's "unknown command" error a usage error
// (exit 2, like a bad flag), its "Did you mean this?" suggestions a hint
// line of their own.
func unknownCommand(err error) error {
	msg, suggestions, found := strings.Cut(err.Error(), "\n\nDid you mean this?\n")
	e := clierr.Usagef("%s", msg)
	if s := strings.Fields(suggestions); found && len(s) > 0 {
		e.Hintf("did you mean %s?", strings.Join(s, " or "))
	}
	return e
}

func reportError(streams *ui.Streams, err error) {
	streams.Errorf("%s", lowerFirst(err.Error()))
	hints := clierr.HintsOf(err)
	for _, h := range hints {
		streams.Hintf("%s", h)
	}
	// The generic pointer only where nothing more specific was said.
	if len(hints) == 0 && clierr.KindOf(err) == clierr.KindUsage && !strings.Contains(err.Error(), "--help") {
		streams.Hintf("see 'mqtk --help' or the command's --help")
	}
}

func lowerFirst(s string) string {
	if s == "" || strings.HasPrefix(s, "MQTT") || strings.HasPrefix(s, "TLS") {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// subcommands are the top-level commands, by name.
func subcommands(a *app) []struct {
	name string
	make func() *cobra.Command
} {
	return []struct {
		name string
		make func() *cobra.Command
	}{
		{"version", func() *cobra.Command { return newVersionCmd(a) }},
		{"pub", func() *cobra.Command { return newPubCmd(a, nil) }},
		{"sub", func() *cobra.Command { return newSubCmd(a, nil) }},
		{"rr", func() *cobra.Command { return newRRCmd(a, nil) }},
		{"reply", func() *cobra.Command { return newReplyCmd(a, nil) }},
		{"tlsgen", func() *cobra.Command { return newTlsgenCmd(a, nil) }},
		{"broker", func() *cobra.Command { return newBrokerCmd(a, nil) }},
		{"bench", func() *cobra.Command { return newBenchCmd(a, nil) }},
		{"check", func() *cobra.Command { return newCheckCmd(a, nil) }},
	}
}

// newRootCmd builds the command tree for args. When args name a
// subcommand, only that one is built: constructing every command's flags
// is a visible part of a one-shot `mqtk pub` (BENCHMARKS.md, "pub
// start-up machinery"), and nothing outside the named command is
// reachable from there. Anything
// else (no args, help, completion, a typo needing suggestions) gets the
// whole tree.
func newRootCmd(a *app, args []string) *cobra.Command {
	var colorFlag string
	root := &cobra.Command{
		Use:   "mqtk",
		Short: "MQTT and MQTTS from the shell: pub, sub, rr, reply, check, bench, broker, tlsgen",
		Long: `mqtk is one binary for MQTT and MQTTS work from a shell.

Connection flags follow mosquitto_pub and mosquitto_sub (-h host, -p port,
-t topic, -q qos, -u user, -P password, -V version, -L url, --cafile ...),
so existing habits carry over. Help is --help only: -h is the host.

Settings come from, strongest first: flags, MQTK_* environment variables,
a profile in $XDG_CONFIG_HOME/mqtk/config.yaml (--profile NAME), defaults.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			mode, err := ui.ParseColorMode(colorFlag)
			if err != nil {
				return clierr.Usagef("%v", err)
			}
			a.io.SetColorMode(mode)
			if !startsQuick(cmd) {
				a.catchInterrupts()
			}
			return nil
		},
	}
	root.SetOut(a.io.Out)
	root.SetErr(a.io.Err)
	root.SetIn(a.io.In)
	root.SetVersionTemplate("mqtk {{.Version}}\n")
	root.PersistentFlags().StringVar(&colorFlag, "color", envOr(a.getenv, "MQTK_COLOR", "auto"), "colour output: auto, always or never (also NO_COLOR, MQTK_COLOR)")
	// -h is the broker host in every connecting command, as in mosquitto's
	// clients, so help is --help only.
	root.PersistentFlags().Bool("help", false, "help for this command")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return flagError(cmd, err)
	})
	root.CompletionOptions.HiddenDefaultCmd = false

	only := ""
	if len(args) > 0 {
		only = args[0]
	}
	built := false
	for _, c := range subcommands(a) {
		if c.name == only {
			root.AddCommand(c.make())
			built = true
		}
	}
	if built {
		// `mqtk completion` and `mqtk --version` need the whole tree
		// anyway; a named command skips building them (reading the build
		// info and formatting the completion help).
		root.CompletionOptions.DisableDefaultCmd = true
	} else {
		root.Version, _, _ = buildInfo()
		for _, c := range subcommands(a) {
			root.AddCommand(c.make())
		}
		root.AddCommand(newManCmd(a))
	}
	root.SetHelpCommand(newHelpCmd(a, root))
	return root
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func newVersionCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:         "version",
		Short:       "Print mqtk's version, commit and build date",
		Args:        cobra.NoArgs,
		Annotations: map[string]string{quickStart: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, c, d := buildInfo()
			if asJSON {
				_, err := fmt.Fprintf(a.io.Out, "{\"version\":%q,\"commit\":%q,\"date\":%q,\"go\":%q}\n", v, c, d, goVersion())
				return err
			}
			_, err := fmt.Fprintf(a.io.Out, "mqtk %s\ncommit %s\nbuilt %s\n%s\n", v, cmp.Or(c, "unknown"), cmp.Or(d, "unknown"), goVersion())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as one JSON object")
	return cmd
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}

// newHelpCmd replaces cobra's help command so that `mqtk help exit-codes`
// prints the exit-code table, while `mqtk help pub` works as usual.
func newHelpCmd(a *app, root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command | exit-codes | mosquitto]",
		Short: "Help about any command, the exit-code table, or mosquitto's client options in mqtk",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] == "exit-codes" {
				return clierr.WriteExitCodes(a.io.Out)
			}
			if len(args) == 1 && args[0] == "mosquitto" {
				return printMosquittoHelp(a.io.Out, a, root)
			}
			target, _, err := root.Find(args)
			if err != nil || target == nil {
				return clierr.Usagef("unknown help topic %q", strings.Join(args, " ")).Hintf("try 'mqtk help' or 'mqtk help exit-codes'")
			}
			return target.Help()
		},
	}
}

// flagError explains a flag cobra could not parse. The message is rebuilt
// from pflag's text, so the hints of a flag type that returns a
// *clierr.Error (-C, -D) are carried over from the error chain (pflag's
// InvalidValueError unwraps to it), before the pointer to --help. Two
// mistakes get a hint of their own: -h without a value, because -h is the
// broker host as in mosquitto's clients (help is --help); and a number or
// duration that does not parse, where pflag's text quotes strconv.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	hints := append(clierr.HintsOf(err), fmt.Sprintf("run '%s --help' for usage", cmd.CommandPath()))
	switch {
	case strings.Contains(msg, `for "-D, --property" flag: `):
		// pflag quotes the joined words of -D (see joinProperties);
		// propertyFlag's own message names them as typed.
		msg = msg[strings.Index(msg, `flag: `)+len("flag: "):]
	case strings.Contains(msg, "'h' in -h"):
		hints = []string{"-h is the broker host, as in mosquitto_pub and mosquitto_sub (e.g. -h localhost); for help use --help"}
	case strings.Contains(msg, "strconv.Parse"):
		// invalid argument "abc" for "-C, --count" flag: strconv.ParseInt: parsing "abc": invalid syntax
		if i := strings.Index(msg, ": strconv."); i > 0 {
			msg = msg[:i] + ": not a number"
		}
	case strings.Contains(msg, "time: invalid duration"):
		if i := strings.Index(msg, ": time: "); i > 0 {
			msg = msg[:i] + ": not a duration"
			hints = append([]string{"write e.g. 500ms, 10s, 2m"}, hints...)
		}
	}
	return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New(msg), Hints: hints}
}

// validateAndRun ends a command's RunE: the options are checked, then
// handed to runF, the tests' seam from flags to Options, or to the
// command's Run.
func validateAndRun[O interface{ Validate() error }](ctx context.Context, opts O, runF func(O) error, run func(context.Context, O) error) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if runF != nil {
		return runF(opts)
	}
	return run(ctx, opts)
}
