package broker

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/testpki"
)

type testPKI struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// newTestPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate with CN "alice".
func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	pki := testpki.New(t)
	sc, sk := pki.Server(t, "server", "127.0.0.1")
	cc, ck := pki.Client(t, "alice")
	return testPKI{ca: pki.CAFile, serverCert: sc, serverKey: sk, clientCert: cc, clientKey: ck}
}

func TestInteropPasswordAndACL(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("mosquitto_passwd not installed; .ci/run installs it")
	}
	file := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(passwd, "-c", "-b", file, "alice", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	if err := SetPassword(file, "bob", []byte("hunter2")); err != nil {
		t.Fatal(err)
	}
	acl := writeFile(t, "acl", "user alice\ntopic readwrite alice/#\n\nuser bob\ntopic read alice/#\n")
	for _, kind := range brokerKinds {
		t.Run(kind.name, func(t *testing.T) {
			lns := kind.start(t, Options{
				Listeners:    []string{"tcp://127.0.0.1:0"},
				PasswordFile: file, ACLFile: acl,
				Limits: Limits{AuthFailDelay: 10 * time.Millisecond},
			})
			host, port := hostPort(t, listenerOf(t, lns, "tcp"))
			for _, v := range []string{"311", "5"} {
				t.Run("v"+v, func(t *testing.T) {
					as := func(user, pw string, extra ...string) []string {
						a := []string{"-h", host, "-p", port, "-V", v}
						if user != "" {
							a = append(a, "-u", user, "-P", pw)
						}
						return append(a, extra...)
					}
					// Allowed: bob (mqtk-written $7$ hash) reads what alice
					// (mosquitto_passwd hash) writes.
					got := subUntil(t, pub, sub, as("bob", "hunter2", "-t", "alice/news", "-q", "1"), as("alice", "s3cret", "-t", "alice/news", "-q", "1", "-m", "hi"))
					if strings.TrimSpace(got) != "hi" {
						t.Fatalf("got %q", got)
					}
					for _, bad := range [][2]string{{"alice", "wrong"}, {"mallory", "s3cret"}, {"", ""}} {
						_, e, code := run(t, 15*time.Second, pub, as(bad[0], bad[1], "-t", "alice/x", "-m", "x")...)
						if code == 0 || !strings.Contains(strings.ToLower(e), "not authori") && !strings.Contains(strings.ToLower(e), "bad user name or password") {
							t.Errorf("login %q/%q: exit %d, stderr %q", bad[0], bad[1], code, e)
						}
					}
					// Denied subscribe: refused in the SUBACK, which
					// mosquitto_sub reports (and then exits 0).
					out, e, code := run(t, 15*time.Second, sub, as("bob", "hunter2", "-t", "secret/#", "-C", "1", "-W", "5")...)
					if !strings.Contains(e, "All subscription requests were denied") {
						t.Errorf("denied subscribe: exit %d, %q %q", code, out, e)
					}
				})
			}
		})
	}
}

func TestInteropTLSAndMutualTLS(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	pki := newTestPKI(t)
	acl := writeFile(t, "acl", "user alice\ntopic readwrite tls/#\n")
	for _, kind := range brokerKinds {
		t.Run(kind.name, func(t *testing.T) {
			lns := kind.start(t, Options{
				Listeners: []string{"tls://127.0.0.1:0", "tcp://127.0.0.1:0"},
				TLSCert:   pki.serverCert, TLSKey: pki.serverKey, TLSCA: pki.ca,
				RequireClientCert: true, CertAsUsername: true, ACLFile: acl,
			})
			host, port := hostPort(t, listenerOf(t, lns, "tls"))
			for _, v := range []string{"311", "5"} {
				base := []string{"-h", host, "-p", port, "-V", v, "--cafile", pki.ca}
				withCert := append(append([]string{}, base...), "--cert", pki.clientCert, "--key", pki.clientKey)
				// The certificate's CN "alice" is the user name the ACL sees.
				got := subUntil(t, pub, sub, append(append([]string{}, withCert...), "-t", "tls/v"+v, "-q", "1"), append(append([]string{}, withCert...), "-t", "tls/v"+v, "-q", "1", "-m", "secure"))
				if strings.TrimSpace(got) != "secure" {
					t.Fatalf("v%s mTLS: got %q", v, got)
				}
				if _, _, code := run(t, 15*time.Second, pub, append(append([]string{}, base...), "-t", "tls/x", "-m", "x")...); code == 0 {
					t.Errorf("v%s: client without certificate was accepted", v)
				}
			}
		})
	}
}
