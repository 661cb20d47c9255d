package broker

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/testpki"
)

// copyFile copies src over dst in place, so the path a running broker was
// started with now holds new content.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestProcessSIGHUPReloads: `mqtk broker` reloads its password file, ACL
// file and TLS certificate on SIGHUP without dropping a connected client,
// and keeps the previous settings when the new ACL does not parse.
func TestProcessSIGHUPReloads(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	dir := t.TempDir()
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := SetPassword(pw, "alice", []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(acl, []byte("user alice\ntopic readwrite alice/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca1, ca2 := testpki.New(t), testpki.New(t)
	c1, k1 := ca1.Server(t, "server", "127.0.0.1")
	copyFile(t, c1, certFile)
	copyFile(t, k1, keyFile)

	p := startProc(t, Options{
		Listeners: []string{"tcp://127.0.0.1:0", "tls://127.0.0.1:0"},
		TLSCert:   certFile, TLSKey: keyFile, PasswordFile: pw, ACLFile: acl,
		Limits: Limits{AuthFailDelay: 10 * time.Millisecond},
	})
	host, port := hostPort(t, listenerOf(t, p.lns, "tcp"))
	tlsHost, tlsPort := hostPort(t, listenerOf(t, p.lns, "tls"))
	as := func(user, pass string, extra ...string) []string {
		return append([]string{"-h", host, "-p", port, "-u", user, "-P", pass}, extra...)
	}
	refused := func(user, pass string) bool {
		_, e, code := run(t, 15*time.Second, pub, as(user, pass, "-t", "shared/x", "-m", "x")...)
		e = strings.ToLower(e)
		return code != 0 && (strings.Contains(e, "not authori") || strings.Contains(e, "bad user name or password"))
	}
	subDenied := func(user, pass, filter string) bool {
		_, e, _ := run(t, 15*time.Second, sub, as(user, pass, "-t", filter, "-C", "1", "-W", "5")...)
		return strings.Contains(e, "All subscription requests were denied")
	}
	tlsPub := func(ca string) int {
		_, _, code := run(t, 15*time.Second, pub, "-h", tlsHost, "-p", tlsPort, "--cafile", ca, "-u", "alice", "-P", "s3cret", "-t", "alice/tls", "-m", "x")
		return code
	}

	// A client connected across the reloads.
	held := startStream(t, sub, as("alice", "s3cret", "-t", "alice/held", "-q", "1", "-v", "-d")...)
	held.waitFor(t, "received SUBACK")
	if _, e, code := run(t, 15*time.Second, pub, as("alice", "s3cret", "-t", "alice/held", "-q", "1", "-m", "before")...); code != 0 {
		t.Fatalf("publish before: exit %d: %s", code, e)
	}
	held.waitFor(t, "alice/held before")

	// Before: no carol, shared/# not granted, the first CA only.
	if !refused("carol", "n3w") {
		t.Fatal("carol logged in before she was added")
	}
	if !subDenied("alice", "s3cret", "shared/#") {
		t.Fatal("shared/# granted before the ACL grants it")
	}
	if tlsPub(ca1.CAFile) != 0 || tlsPub(ca2.CAFile) == 0 {
		t.Fatal("TLS before reload: want the first CA to verify and the second not")
	}

	if err := SetPassword(pw, "carol", []byte("n3w")); err != nil {
		t.Fatal(err)
	}
	grant := "user alice\ntopic readwrite alice/#\ntopic readwrite shared/#\n\nuser carol\ntopic readwrite shared/#\n"
	if err := os.WriteFile(acl, []byte(grant), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, k2 := ca2.Server(t, "server", "127.0.0.1")
	copyFile(t, c2, certFile)
	copyFile(t, k2, keyFile)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "reloaded password file, acl and tls certificates")

	if _, e, code := run(t, 15*time.Second, pub, as("alice", "s3cret", "-t", "alice/held", "-q", "1", "-m", "after")...); code != 0 {
		t.Fatalf("publish after: exit %d: %s", code, e)
	}
	lines := held.waitFor(t, "alice/held after")
	if held.exited() || strings.Count(strings.Join(lines, "\n"), "sending CONNECT") != 1 {
		t.Errorf("the connected client was dropped or reconnected:\n%s", strings.Join(lines, "\n"))
	}
	newTopic := func() {
		t.Helper()
		got := subUntil(t, pub, sub, as("carol", "n3w", "-t", "shared/news", "-q", "1"), as("alice", "s3cret", "-t", "shared/news", "-q", "1", "-m", "granted"))
		if strings.TrimSpace(got) != "granted" {
			t.Fatalf("new user on the newly granted topic got %q", got)
		}
	}
	newTopic()
	if tlsPub(ca2.CAFile) != 0 || tlsPub(ca1.CAFile) == 0 {
		t.Error("TLS after reload: want the second CA to verify and the first not")
	}

	// An ACL that does not parse: the error is logged, the rules in force
	// stay (carol and shared/# still work, secret/# is still denied).
	if err := os.WriteFile(acl, []byte("user alice\nfrobnicate x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "the previous settings stay in force")
	if !strings.Contains(p.log(), acl) {
		t.Errorf("the reload error does not name the ACL file %s:\n%s", acl, p.log())
	}
	newTopic()
	if !subDenied("alice", "s3cret", "secret/#") {
		t.Error("after a failed reload secret/# is granted")
	}
}

// TestProcessSIGTERM: on SIGTERM `mqtk broker` sends MQTT 5 clients
// DISCONNECT "server shutting down" (0x8B = 139) and exits 0; a 3.1.1
// client, for which the server has no DISCONNECT packet [MQTT-3.14], sees
// the connection close.
func TestProcessSIGTERM(t *testing.T) {
	_, sub := mosquittotest.RequireClients(t)
	p := startProc(t, Options{Listeners: []string{"tcp://127.0.0.1:0"}})
	host, port := hostPort(t, listenerOf(t, p.lns, "tcp"))
	clients := map[string]*streamProc{}
	for _, v := range []string{"5", "311"} {
		clients[v] = startStream(t, sub, "-h", host, "-p", port, "-V", v, "-t", "idle/v"+v, "-d")
		clients[v].waitFor(t, "received SUBACK")
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v, want 0\n%s", err, p.log())
	}
	clients["5"].waitFor(t, "Received DISCONNECT (139)")
	t.Run("v311", func(t *testing.T) {
		c := clients["311"]
		// With no DISCONNECT, mosquitto_sub treats the close as a lost
		// connection and keeps retrying quietly; a DISCONNECT made it exit
		// at once with "protocol error". Give it 3 s to show which.
		select {
		case <-c.done:
		case <-time.After(3 * time.Second):
		}
		c.kill(t, syscall.SIGTERM)
		out := strings.Join(c.output(), "\n")
		// In 3.1.1 DISCONNECT is client-to-server only: the broker just
		// closes, and mosquitto_sub must not see a protocol error.
		if strings.Contains(out, "protocol error") || strings.Contains(out, "Received DISCONNECT") {
			t.Errorf("the broker sent DISCONNECT to an MQTT 3.1.1 client; mosquitto_sub reports:\n%s", out)
		}
	})
}
