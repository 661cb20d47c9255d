package tlsgen

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

// TestRunAllRefusesFlagsThatDisagreeWithReusedFiles: a second `mqtk
// tlsgen --cn bob --key-type ... --days 30` used to exit 0 keeping CN
// mqtk-client. It now stops before writing anything and names, per
// certificate, the command that reissues just that one; that command
// works, and afterwards the same flags are accepted.
func TestRunAllRefusesFlagsThatDisagreeWithReusedFiles(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, Options{Dir: dir})
	names := []string{"ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"}
	before := map[string]string{}
	for _, n := range names {
		before[n] = read(t, filepath.Join(dir, n))
	}

	_, _, err := run(t, Options{Dir: dir, CommonName: "bob", KeyType: ECDSAP384, Days: 30})
	if clierr.KindOf(err) != clierr.KindUsage {
		t.Fatalf("got %v (kind %v), want a usage error", err, clierr.KindOf(err))
	}
	for _, want := range []string{
		filepath.Join(dir, "client.pem") + " has CN mqtk-client, not bob, an ECDSA P-256 key, not ecdsa-p384, a validity of 397 days, not 30",
		filepath.Join(dir, "server.pem") + " has an ECDSA P-256 key, not ecdsa-p384, a validity of 397 days, not 30",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	hints := strings.Join(clierr.HintsOf(err), "\n")
	clientCmd := "mqtk tlsgen client bob --key-type ecdsa-p384 --days 30 --force --dir " + dir
	for _, want := range []string{clientCmd, "mqtk tlsgen server localhost 127.0.0.1 ::1 testhost --key-type ecdsa-p384 --days 30 --force --dir " + dir, "leave out --cn, --key-type, --days"} {
		if !strings.Contains(hints, want) {
			t.Errorf("hints %q lack %q", hints, want)
		}
	}
	for _, n := range names {
		if read(t, filepath.Join(dir, n)) != before[n] {
			t.Errorf("the refused run changed %s", n)
		}
	}

	// Explicit flags that match the files are no conflict.
	mustRun(t, Options{Dir: dir, CommonName: DefaultClientCN, KeyType: ECDSAP256, Days: DefaultLeafDays})

	// The hinted command, run as given, reissues only the client
	// certificate and keeps the CA; --cn bob is then accepted.
	mustRun(t, Options{Dir: dir, Command: CmdClient, CommonName: "bob", KeyType: ECDSAP384, Days: 30, Force: true})
	c := mustCert(t, filepath.Join(dir, "client.pem"))
	if c.Subject.CommonName != "bob" || keyTypeOf(c.PublicKey) != ECDSAP384 || validDays(c) != 30 {
		t.Errorf("reissued client: CN %q, key %s, %d days", c.Subject.CommonName, keyTypeOf(c.PublicKey), validDays(c))
	}
	if read(t, filepath.Join(dir, "ca.pem")) != before["ca.pem"] || read(t, filepath.Join(dir, "server.pem")) != before["server.pem"] {
		t.Error("reissuing the client certificate changed the CA or the server certificate")
	}
	out, _ := mustRun(t, Options{Dir: dir, CommonName: "bob"})
	if !strings.Contains(out, "reused") {
		t.Errorf("rerun with the matching --cn did not reuse:\n%s", out)
	}
	// --force on the one-shot command still replaces everything.
	mustRun(t, Options{Dir: dir, CommonName: "carol", Force: true})
	if cn := mustCert(t, filepath.Join(dir, "client.pem")).Subject.CommonName; cn != "carol" {
		t.Errorf("--force: client CN %q", cn)
	}
}

// TestRunAllRefusesServerCertificateForOldHostName: the reused server
// certificate must still cover the machine's names, as EnsureLocal checks.
func TestRunAllRefusesServerCertificateForOldHostName(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, Options{Dir: dir})
	before := read(t, filepath.Join(dir, "server.pem"))
	renamed := func() (string, error) { return "newhost", nil }
	_, _, err := run(t, Options{Dir: dir, Hostname: renamed})
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "does not cover newhost") ||
		!strings.Contains(strings.Join(clierr.HintsOf(err), "\n"), "mqtk tlsgen server localhost 127.0.0.1 ::1 newhost --force --dir "+dir) {
		t.Fatalf("renamed host: %v", err)
	}
	if read(t, filepath.Join(dir, "server.pem")) != before {
		t.Error("the refused run changed server.pem")
	}
	mustRun(t, Options{Dir: dir, Command: CmdServer, Names: []string{"localhost", "127.0.0.1", "::1", "newhost"}, Force: true})
	mustRun(t, Options{Dir: dir, Hostname: renamed})
}

