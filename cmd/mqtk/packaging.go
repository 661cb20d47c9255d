//go:build !mangen

package main

import "github.com/spf13/cobra"

// packagingCommands is empty in the shipped binary; see man.go.
func packagingCommands(*app) []*cobra.Command { return nil }
