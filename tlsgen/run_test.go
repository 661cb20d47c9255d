package tlsgen

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ui"
)

// run runs Run with test streams and a fixed host name, returning stdout
// and stderr.
func run(t *testing.T, o Options) (string, string, error) {
	t.Helper()
	io, out, errb := ui.Test(nil)
	o.IO = io
	if o.Hostname == nil {
		o.Hostname = func() (string, error) { return "testhost", nil }
	}
	err := Run(context.Background(), &o)
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, o Options) (string, string) {
	t.Helper()
	out, errs, err := run(t, o)
	if err != nil {
		t.Fatalf("Run(%+v): %v\nstderr: %s", o, err, errs)
	}
	return out, errs
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRunAllEveryKeyType issues the full set for each key type and checks
// every certificate with Go's verifier and with OpenSSL, plus file modes and
// the extensions each profile must carry.
func TestRunAllEveryKeyType(t *testing.T) {
	requireOpenSSL(t)
	for _, kt := range KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "certs")
			start := time.Now()
			out, errs := mustRun(t, Options{Dir: dir, KeyType: kt})
			if kt == Ed25519 && !strings.Contains(errs, "ed25519 keys are not supported by many") {
				t.Errorf("no ed25519 compatibility warning on stderr: %q", errs)
			}
			for _, want := range []string{
				"mqtk broker --listen tls://127.0.0.1:8883 --tls-cert " + filepath.Join(dir, "server.pem"),
				"mqtk sub -h localhost -p 8883 --cafile " + filepath.Join(dir, "ca.pem") + " --cert " + filepath.Join(dir, "client.pem"),
				"mqtk pub -h localhost -p 8883",
				"require_certificate true",
				"use_identity_as_username true",
				"cafile " + filepath.Join(dir, "ca.pem"), // absolute, since the temp dir is
			} {
				if !strings.Contains(out, want) {
					t.Errorf("summary lacks %q:\n%s", want, out)
				}
			}

			ca, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "private", "ca-key.pem")
			mustMode(t, dir, 0o700)
			mustMode(t, filepath.Join(dir, "private"), 0o700)
			for _, k := range []string{caKey, filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "client-key.pem")} {
				mustMode(t, k, 0o600)
			}
			for _, c := range []string{ca, filepath.Join(dir, "server.pem"), filepath.Join(dir, "client.pem")} {
				mustMode(t, c, 0o644)
			}

			caCert := mustCert(t, ca)
			if !caCert.IsCA || !caCert.BasicConstraintsValid || !caCert.MaxPathLenZero || caCert.MaxPathLen != 0 {
				t.Errorf("CA basic constraints: IsCA %v valid %v MaxPathLenZero %v MaxPathLen %d", caCert.IsCA, caCert.BasicConstraintsValid, caCert.MaxPathLenZero, caCert.MaxPathLen)
			}
			if caCert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
				t.Errorf("CA key usage %v", keyUsageNames(caCert.KeyUsage))
			}
			roots := x509.NewCertPool()
			roots.AddCert(caCert)
			for _, f := range []struct {
				file string
				eku  x509.ExtKeyUsage
				ossl string
			}{
				{"server.pem", x509.ExtKeyUsageServerAuth, "sslserver"},
				{"client.pem", x509.ExtKeyUsageClientAuth, "sslclient"},
			} {
				path := filepath.Join(dir, f.file)
				c := mustCert(t, path)
				opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{f.eku}}
				if f.eku == x509.ExtKeyUsageServerAuth {
					opts.DNSName = "localhost"
				}
				if _, err := c.Verify(opts); err != nil {
					t.Errorf("Go verify %s: %v", f.file, err)
				}
				if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != f.eku {
					t.Errorf("%s: ext key usage %v", f.file, extKeyUsageNames(c.ExtKeyUsage))
				}
				wantKU := x509.KeyUsageDigitalSignature
				if strings.HasPrefix(string(kt), "rsa") {
					wantKU |= x509.KeyUsageKeyEncipherment
				}
				if c.KeyUsage != wantKU {
					t.Errorf("%s: key usage %v, want %v", f.file, keyUsageNames(c.KeyUsage), keyUsageNames(wantKU))
				}
				if c.IsCA {
					t.Errorf("%s is a CA", f.file)
				}
				if n := len(c.SerialNumber.Bytes()); n != 20 {
					t.Errorf("%s: serial of %d bytes, want 20", f.file, n)
				}
				if back := start.Sub(c.NotBefore); back < 59*time.Minute || back > 61*time.Minute {
					t.Errorf("%s: NotBefore is %v before issuing, want about an hour", f.file, back)
				}
				if days := c.NotAfter.Sub(c.NotBefore).Hours() / 24; days < 397 || days > 398 {
					t.Errorf("%s: valid for %.1f days, want 397", f.file, days)
				}
				opensslVerify(t, ca, path, "-purpose", f.ossl)
			}
			srv := mustCert(t, filepath.Join(dir, "server.pem"))
			if !slices.Contains(srv.DNSNames, "localhost") || !slices.Contains(srv.DNSNames, "testhost") || len(srv.IPAddresses) != 2 {
				t.Errorf("server SANs: DNS %v IP %v", srv.DNSNames, srv.IPAddresses)
			}
			if cl := mustCert(t, filepath.Join(dir, "client.pem")); cl.Subject.CommonName != DefaultClientCN {
				t.Errorf("client CN %q", cl.Subject.CommonName)
			}

			caText := opensslText(t, ca)
			for _, want := range []string{"CA:TRUE, pathlen:0", "Certificate Sign, CRL Sign", "Subject Key Identifier"} {
				if !strings.Contains(caText, want) {
					t.Errorf("openssl: CA lacks %q:\n%s", want, caText)
				}
			}
			srvText := opensslText(t, filepath.Join(dir, "server.pem"))
			for _, want := range []string{"CA:FALSE", "Digital Signature", "TLS Web Server Authentication", "DNS:localhost", "DNS:testhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "Authority Key Identifier"} {
				if !strings.Contains(srvText, want) {
					t.Errorf("openssl: server certificate lacks %q", want)
				}
			}
			if strings.HasPrefix(string(kt), "rsa") != strings.Contains(srvText, "Key Encipherment") {
				t.Errorf("openssl: Key Encipherment present %v for %s", strings.Contains(srvText, "Key Encipherment"), kt)
			}
			if !strings.Contains(opensslText(t, filepath.Join(dir, "client.pem")), "TLS Web Client Authentication") {
				t.Error("openssl: client certificate lacks clientAuth")
			}
		})
	}
}

