package broker

import (
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
	py := requirePython(t)
	file := mosquittotest.PasswordFile(t, "alice", "s3cret")
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
					// Denied publish: bob may only read alice/#. MQTT 5
					// answers PUBACK 0x87; a 3.1.1 broker may only ack or
					// close [MQTT-3.3.5-2]. Nothing is delivered either way:
					// the next message bob's subscriber sees is alice's.
					topic := "alice/deny/" + kind.name + "/v" + v
					watch := startStream(t, sub, as("bob", "hunter2", "-t", topic, "-q", "1", "-d")...)
					watch.waitFor(t, "received SUBACK")
					out, e, _ = run(t, 15*time.Second, pub, as("bob", "hunter2", "-t", topic, "-q", "1", "-m", "from-bob", "-d")...)
					if v == "5" && !strings.Contains(out, "received PUBACK (Mid: 1, RC:135)") {
						t.Errorf("denied publish: no PUBACK with reason 135 (0x87):\n%s%s", out, e)
					}
					if _, e, code := run(t, 15*time.Second, pub, as("alice", "s3cret", "-t", topic, "-q", "1", "-m", "sentinel")...); code != 0 {
						t.Fatalf("alice publish: exit %d: %s", code, e)
					}
					for _, l := range watch.waitFor(t, "sentinel") {
						if strings.Contains(l, "from-bob") {
							t.Errorf("denied publish was delivered: %q", l)
						}
					}
				})
				t.Run("paho-v"+v, func(t *testing.T) {
					runPaho(t, py, "auth", host, port, "--version", v, "--tag", kind.name)
				})
			}
		})
	}
}

// TestInteropTLSAndMutualTLS: a TLS listener with a server certificate
// only, and one that requires client certificates (whose CN becomes the
// user name the ACL sees), with mosquitto clients at 3.1.1 and 5 and paho.
func TestInteropTLSAndMutualTLS(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	py := requirePython(t)
	pki := newTestPKI(t)
	other := testpki.New(t) // a CA that signed nothing of the broker's
	for _, mode := range []struct {
		name   string
		mutual bool
	}{{"tls", false}, {"mtls", true}} {
		for _, kind := range brokerKinds {
			t.Run(mode.name+"/"+kind.name, func(t *testing.T) {
				o := Options{
					Listeners: []string{"tls://127.0.0.1:0", "tcp://127.0.0.1:0"},
					TLSCert:   pki.serverCert, TLSKey: pki.serverKey,
				}
				if mode.mutual {
					o.TLSCA, o.RequireClientCert, o.CertAsUsername = pki.ca, true, true
					o.ACLFile = writeFile(t, "acl", "user alice\ntopic readwrite tls/#\n")
				}
				host, port := hostPort(t, listenerOf(t, kind.start(t, o), "tls"))
				var cert []string
				if mode.mutual {
					cert = []string{"--cert", pki.clientCert, "--key", pki.clientKey}
				}
				for _, v := range []string{"311", "5"} {
					t.Run("mosquitto-v"+v, func(t *testing.T) {
						base := []string{"-h", host, "-p", port, "-V", v, "--cafile", pki.ca}
						with := func(extra ...string) []string {
							return append(append(append([]string{}, base...), cert...), extra...)
						}
						topic := "tls/" + kind.name + "/v" + v
						got := subUntil(t, pub, sub, with("-t", topic, "-q", "1"), with("-t", topic, "-q", "1", "-m", "secure"))
						if strings.TrimSpace(got) != "secure" {
							t.Fatalf("got %q", got)
						}
						if _, _, code := run(t, 15*time.Second, pub, "-h", host, "-p", port, "-V", v, "--cafile", other.CAFile, "-t", "tls/x", "-m", "x"); code == 0 {
							t.Errorf("a client trusting another CA connected")
						}
						if mode.mutual {
							if _, _, code := run(t, 15*time.Second, pub, append(base, "-t", "tls/x", "-m", "x")...); code == 0 {
								t.Errorf("client without certificate was accepted")
							}
						}
					})
					t.Run("paho-v"+v, func(t *testing.T) {
						tag := mode.name + "-" + kind.name + "-v" + v
						runPaho(t, py, "roundtrip", host, port, append([]string{"--version", v, "--tag", tag, "--cafile", pki.ca}, cert...)...)
						runPaho(t, py, "refused", host, port, append([]string{"--version", v, "--tag", tag, "--cafile", other.CAFile}, cert...)...)
						if mode.mutual {
							runPaho(t, py, "refused", host, port, "--version", v, "--tag", tag, "--cafile", pki.ca)
						}
					})
				}
			})
		}
	}
}