// TestCAFlagsOnExistingCA: `tlsgen ca` with a flag the existing CA does
// not match is a usage error naming --force, since a script would believe
// the CA is, say, name-constrained. Matching flags are accepted.
func TestCAFlagsOnExistingCA(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, Options{Dir: dir, Command: CmdCA, NameConstraints: []string{"lan", "10.0.0.0/8"}, CommonName: "Home CA"})
	ca := read(t, filepath.Join(dir, "ca.pem"))
	for name, tt := range map[string]struct {
		o    Options
		want string
	}{
		"other constraint":       {Options{Command: CmdCA, NameConstraints: []string{"home.arpa"}}, "the name constraint lan, 10.0.0.0/8, not home.arpa"},
		"constraint on one-shot": {Options{NameConstraints: []string{"lan"}}, "not lan"},
		"days":                   {Options{Command: CmdCA, Days: 30}, "a validity of 3650 days, not 30"},
		"cn":                     {Options{Command: CmdCA, CommonName: "Other CA"}, `the name "Home CA", not "Other CA"`},
		"key type":               {Options{Command: CmdCA, KeyType: Ed25519}, "an ECDSA P-256 key, not ed25519"},
	} {
		t.Run(name, func(t *testing.T) {
			o := tt.o
			o.Dir = dir
			_, _, err := run(t, o)
			if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), tt.want) || !strings.Contains(strings.Join(clierr.HintsOf(err), "\n"), "add --force") {
				t.Errorf("got %v (kind %v), want a usage error with %q and --force", err, clierr.KindOf(err), tt.want)
			}
			if read(t, filepath.Join(dir, "ca.pem")) != ca {
				t.Error("the refused run changed the CA")
			}
		})
	}
	// The same constraints, spelt differently, and the same CN and days.
	mustRun(t, Options{Dir: dir, Command: CmdCA, NameConstraints: []string{"10.1.2.3/8", ".LAN"}, CommonName: "Home CA", Days: DefaultCADays, KeyType: ECDSAP256})
	// A CA without a constraint is not one with a constraint.
	plain := t.TempDir()
	mustRun(t, Options{Dir: plain, Command: CmdCA})
	if _, _, err := run(t, Options{Dir: plain, Command: CmdCA, NameConstraints: []string{"lan"}}); clierr.KindOf(err) != clierr.KindUsage ||
		!strings.Contains(err.Error(), "no name constraint (it may sign for any name), not lan") ||
		!strings.Contains(strings.Join(clierr.HintsOf(err), "\n"), "mqtk tlsgen ca --force --name-constraint lan --dir "+plain) {
		t.Errorf("constraint on an unconstrained CA: %v", err)
	}
	// With --force the constraint is applied.
	mustRun(t, Options{Dir: plain, Command: CmdCA, NameConstraints: []string{"lan"}, Force: true})
	if got := mustCert(t, filepath.Join(plain, "ca.pem")).PermittedDNSDomains; strings.Join(got, ",") != "lan" {
		t.Errorf("after --force: constraints %v", got)
	}
}

