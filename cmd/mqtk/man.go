package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newManCmd writes a man page for every command; packaging runs it
// (`mqtk man build/man`), users never need to, so it is hidden. The pages
// are written here from the command tree rather than with cobra/doc, whose
// Markdown engine's package initialisation would run in every `mqtk pub`
// start-up (BENCHMARKS.md, "pub startup"), for output this small.
func newManCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write man pages for every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create man page directory: %w", err)
			}
			n, err := writeManTree(cmd.Root(), dir)
			if err != nil {
				return err
			}
			a.io.Infof("wrote %d man pages to %s", n, dir)
			return nil
		},
	}
}

// writeManTree writes NAME.1 for cmd and each visible command below it.
func writeManTree(cmd *cobra.Command, dir string) (int, error) {
	if !cmd.IsAvailableCommand() && cmd.HasParent() {
		return 0, nil
	}
	name := strings.ReplaceAll(cmd.CommandPath(), " ", "-")
	path := filepath.Join(dir, name+".1")
	if err := os.WriteFile(path, manPage(cmd), 0o644); err != nil {
		return 0, fmt.Errorf("write man page: %w", err)
	}
	n := 1
	for _, c := range cmd.Commands() {
		m, err := writeManTree(c, dir)
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// manPage renders one command as man(7) source.
func manPage(cmd *cobra.Command) []byte {
	var b bytes.Buffer
	title := strings.ToUpper(strings.ReplaceAll(cmd.CommandPath(), " ", "-"))
	fmt.Fprintf(&b, ".TH %s 1 \"\" \"mqtk\" \"mqtk manual\"\n", title)
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", roff(strings.ReplaceAll(cmd.CommandPath(), " ", "-")), roff(cmd.Short))
	b.WriteString(".SH SYNOPSIS\n")
	fmt.Fprintf(&b, ".B %s\n", roff(cmd.UseLine()))
	b.WriteString(".SH DESCRIPTION\n")
	desc := cmd.Long
	if desc == "" {
		desc = cmd.Short
	}
	roffParagraphs(&b, desc)
	if flags := cmd.NonInheritedFlags(); flags.HasAvailableFlags() {
		b.WriteString(".SH OPTIONS\n")
		roffFlags(&b, flags)
	}
	if flags := cmd.InheritedFlags(); flags.HasAvailableFlags() {
		b.WriteString(".SH OPTIONS INHERITED FROM PARENT COMMANDS\n")
		roffFlags(&b, flags)
	}
	if cmd.Example != "" {
		b.WriteString(".SH EXAMPLES\n.nf\n")
		for _, line := range strings.Split(strings.TrimRight(cmd.Example, "\n"), "\n") {
			b.WriteString(roffLine(line) + "\n")
		}
		b.WriteString(".fi\n")
	}
	var see []string
	if cmd.HasParent() {
		see = append(see, manRef(cmd.Parent()))
	}
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			see = append(see, manRef(c))
		}
	}
	if len(see) > 0 {
		b.WriteString(".SH SEE ALSO\n")
		b.WriteString(strings.Join(see, ",\n") + "\n")
	}
	return b.Bytes()
}

func manRef(c *cobra.Command) string {
	return "\\fB" + roff(strings.ReplaceAll(c.CommandPath(), " ", "-")) + "\\fP(1)"
}

// roffFlags lists flags as tagged paragraphs: -s, --long TYPE, usage.
func roffFlags(b *bytes.Buffer, fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		b.WriteString(".TP\n")
		var tag string
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			tag = "\\fB\\-" + roff(f.Shorthand) + "\\fP, "
		}
		tag += "\\fB\\-\\-" + roff(f.Name) + "\\fP"
		varname, usage := pflag.UnquoteUsage(f)
		if varname != "" {
			tag += " \\fI" + roff(varname) + "\\fP"
		}
		b.WriteString(tag + "\n")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		b.WriteString(roffLine(usage) + "\n")
	})
}

// roffParagraphs writes text, keeping its line breaks and indented blocks
// (examples inside long help) as they are.
func roffParagraphs(b *bytes.Buffer, text string) {
	b.WriteString(".nf\n")
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(roffLine(line) + "\n")
	}
	b.WriteString(".fi\n")
}

// roffLine escapes one line of text for roff: backslashes, hyphens (so
// flags are not hyphenated or turned into dashes), and a leading control
// character that would make the line a request.
func roffLine(s string) string {
	s = roff(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = "\\&" + s
	}
	return s
}

// roff escapes text: backslashes, hyphens, and non-ASCII characters as
// Unicode escapes such as \[u2026], which every troff reads whatever its
// input encoding.
func roff(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-':
			b.WriteString(`\-`)
		case r > 0x7e:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
