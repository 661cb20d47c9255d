package tlsgen

import (
	"crypto/x509"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// requireOpenSSL returns the openssl binary or skips the test.
func requireOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (apt-get install openssl); .ci/run installs it")
	}
	return p
}

// opensslVerify runs `openssl verify -CAfile ca cert` and fails the test
// unless openssl says OK.
func opensslVerify(t *testing.T, caFile, certFile string, extra ...string) {
	t.Helper()
	bin := requireOpenSSL(t)
	args := append([]string{"verify"}, extra...)
	args = append(args, "-CAfile", caFile, certFile)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify %s: %v\n%s", certFile, err, out)
	}
}

// opensslText returns `openssl x509 -text -noout` for certFile.
func opensslText(t *testing.T, certFile string) string {
	t.Helper()
	bin := requireOpenSSL(t)
	out, err := exec.Command(bin, "x509", "-in", certFile, "-text", "-noout").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -text %s: %v\n%s", certFile, err, out)
	}
	return string(out)
}

func mustMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", path, got, want)
	}
}

func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := readCertFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
