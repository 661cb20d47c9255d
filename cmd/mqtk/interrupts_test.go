package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/pub"
	"github.com/mqtk/mqtk/sub"
	"github.com/mqtk/mqtk/tlsgen"
)

// Which commands catch Ctrl-C before they run, and which leave it to the
// timer: a long-running command must never meet the default action.
func TestStartsQuick(t *testing.T) {
	streams, _, _ := ui.Test(nil)
	a := &app{io: streams, getenv: func(string) string { return "" }}
	cases := []struct {
		cmd   *cobra.Command
		quick bool
	}{
		{newSubCmd(a, func(*sub.Options) error { return nil }), false},
		{newBrokerCmd(a, nil), false},
		{newBenchCmd(a, nil), false},
		{newPubCmd(a, func(*pub.Options) error { return nil }), true},
		// tlsgen writes keys: a Ctrl-C must never cut a write short.
		{newTlsgenCmd(a, func(*tlsgen.Options) error { return nil }), false},
		{newVersionCmd(a), true},
	}
	for _, c := range cases {
		if got := startsQuick(c.cmd); got != c.quick {
			t.Errorf("%s: startsQuick = %v, want %v", c.cmd.Name(), got, c.quick)
		}
		for _, sc := range c.cmd.Commands() {
			if got := startsQuick(sc); got != c.quick {
				t.Errorf("%s %s: startsQuick = %v, want %v (inherited)", c.cmd.Name(), sc.Name(), got, c.quick)
			}
		}
	}
}

// Only a single message from the command line or a file, with no will,
// counts as one-shot; anything that streams, repeats or replays catches
// Ctrl-C at once.
func TestPubOneShot(t *testing.T) {
	cases := []struct {
		args []string
		want bool
	}{
		{[]string{"-t", "a", "-m", "x"}, true},
		{[]string{"-t", "a", "-n", "-q", "1"}, true},
		{[]string{"-t", "a", "-f", "go.mod"}, true},
		{[]string{"-t", "a", "-m", "x", "--repeat", "3"}, false},
		{[]string{"-t", "a", "-l"}, false},
		{[]string{"-t", "a", "-s"}, false},
		{[]string{"--replay", "rec.jsonl"}, false},
		{[]string{"-t", "a", "-m", "x", "--will-topic", "w", "--will-payload", "gone"}, false},
	}
	for _, c := range cases {
		o, err := parsePub(t, c.args...)
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if one := oneShot(o); one != c.want {
			t.Errorf("%v: oneShot = %v, want %v", c.args, one, c.want)
		}
	}
}

// blackHole accepts TCP connections on loopback and never answers, so a
// client waits for CONNACK until it is interrupted. accepted receives one
// value per connection.
func blackHole(t *testing.T) (port string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, ch
}

// interruptMqtk runs mqtk ARGS against a broker that never answers, sends
// SIGINT `after` the connection is accepted, and returns the wait status
// and stderr.
func interruptMqtk(t *testing.T, after time.Duration, args ...string) (syscall.WaitStatus, string) {
	t.Helper()
	bin, err := exec.LookPath("mqtk")
	if err != nil {
		t.Skipf("mqtk is not on $PATH (testscript.Main installs it): %v", err)
	}
	port, accepted := blackHole(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "-h", "127.0.0.1", "-p", port)...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-accepted:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("mqtk %v never connected; stderr: %s", args, stderr.String())
	}
	time.Sleep(after)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws, stderr.String()
}

// A long-running command handles Ctrl-C from its first moment: exit status
// 130 from our own shutdown, not death by the signal.
func TestSubInterruptedWhileConnecting(t *testing.T) {
	ws, stderr := interruptMqtk(t, 0, "sub", "-t", "x")
	if !ws.Exited() || ws.ExitStatus() != 130 {
		t.Fatalf("sub interrupted while connecting: status %v (signaled %v), want exit 130; stderr: %s", ws, ws.Signaled(), stderr)
	}
}

// A one-shot publish that outlives quickGrace, here waiting for a CONNACK
// that never comes, ends cleanly on Ctrl-C too.
func TestOneShotPubInterruptedAfterGrace(t *testing.T) {
	ws, stderr := interruptMqtk(t, 10*quickGrace, "pub", "-t", "x", "-m", "y", "--connect-timeout", "20s")
	if !ws.Exited() || ws.ExitStatus() != 130 {
		t.Fatalf("one-shot pub interrupted after %v: status %v (signaled %v), want exit 130; stderr: %s", 10*quickGrace, ws, ws.Signaled(), stderr)
	}
	if strings.Contains(stderr, "panic") {
		t.Errorf("stderr: %s", stderr)
	}
}