func TestRunAllReusesAndForceReplaces(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, Options{Dir: dir})
	names := []string{"ca.pem", "private/ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"}
	before := map[string]string{}
	for _, n := range names {
		before[n] = read(t, filepath.Join(dir, n))
	}
	out, _ := mustRun(t, Options{Dir: dir})
	if !strings.Contains(out, "reused") {
		t.Errorf("second run does not say it reused the files:\n%s", out)
	}
	for _, n := range names {
		if read(t, filepath.Join(dir, n)) != before[n] {
			t.Errorf("second run rewrote %s", n)
		}
	}

	// `ca` without --force keeps the CA and refuses a flag it cannot
	// apply; flags that describe the CA as it is are fine.
	_, _, err := run(t, Options{Dir: dir, Command: CmdCA, KeyType: RSA2048})
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(strings.Join(clierr.HintsOf(err), "\n"), "add --force to replace it") || !strings.Contains(err.Error(), "an ECDSA P-256 key, not rsa-2048") {
		t.Errorf("ca --key-type without --force: %v", err)
	}
	if read(t, filepath.Join(dir, "ca.pem")) != before["ca.pem"] {
		t.Error("a refused ca run changed the CA")
	}
	mustRun(t, Options{Dir: dir, Command: CmdCA, KeyType: ECDSAP256, Days: DefaultCADays})

	// --force replaces everything and warns that old certificates die.
	_, errs := mustRun(t, Options{Dir: dir, Force: true})
	if !strings.Contains(errs, "stops working") {
		t.Errorf("no warning about the replaced CA: %q", errs)
	}
	for _, n := range names {
		if read(t, filepath.Join(dir, n)) == before[n] {
			t.Errorf("--force kept %s", n)
		}
	}
	mustMode(t, filepath.Join(dir, "private", "ca-key.pem"), 0o600)
	mustMode(t, filepath.Join(dir, "server-key.pem"), 0o600)
	opensslVerify(t, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"))

	// `ca --force` alone replaces the CA; the leaves left behind no longer
	// verify, and a plain rerun refuses to pass them off as reusable.
	mustRun(t, Options{Dir: dir, Command: CmdCA, Force: true})
	_, _, err = run(t, Options{Dir: dir})
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "was not signed by the CA") || !strings.Contains(strings.Join(clierr.HintsOf(err), "\n"), "mqtk tlsgen server localhost") {
		t.Errorf("rerun after CA replacement: %v", err)
	}
}

