//go:build unix

package reply

import (
	"os/exec"
	"syscall"
)

// detach runs the command in a process group of its own. Ctrl-C at a
// terminal goes to the foreground group, and the commands answering
// requests already received must finish while mqtk drains; --timeout
// kills the whole group, so that `sh -c 'slow | cmd'` does not leave the
// pipeline's children running.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
