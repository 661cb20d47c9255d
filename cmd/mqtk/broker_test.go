package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqtk/mqtk/internal/ui"
)

func runBrokerCmd(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	streams, out, errb := ui.Test(strings.NewReader(stdin))
	code := execute(context.Background(), streams, args, func(string) string { return "" })
	return out.String(), errb.String(), code
}

func TestBrokerConfigFileAndFlagPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(cfg, []byte("listen:\n  - tcp://127.0.0.1:1999\nmax-clients: 10\nmax-keepalive: 120\nconnect-timeout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runBrokerCmd(t, "", "broker", "--config", cfg, "--max-clients", "20", "--print-config")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"- tcp://127.0.0.1:1999", "max-clients: 20", "max-keepalive: 120", "connect-timeout: 3s", "max-packet-size: 1048576"} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
	// The printed configuration reads back unchanged.
	again := filepath.Join(t.TempDir(), "again.yaml")
	if err := os.WriteFile(again, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	out2, errs, code := runBrokerCmd(t, "", "broker", "--config", again, "--print-config")
	if code != 0 || out2 != out {
		t.Fatalf("round trip changed the config (exit %d, %s):\n%s\nvs\n%s", code, errs, out, out2)
	}
}

func TestBrokerConfigUnknownKeyIsUsageError(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(cfg, []byte("max-clientz: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := runBrokerCmd(t, "", "broker", "--config", cfg, "--print-config")
	if code != 2 || !strings.Contains(errs, "max-clientz") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestBrokerRefusesOpenListenerWithoutGuard(t *testing.T) {
	_, errs, code := runBrokerCmd(t, "", "broker", "--listen", "tcp://0.0.0.0:0")
	if code != 2 || !strings.Contains(errs, "--allow-anonymous") || !strings.Contains(errs, "--password-file") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestBrokerPasswdFromStdin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	_, errs, code := runBrokerCmd(t, "s3cret\n", "broker", "passwd", "--password-stdin", file, "alice")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	data, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(data), "alice:$7$") {
		t.Fatalf("file %q, %v", data, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// Without a terminal and without --password-stdin there is nowhere to ask.
	_, errs, code = runBrokerCmd(t, "", "broker", "passwd", file, "bob")
	if code != 2 || !strings.Contains(errs, "--password-stdin") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	_, _, code = runBrokerCmd(t, "", "broker", "passwd", file)
	if code != 2 {
		t.Fatalf("one argument: exit %d, want 2", code)
	}
}