func TestRunServerAndClient(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	// No CA yet: server makes one first.
	out, errs := mustRun(t, Options{Dir: dir, Command: CmdServer, Names: []string{"broker.lan", "192.168.1.10", "*.iot.lan", "spiffe://lan/broker", "ops@lan.example"}, Fullchain: true})
	if !strings.Contains(out, "created") || !strings.Contains(errs, "matches one label only") {
		t.Errorf("stdout %q stderr %q", out, errs)
	}
	c := mustCert(t, filepath.Join(dir, "server.pem"))
	if strings.Join(c.DNSNames, ",") != "broker.lan,*.iot.lan" || len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != "192.168.1.10" ||
		len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://lan/broker" || strings.Join(c.EmailAddresses, ",") != "ops@lan.example" || c.Subject.CommonName != "broker.lan" {
		t.Errorf("SANs: DNS %v IP %v URI %v email %v CN %q", c.DNSNames, c.IPAddresses, c.URIs, c.EmailAddresses, c.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(mustCert(t, filepath.Join(dir, "ca.pem")))
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "sensor.iot.lan"}); err != nil {
		t.Errorf("wildcard does not verify: %v", err)
	}
	opensslVerify(t, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), "-verify_hostname", "broker.lan", "-verify_ip", "192.168.1.10")
	fc, err := readCertFile(filepath.Join(dir, "server-fullchain.pem"))
	if err != nil || len(fc) != 2 || !fc[0].Equal(c) || !fc[1].IsCA {
		t.Errorf("fullchain: %d certificates, %v", len(fc), err)
	}

	// A second server into the same name is refused without --force.
	_, _, err = run(t, Options{Dir: dir, Command: CmdServer, Names: []string{"other.lan"}})
	if !errors.Is(err, ErrExists) && !strings.Contains(strings.Join(clierr.HintsOf(err), "\n"), "--force") {
		t.Errorf("overwrite without --force: %v", err)
	}
	if clierr.KindOf(err) != clierr.KindUsage {
		t.Errorf("overwrite without --force: kind %v, want usage", clierr.KindOf(err))
	}
	if !mustCert(t, filepath.Join(dir, "server.pem")).Equal(c) {
		t.Error("refused run changed server.pem")
	}
	mustRun(t, Options{Dir: dir, Command: CmdServer, Names: []string{"other.lan"}, Force: true})
	if got := mustCert(t, filepath.Join(dir, "server.pem")).DNSNames; strings.Join(got, ",") != "other.lan" {
		t.Errorf("after --force: %v", got)
	}

	mustRun(t, Options{Dir: dir, Command: CmdClient, CommonName: "sensor-1", Out: "sensor-1"})
	cl := mustCert(t, filepath.Join(dir, "sensor-1.pem"))
	if cl.Subject.CommonName != "sensor-1" || !hasEKU(cl, x509.ExtKeyUsageClientAuth) || hasEKU(cl, x509.ExtKeyUsageServerAuth) {
		t.Errorf("client: CN %q EKU %v", cl.Subject.CommonName, extKeyUsageNames(cl.ExtKeyUsage))
	}
	mustMode(t, filepath.Join(dir, "sensor-1-key.pem"), 0o600)
	opensslVerify(t, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sensor-1.pem"), "-purpose", "sslclient")
}

func TestRunUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for name, o := range map[string]Options{
		"no names":                  {Dir: dir, Command: CmdServer},
		"no client CN":              {Dir: dir, Command: CmdClient},
		"bad name":                  {Dir: dir, Command: CmdServer, Names: []string{"host:1883"}},
		"negative days":             {Dir: dir, Days: -1},
		"out with dir":              {Dir: dir, Command: CmdServer, Names: []string{"x"}, Out: "../x"},
		"bad constraint":            {Dir: dir, Command: CmdCA, NameConstraints: []string{"not a domain"}},
		"legacy no p12":             {Dir: dir, Command: CmdClient, CommonName: "a", P12Legacy: true},
		"control char CN":           {Dir: dir, Command: CmdClient, CommonName: "a\nb"},
		"constraint vs local names": {Dir: dir, NameConstraints: []string{"home.arpa"}},
		"p12 without password":      {Dir: dir, Command: CmdClient, CommonName: "a", P12: true},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := run(t, o)
			if err == nil || clierr.KindOf(err) != clierr.KindUsage {
				t.Errorf("got %v (kind %v), want a usage error", err, clierr.KindOf(err))
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("usage error left files behind: %v", entries)
			}
		})
	}
}

