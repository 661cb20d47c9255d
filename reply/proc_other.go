//go:build !unix

package reply

import "os/exec"

// detach does nothing here: the command is killed alone on --timeout.
func detach(*exec.Cmd) {}
