package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// ptyDriver runs a command on a fresh pseudo-terminal (its controlling
// terminal, so /dev/tty works), waits until it is ready for input, types
// Ctrl-C, and reports how the command ended and whether echo came back.
// Ready means, by argv[1]: "prompt", the terminal's echo is off (a
// password prompt is up); "stdin", some thread is blocked in read(2) on
// fd 0. Go's standard library has no pty, Python's does, and python3 is
// already a test dependency (paho).
const ptyDriver = `
import fcntl, glob, json, os, select, subprocess, sys, termios, time

mode = sys.argv.pop(1)
master, slave = os.openpty()

def controlling_tty():
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

p = subprocess.Popen(sys.argv[1:], stdin=slave, stdout=slave, stderr=slave,
                     preexec_fn=controlling_tty, env=dict(os.environ, NO_COLOR="1"))
out = b""
def drain(wait):
    global out
    r, _, _ = select.select([master], [], [], wait)
    if r:
        try:
            out += os.read(master, 4096)
        except OSError:
            pass

echo = lambda: bool(termios.tcgetattr(slave)[3] & termios.ECHO)

def reading_stdin():
    for f in glob.glob("/proc/%d/task/*/syscall" % p.pid):
        try:
            with open(f) as fh:
                if fh.read().startswith("0 0x0 "):
                    return True
        except OSError:
            pass
    return False

ready = (lambda: not echo()) if mode == "prompt" else reading_stdin
deadline = time.time() + 20
while not ready() and p.poll() is None and time.time() < deadline:
    drain(0.05)
prompted = ready()
# PTY_TYPE, when set, is typed instead of Ctrl-C: an answer to the prompt.
os.write(master, os.environ.get("PTY_TYPE", "\x03").encode())
try:
    rc = p.wait(timeout=10)
    hung = False
except subprocess.TimeoutExpired:
    hung = True
    p.kill()
    rc = p.wait()
drain(0.1)
print(json.dumps({"prompted": prompted, "hung": hung, "rc": rc,
                  "echo_after": echo(), "out": out.decode("utf-8", "replace")}))
`

type ptyResult struct {
	Prompted  bool   `json:"prompted"`
	Hung      bool   `json:"hung"`
	RC        int    `json:"rc"`
	EchoAfter bool   `json:"echo_after"`
	Out       string `json:"out"`
}

func ctrlCOnPty(t *testing.T, mode string, args ...string) ptyResult {
	t.Helper()
	return onPty(t, mode, "", args...)
}

// onPty is ctrlCOnPty typing typed instead of Ctrl-C (when not empty).
func onPty(t *testing.T, mode, typed string, args ...string) ptyResult {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed (.ci/run installs it)")
	}
	bin, err := exec.LookPath("mqtk")
	if err != nil {
		t.Skipf("mqtk is not on $PATH (testscript.Main installs it): %v", err)
	}
	script := filepath.Join(t.TempDir(), "pty.py")
	if err := os.WriteFile(script, []byte(ptyDriver), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{script, mode, bin}, args...)...)
	if typed != "" {
		cmd.Env = append(os.Environ(), "PTY_TYPE="+typed)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pty driver: %v\n%s", err, out)
	}
	var r ptyResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("pty driver output %q: %v", out, err)
	}
	return r
}

// Ctrl-C while mqtk waits for input ends the command at once with exit
// status 130, and the terminal has its echo back. Before, our handler took
// the signal while the read went on, so the first Ctrl-C did nothing, and
// at a password prompt a second one killed mqtk with echo still off in the
// user's shell. "prompt" cases wait for echo to go off; "stdin" cases for
// a read(2) on fd 0, which needs Linux /proc.
func TestCtrlCWhileWaitingForInput(t *testing.T) {
	_, procErr := os.Stat("/proc/self/task")
	cases := []struct {
		name, mode string
		args       []string
	}{
		{"pub --password-prompt", "prompt", []string{"pub", "--password-prompt", "-u", "bob", "-t", "x", "-m", "y", "-h", "127.0.0.1", "-p", "1"}},
		{"tlsgen --p12", "prompt", []string{"tlsgen", "--p12", "--dir", filepath.Join(t.TempDir(), "certs")}},
		{"broker passwd", "prompt", []string{"broker", "passwd", filepath.Join(t.TempDir(), "passwd"), "bob"}},
		{"pub -s", "stdin", []string{"pub", "-s", "-t", "x", "-h", "127.0.0.1", "-p", "1"}},
		{"broker passwd --password-stdin", "stdin", []string{"broker", "passwd", "--password-stdin", filepath.Join(t.TempDir(), "passwd"), "bob"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.mode == "stdin" && procErr != nil {
				t.Skip("needs Linux /proc to see that the command is reading stdin")
			}
			r := ctrlCOnPty(t, c.mode, c.args...)
			if !r.Prompted {
				t.Fatalf("never saw it wait for input (%s); rc %d, output %q", c.mode, r.RC, r.Out)
			}
			if r.Hung {
				t.Fatalf("still running 10 s after Ctrl-C; output %q", r.Out)
			}
			if r.RC != 130 {
				t.Errorf("exit status %d after Ctrl-C, want 130 (negative means killed by the signal); output %q", r.RC, r.Out)
			}
			if !r.EchoAfter {
				t.Errorf("terminal echo is still off after mqtk ended; output %q", r.Out)
			}
		})
	}
}

// --password-prompt reads the password from the terminal without echo and
// uses it: the right one connects (exit 0), a wrong one is refused (5).
func TestPasswordPromptAnswered(t *testing.T) {
	pwfile := mosquittotest.PasswordFile(t, "alice", "s3cret")
	b := mosquittotest.Start(t, mosquittotest.Options{PasswordFile: pwfile})
	args := []string{"pub", "--password-prompt", "-u", "alice", "-t", "x", "-m", "y", "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port())}
	for _, c := range []struct {
		typed string
		rc    int
	}{{"s3cret\r", 0}, {"wrong\r", 5}} {
		r := onPty(t, "prompt", c.typed, args...)
		if !r.Prompted || r.Hung || r.RC != c.rc {
			t.Errorf("typed %q: prompted %v, hung %v, exit %d (want %d); output %q", c.typed, r.Prompted, r.Hung, r.RC, c.rc, r.Out)
		}
		if strings.Contains(r.Out, strings.TrimSuffix(c.typed, "\r")) {
			t.Errorf("typed %q: the password was echoed: %q", c.typed, r.Out)
		}
		if !r.EchoAfter {
			t.Errorf("typed %q: echo still off afterwards", c.typed)
		}
	}
}