// TestSerialAndBackdate: serials are 20 random octets, positive, never
// shorter; NotBefore is back-dated an hour for clock skew and NotAfter is
// exactly --days after it; OpenSSL reads the same serial.
func TestSerialAndBackdate(t *testing.T) {
	now := time.Date(2030, 3, 30, 12, 0, 0, 0, time.UTC) // across a DST change in Europe
	ca, err := newAuthority(caParams{CommonName: "t", Days: 100, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.issue(leafParams{CommonName: "x", SANs: []SAN{{Kind: SANDNS, Value: "x"}}, Days: 10, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for name, c := range map[string]struct {
		sn   []byte
		nb   time.Time
		na   time.Time
		days int
	}{
		"CA":   {ca.Cert.SerialNumber.Bytes(), ca.Cert.NotBefore, ca.Cert.NotAfter, 100},
		"leaf": {leaf.Cert.SerialNumber.Bytes(), leaf.Cert.NotBefore, leaf.Cert.NotAfter, 10},
	} {
		if len(c.sn) != 20 {
			t.Errorf("%s serial is %d octets, want 20", name, len(c.sn))
		}
		seen[string(c.sn)] = true
		if want := now.Add(-time.Hour); !c.nb.Equal(want) {
			t.Errorf("%s NotBefore %v, want %v (an hour back)", name, c.nb, want)
		}
		if got := c.na.Sub(c.nb); got != time.Duration(c.days)*24*time.Hour {
			t.Errorf("%s validity %v, want %d days", name, got, c.days)
		}
	}
	if ca.Cert.SerialNumber.Sign() <= 0 || leaf.Cert.SerialNumber.Sign() <= 0 || len(seen) != 2 {
		t.Error("serials not positive or not distinct")
	}
	for range 50 {
		sn, err := serial(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(sn.Bytes()) != 20 {
			t.Fatalf("serial %x is %d octets", sn, len(sn.Bytes()))
		}
	}

	dir := t.TempDir()
	mustRun(t, Options{Dir: dir, Command: CmdCA})
	bin := requireOpenSSL(t)
	out, err := exec.Command(bin, "x509", "-in", filepath.Join(dir, "ca.pem"), "-noout", "-serial").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -serial: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`^serial=[0-9A-F]{40}\s*$`).Match(out) {
		t.Errorf("openssl shows %q, want 40 hex digits", out)
	}
}

// TestDirThatCannotHoldFiles: --dir naming a file is an I/O error (exit 1,
// as DESIGN.md has it) whose hint names --dir.
func TestDirThatCannotHoldFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "sub")} {
		_, _, err := run(t, Options{Dir: dir})
		if err == nil || clierr.KindOf(err) != clierr.KindOther {
			t.Fatalf("--dir %s: %v (kind %v), want a runtime error", dir, err, clierr.KindOf(err))
		}
		if hints := strings.Join(clierr.HintsOf(err), "\n"); !strings.Contains(hints, "--dir "+dir+" is, or is inside, something that is not a directory") {
			t.Errorf("--dir %s: hints %q", dir, hints)
		}
	}
}

// TestEnsureLocalBrokenCANamesTheFix: mqtk broker has no --force, so a
// broken CA directory names the tlsgen command that replaces the CA; after
// it, EnsureLocal reissues the server certificate from the new CA.
func TestEnsureLocalBrokenCANamesTheFix(t *testing.T) {
	host := func() (string, error) { return "devbox", nil }
	for name, breakIt := range map[string]func(dir string) error{
		"corrupt ca.pem": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, CAFile), []byte("not a certificate"), 0o644)
		},
		"missing ca.pem": func(dir string) error { return os.Remove(filepath.Join(dir, CAFile)) },
		"missing CA key": func(dir string) error { return os.Remove(filepath.Join(dir, CAKeyDir, CAKeyFile)) },
		"corrupt CA key": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, CAKeyDir, CAKeyFile), []byte("junk"), 0o600)
		},
		"server as CA": func(dir string) error {
			data, err := os.ReadFile(filepath.Join(dir, "server.pem"))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, CAFile), data, 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tls")
			if _, err := ensureLocal(dir, time.Now(), host); err != nil {
				t.Fatal(err)
			}
			if err := breakIt(dir); err != nil {
				t.Fatal(err)
			}
			_, err := ensureLocal(dir, time.Now(), host)
			if err == nil {
				t.Fatal("a broken CA directory was accepted")
			}
			hints := clierr.HintsOf(err)
			all := strings.Join(hints, "\n")
			if !strings.Contains(all, "replace the CA with mqtk tlsgen ca --force --dir "+dir) || strings.Contains(all, "replace the CA with --force") {
				t.Errorf("hints %q do not name mqtk tlsgen ca --force --dir", all)
			}
			// What to do after the fix comes after the fix.
			if last := hints[len(hints)-1]; !strings.Contains(last, "start mqtk broker --tls again: it reissues the server certificate") {
				t.Errorf("hints %q", all)
			}
			// The fix as printed works.
			if _, errs, err := run(t, Options{Dir: dir, Command: CmdCA, Force: true}); err != nil {
				t.Fatalf("mqtk tlsgen ca --force: %v %s", err, errs)
			}
			f, err := ensureLocal(dir, time.Now(), host)
			if err != nil || !f.Created {
				t.Fatalf("after replacing the CA: %v, created %v", err, f.Created)
			}
			ca, err := loadAuthority(dir, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := ca.check(mustCert(t, f.CertFile), time.Now()); err != nil {
				t.Errorf("server certificate not reissued from the new CA: %v", err)
			}
		})
	}
}
