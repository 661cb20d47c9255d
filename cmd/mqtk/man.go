//go:build mangen

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// The man page generator is built only with -tags mangen (packaging runs
// `go run -tags mangen ./cmd/mqtk man DIR`). cobra/doc pulls in a Markdown
// engine whose package initialisation alone took 7% of every `mqtk pub`
// start-up (perf, 200 runs of `mqtk version`), for a command users never
// run.
func packagingCommands(a *app) []*cobra.Command {
	return []*cobra.Command{newManCmd(a)}
}

// newManCmd writes man pages for the whole tree; hidden from users.
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
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: "MQTK", Section: "1", Source: "mqtk"}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("write man pages to %s: %w", dir, err)
			}
			a.io.Infof("wrote man pages to %s", dir)
			return nil
		},
	}
}
