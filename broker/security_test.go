package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

type testPKI struct{ ca, serverCert, serverKey, clientCert, clientKey, dir string }

// newTestPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate with CN "alice", with crypto/x509.
func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mqtk test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	cDER, cKey := issue(3, "alice", x509.ExtKeyUsageClientAuth, nil)
	return testPKI{
		dir:        dir,
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", sDER),
		serverKey:  write("server-key.pem", "PRIVATE KEY", keyDER(sKey)),
		clientCert: write("alice.pem", "CERTIFICATE", cDER),
		clientKey:  write("alice-key.pem", "PRIVATE KEY", keyDER(cKey)),
	}
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