func TestRunDaysWarnings(t *testing.T) {
	// 825 days is Apple's limit on NotAfter-NotBefore: with the back-date
	// counted in, --days 825 must still fit, and draw no warning.
	dir825 := t.TempDir()
	_, errs825 := mustRun(t, Options{Dir: dir825, Command: CmdServer, Names: []string{"localhost"}, Days: MaxQuietLeaf})
	if strings.Contains(errs825, "825") {
		t.Errorf("warning for --days 825: %q", errs825)
	}
	c825 := mustCert(t, filepath.Join(dir825, "server.pem"))
	if got := c825.NotAfter.Sub(c825.NotBefore); got != MaxQuietLeaf*24*time.Hour {
		t.Errorf("--days 825 gives a validity of %v, want exactly 825 days", got)
	}
	_, errs826 := mustRun(t, Options{Dir: dir825, Command: CmdServer, Names: []string{"localhost"}, Out: "long", Days: MaxQuietLeaf + 1})
	if !strings.Contains(errs826, "more than 825 days") {
		t.Errorf("no warning for --days 826: %q", errs826)
	}

	dir := t.TempDir()
	_, errs := mustRun(t, Options{Dir: dir, Days: 900})
	if !strings.Contains(errs, "more than 825 days") {
		t.Errorf("no warning for 900-day leaves: %q", errs)
	}
	c := mustCert(t, filepath.Join(dir, "server.pem"))
	if d := c.NotAfter.Sub(c.NotBefore).Hours() / 24; d < 900 || d > 901 {
		t.Errorf("valid %.1f days, want 900", d)
	}
	mustRun(t, Options{Dir: t.TempDir(), Command: CmdCA, Days: 30})
	dir2 := t.TempDir()
	mustRun(t, Options{Dir: dir2, Command: CmdCA, Days: 30})
	_, errs = mustRun(t, Options{Dir: dir2, Command: CmdServer, Names: []string{"localhost"}})
	if !strings.Contains(errs, "outlive its CA") {
		t.Errorf("no warning for a leaf outliving its CA: %q", errs)
	}
}

func TestNameConstrainedCA(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	mustRun(t, Options{Dir: dir, Command: CmdCA, NameConstraints: []string{"home.arpa", "192.168.0.0/16"}})
	ca := mustCert(t, filepath.Join(dir, "ca.pem"))
	if strings.Join(ca.PermittedDNSDomains, ",") != "home.arpa" || !ca.PermittedDNSDomainsCritical || len(ca.PermittedIPRanges) != 1 {
		t.Fatalf("constraints: %v critical %v IP %v", ca.PermittedDNSDomains, ca.PermittedDNSDomainsCritical, ca.PermittedIPRanges)
	}
	if txt := opensslText(t, filepath.Join(dir, "ca.pem")); !strings.Contains(txt, "Permitted") || !strings.Contains(txt, "DNS:home.arpa") {
		t.Errorf("openssl does not show the constraint:\n%s", txt)
	}
	mustRun(t, Options{Dir: dir, Command: CmdServer, Names: []string{"broker.home.arpa", "192.168.1.2"}})
	opensslVerify(t, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"))

	// A name outside the constraint is a bad argument (exit 2), refused
	// before a key is made, with the fix.
	_, _, err := run(t, Options{Dir: dir, Command: CmdServer, Names: []string{"example.com"}, Out: "bad"})
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "name-constrained to home.arpa, 192.168.0.0/16 and may not sign example.com") ||
		!strings.Contains(strings.Join(clierr.HintsOf(err), "\n"), "give names inside") {
		t.Errorf("issuing outside the constraint: %v (kind %v)", err, clierr.KindOf(err))
	}
	_, _, err = run(t, Options{Dir: dir, Command: CmdServer, Names: []string{"10.0.0.1"}, Out: "bad"})
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "may not sign 10.0.0.1") {
		t.Errorf("issuing an IP outside the constraint: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.pem")); !os.IsNotExist(err) {
		t.Error("a refused certificate was written")
	}
}

