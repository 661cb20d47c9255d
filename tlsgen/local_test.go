package tlsgen

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnsureLocalCreatesValidFilesAndReusesThem(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mqtk", "tls")
	f, err := EnsureLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Created || !f.CACreated {
		t.Errorf("first call: Created = %v, CACreated = %v; want both", f.Created, f.CACreated)
	}
	mustMode(t, dir, 0o700)
	mustMode(t, filepath.Join(dir, CAKeyDir), 0o700)
	mustMode(t, filepath.Join(dir, CAKeyDir, CAKeyFile), 0o600)
	mustMode(t, f.KeyFile, 0o600)

	// Go: the pair loads, and verifies for every local name as a client would.
	if _, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile); err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	ca := mustCert(t, f.CAFile)
	leaf := mustCert(t, f.CertFile)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	// OpenSSL agrees, for the chain and the serverAuth purpose.
	opensslVerify(t, f.CAFile, f.CertFile, "-purpose", "sslserver")
	txt := opensslText(t, f.CertFile)
	for _, want := range []string{"DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "TLS Web Server Authentication"} {
		if !strings.Contains(txt, want) {
			t.Errorf("openssl x509 -text lacks %q", want)
		}
	}

	caBefore, _ := os.ReadFile(f.CAFile)
	certBefore, _ := os.ReadFile(f.CertFile)
	f2, err := EnsureLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f2.Created {
		t.Error("second call: Created = true, want the files reused")
	}
	caAfter, _ := os.ReadFile(f2.CAFile)
	certAfter, _ := os.ReadFile(f2.CertFile)
	if string(caBefore) != string(caAfter) || string(certBefore) != string(certAfter) {
		t.Error("second call rewrote the CA or server certificate")
	}
}

func TestEnsureLocalRenewsServerButKeepsCA(t *testing.T) {
	dir := t.TempDir()
	host := func() (string, error) { return "devbox", nil }
	now := time.Now()
	f, err := ensureLocal(dir, now, host)
	if err != nil {
		t.Fatal(err)
	}
	caBefore, _ := os.ReadFile(f.CAFile)
	certBefore, _ := os.ReadFile(f.CertFile)
	if !slices.Contains(mustCert(t, f.CertFile).DNSNames, "devbox") {
		t.Error("server certificate lacks the host name")
	}
	// 380 days later the 397-day server certificate is within 30 days of
	// expiry: it is reissued, while the 10-year CA stays.
	f2, err := ensureLocal(dir, now.AddDate(0, 0, 380), host)
	if err != nil {
		t.Fatal(err)
	}
	caAfter, _ := os.ReadFile(f2.CAFile)
	certAfter, _ := os.ReadFile(f2.CertFile)
	if !f2.Created || string(certBefore) == string(certAfter) {
		t.Error("near-expiry server certificate was not reissued")
	}
	if f2.CACreated {
		t.Error("reissuing the server certificate reported a new CA")
	}
	if string(caBefore) != string(caAfter) {
		t.Error("the CA was replaced although it is still valid")
	}
	// A new host name also triggers a reissue.
	f3, err := ensureLocal(dir, now.AddDate(0, 0, 380), func() (string, error) { return "otherbox", nil })
	if err != nil {
		t.Fatal(err)
	}
	if !f3.Created || !slices.Contains(mustCert(t, f3.CertFile).DNSNames, "otherbox") {
		t.Error("server certificate not reissued for the new host name")
	}
}