func TestP12OpensWithOpenSSL(t *testing.T) {
	bin := requireOpenSSL(t)
	for _, legacy := range []bool{false, true} {
		name := "modern"
		if legacy {
			name = "legacy"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out, _ := mustRun(t, Options{Dir: dir, Command: CmdClient, CommonName: "alice", P12: true, P12Legacy: legacy, P12Password: "s3cret pw"})
			p12 := filepath.Join(dir, "client.p12")
			mustMode(t, p12, 0o600)
			if legacy != strings.Contains(out, "3DES") {
				t.Errorf("summary does not name the encryption: %q", out)
			}
			data, err := os.ReadFile(p12)
			if err != nil {
				t.Fatal(err)
			}
			key, cert, chain, err := pkcs12.DecodeChain(data, "s3cret pw")
			if err != nil || key == nil || cert.Subject.CommonName != "alice" || len(chain) != 1 || !chain[0].IsCA {
				t.Fatalf("go-pkcs12 decode: %v", err)
			}
			// OpenSSL 3 reads both without its legacy provider: modern is
			// AES/PBKDF2, legacy is 3DES (not RC2).
			o, err := exec.Command(bin, "pkcs12", "-in", p12, "-passin", "pass:s3cret pw", "-nokeys").CombinedOutput()
			if err != nil || !strings.Contains(string(o), "BEGIN CERTIFICATE") || !strings.Contains(string(o), "CN = alice") {
				t.Fatalf("openssl pkcs12 -nokeys: %v\n%s", err, o)
			}
			o, err = exec.Command(bin, "pkcs12", "-in", p12, "-passin", "pass:s3cret pw", "-nocerts", "-nodes").CombinedOutput()
			if err != nil || !strings.Contains(string(o), "PRIVATE KEY") {
				t.Fatalf("openssl pkcs12 -nocerts: %v\n%s", err, o)
			}
			if o, err := exec.Command(bin, "pkcs12", "-in", p12, "-passin", "pass:wrong", "-nokeys").CombinedOutput(); err == nil {
				t.Errorf("openssl accepted a wrong password:\n%s", o)
			}
		})
	}
}

func TestWriteFileNeverFollowsOrOverwrites(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "server-key.pem")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(link, []byte("secret"), keyFileMode, false); !errors.Is(err, ErrExists) {
		t.Errorf("writeFile over a symlink: %v, want ErrExists", err)
	}
	// With force the link itself is replaced by a new file, and the file it
	// pointed to is untouched.
	if err := writeFile(link, []byte("secret"), keyFileMode, true); err != nil {
		t.Fatal(err)
	}
	if read(t, target) != "keep" {
		t.Error("the symlink target was overwritten")
	}
	st, err := os.Lstat(link)
	if err != nil || st.Mode()&os.ModeSymlink != 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("after force: %v %v", st.Mode(), err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

func TestLoadAuthorityMismatch(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	mustRun(t, Options{Dir: a, Command: CmdCA})
	mustRun(t, Options{Dir: b, Command: CmdCA})
	// b's key with a's certificate: refuse to sign with a key that does
	// not belong to the CA clients trust.
	if err := os.WriteFile(filepath.Join(a, "private", "ca-key.pem"), []byte(read(t, filepath.Join(b, "private", "ca-key.pem"))), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, Options{Dir: a, Command: CmdServer, Names: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("mismatched CA key: %v", err)
	}
	if err := os.Remove(filepath.Join(a, "private", "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, Options{Dir: a, Command: CmdServer, Names: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "key") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing CA key: %v", err)
	}
}

func TestRunAllAddsExtrasToReusedPairs(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	mustRun(t, Options{Dir: dir})
	server := read(t, filepath.Join(dir, "server.pem"))
	out, _ := mustRun(t, Options{Dir: dir, Fullchain: true, P12: true, P12Password: "pw"})
	if read(t, filepath.Join(dir, "server.pem")) != server {
		t.Error("asking for extras reissued the server certificate")
	}
	for _, f := range []string{"server-fullchain.pem", "client-fullchain.pem", "server.p12", "client.p12"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("summary does not list %s:\n%s", f, out)
		}
	}
	opensslVerify(t, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server-fullchain.pem"))
	data, err := os.ReadFile(filepath.Join(dir, "server.p12"))
	if err != nil {
		t.Fatal(err)
	}
	if _, cert, _, err := pkcs12.DecodeChain(data, "pw"); err != nil || !cert.Equal(mustCert(t, filepath.Join(dir, "server.pem"))) {
		t.Errorf("server.p12 does not hold the reused certificate: %v", err)
	}
	p12 := read(t, filepath.Join(dir, "client.p12"))
	mustRun(t, Options{Dir: dir, P12: true, P12Password: "other"})
	if read(t, filepath.Join(dir, "client.p12")) != p12 {
		t.Error("an existing PKCS#12 file next to a reused pair was rewritten without --force")
	}

	// A new certificate never clobbers an older extra without --force.
	mustRun(t, Options{Dir: dir, Command: CmdServer, Names: []string{"a.lan"}, Out: "a"})
	if err := os.Remove(filepath.Join(dir, "a.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "a-key.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a-fullchain.pem"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, Options{Dir: dir, Command: CmdServer, Names: []string{"a.lan"}, Out: "a", Fullchain: true})
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "a-fullchain.pem already exists") {
		t.Errorf("existing fullchain: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.pem")); !os.IsNotExist(err) {
		t.Error("files were written before the conflict was reported")
	}
}
