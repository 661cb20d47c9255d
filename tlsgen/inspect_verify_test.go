package tlsgen

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ui"
)

func TestInspectJSONAndText(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	mustRun(t, Options{Dir: dir, Command: CmdCA, NameConstraints: []string{"lan"}})
	mustRun(t, Options{Dir: dir, Command: CmdServer, Names: []string{"broker.lan", "10.1.2.3"}, KeyType: RSA2048, Fullchain: true})
	files := []string{filepath.Join(dir, "server-fullchain.pem"), filepath.Join(dir, "server-key.pem")}

	io, out, _ := ui.Test(nil)
	if err := Inspect(&InspectOptions{IO: io, Files: files, JSON: true, Now: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	var infos []CertInfo
	if err := json.Unmarshal(out.Bytes(), &infos); err != nil {
		t.Fatalf("inspect --format json is not JSON: %v\n%s", err, out)
	}
	if len(infos) != 3 {
		t.Fatalf("got %d entries, want leaf, CA, key", len(infos))
	}
	leaf, ca, key := infos[0], infos[1], infos[2]
	if leaf.Type != "certificate" || leaf.CommonName != "broker.lan" || strings.Join(leaf.DNSNames, ",") != "broker.lan" ||
		strings.Join(leaf.IPAddresses, ",") != "10.1.2.3" || leaf.KeyType != "RSA 2048" || leaf.IsCA || leaf.Expired ||
		leaf.DaysLeft != 396 || strings.Join(leaf.ExtKeyUsage, ",") != "server auth" ||
		strings.Join(leaf.KeyUsage, ",") != "digital signature,key encipherment" || len(leaf.SHA256) != 95 || len(leaf.Serial) != 40 {
		t.Errorf("leaf: %+v", leaf)
	}
	if !ca.IsCA || !ca.SelfSigned || ca.MaxPathLen == nil || *ca.MaxPathLen != 0 || strings.Join(ca.PermittedDNSDomains, ",") != "lan" || ca.Index != 1 {
		t.Errorf("CA: %+v", ca)
	}
	if key.Type != "private-key" || key.KeyType != "RSA 2048" || key.Mode != "0600" || len(key.Warnings) != 0 {
		t.Errorf("key: %+v", key)
	}
	// The raw JSON uses the documented snake_case names.
	for _, field := range []string{`"days_left": 396`, `"dns_names"`, `"ip_addresses"`, `"not_after"`, `"sha256"`, `"ext_key_usage"`} {
		if !strings.Contains(out.String(), field) {
			t.Errorf("JSON lacks %s", field)
		}
	}

	io, out, _ = ui.Test(nil)
	if err := Inspect(&InspectOptions{IO: io, Files: files}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DNS:broker.lan, IP:10.1.2.3", "396 days left", "RSA 2048", "server auth", "signs leaf certificates only", "constraint   lan", "mode         0600"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}

	// A world-readable key and an expired certificate are called out.
	if err := os.Chmod(files[1], 0o644); err != nil {
		t.Fatal(err)
	}
	io, out, _ = ui.Test(nil)
	later := now.AddDate(0, 0, 400)
	if err := Inspect(&InspectOptions{IO: io, Files: files, Now: func() time.Time { return later }}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "chmod 600") || !strings.Contains(out.String(), "EXPIRED 3 days ago") {
		t.Errorf("warnings missing:\n%s", out)
	}

	if err := os.WriteFile(filepath.Join(dir, "junk"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A PEM block that does not parse is bad input like junk: a usage
	// error that says what to do, not a bare x509 message.
	if err := os.WriteFile(filepath.Join(dir, "damaged.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "damaged-key.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	io, _, _ = ui.Test(nil)
	for f, want := range map[string]struct{ msg, hint string }{
		"junk":            {"is not a DER certificate", "give a .pem/.crt file"},
		"missing.pem":     {"cannot read", ""},
		"damaged.pem":     {"the file is damaged or truncated", "copy it again from where it was made, or reissue it"},
		"damaged-key.pem": {"the file is damaged or truncated", "copy it again from where it was made, or reissue the certificate and its key"},
	} {
		err := Inspect(&InspectOptions{IO: io, Files: []string{filepath.Join(dir, f)}})
		if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), want.msg) {
			t.Errorf("inspect %s: %v, want a usage error with %q", f, err, want.msg)
		}
		if hints := strings.Join(clierr.HintsOf(err), "\n"); !strings.Contains(hints, want.hint) {
			t.Errorf("inspect %s: hints %q, want %q", f, hints, want.hint)
		}
	}
}

func TestVerifyVerdicts(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	now := time.Now()
	mustRun(t, Options{Dir: dir, Fullchain: true})
	mustRun(t, Options{Dir: other, Command: CmdCA})
	ca, srv, cli := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "client.pem")
	chain := filepath.Join(dir, "server-fullchain.pem")
	openssl := requireOpenSSL(t)

	tests := []struct {
		name       string
		o          VerifyOptions
		ok         bool
		want, hint string
	}{
		{"good server", VerifyOptions{CAFile: ca, CertFile: srv, Host: "localhost"}, true, "ok: " + srv + " is signed by " + ca, ""},
		{"good by IP", VerifyOptions{CAFile: ca, CertFile: srv, Host: "::1"}, true, "valid for ::1, usable as a server certificate", ""},
		{"good client", VerifyOptions{CAFile: ca, CertFile: cli}, true, "usable as a client certificate", ""},
		{"hostname mismatch", VerifyOptions{CAFile: ca, CertFile: srv, Host: "broker.example.com"}, false,
			"not valid for broker.example.com: it is valid for localhost, testhost, 127.0.0.1, ::1", "mqtk tlsgen server broker.example.com localhost"},
		{"wrong CA", VerifyOptions{CAFile: filepath.Join(other, "ca.pem"), CertFile: srv}, false, "not signed by this CA", "reissue it"},
		{"expired", VerifyOptions{CAFile: ca, CertFile: srv, Now: func() time.Time { return now.AddDate(0, 0, 400) }}, false, "expired on", "reissue it: mqtk tlsgen server"},
		{"not yet valid", VerifyOptions{CAFile: ca, CertFile: srv, Now: func() time.Time { return now.Add(-2 * time.Hour) }}, false, "not valid yet", "clock"},
		{"client as server", VerifyOptions{CAFile: ca, CertFile: cli, Host: "localhost"}, false, "it is a client certificate", "mqtk tlsgen client mqtk-client"},
		{"leaf as CA", VerifyOptions{CAFile: srv, CertFile: cli}, false, srv + " is not a CA certificate", "give the CA file (ca.pem) as --ca: mqtk tlsgen verify --ca " + ca},
		// Go alone would say ok: it trusts anything in its root pool.
		{"leaf as its own CA", VerifyOptions{CAFile: srv, CertFile: srv}, false, srv + " holds " + srv + " itself, not the CA that signed it", "give the CA file (ca.pem) as --ca: mqtk tlsgen verify --ca " + ca + " " + srv},
		{"client as its own CA", VerifyOptions{CAFile: cli, CertFile: cli, Host: "localhost"}, false, "cannot vouch for itself", "give the CA file (ca.pem)"},
		// A CA file holding the leaf and its CA (a fullchain) is fine.
		{"fullchain as CA", VerifyOptions{CAFile: chain, CertFile: srv}, true, "ok: ", ""},
		// The CA chains to itself; the verdict is ok, with a warning below.
		{"CA as leaf", VerifyOptions{CAFile: ca, CertFile: ca}, true, "ok: " + ca + " is signed by " + ca, "is a CA certificate: brokers and clients should present a certificate it signed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// OpenSSL, which mosquitto and paho use, gives the same verdict:
			// at the same time, for the same name, as a server when a host
			// is given (verify checks server use then).
			args := []string{"verify", "-CAfile", tt.o.CAFile}
			if tt.o.Now != nil {
				args = append(args, "-attime", strconv.FormatInt(tt.o.Now().Unix(), 10))
			}
			if tt.o.Host != "" {
				args = append(args, "-purpose", "sslserver")
				if net.ParseIP(tt.o.Host) != nil {
					args = append(args, "-verify_ip", tt.o.Host)
				} else {
					args = append(args, "-verify_hostname", tt.o.Host)
				}
			}
			sslOut, sslErr := exec.Command(openssl, append(args, tt.o.CertFile)...).CombinedOutput()
			if sslOK := sslErr == nil; sslOK != tt.ok {
				t.Errorf("openssl verify says ok=%v, mqtk ok=%v:\n%s", sslOK, tt.ok, sslOut)
			}

			io, out, errb := ui.Test(nil)
			tt.o.IO = io
			err := Verify(&tt.o)
			if tt.ok {
				if err != nil || !strings.Contains(out.String(), tt.want) {
					t.Fatalf("err %v, stdout %q; want %q", err, out, tt.want)
				}
				if !strings.Contains(errb.String(), tt.hint) || (tt.hint == "" && errb.Len() != 0) {
					t.Errorf("stderr %q; want %q", errb, tt.hint)
				}
				return
			}
			if err == nil {
				t.Fatalf("verified; stdout %q", out)
			}
			if clierr.KindOf(err) != clierr.KindTLS {
				t.Errorf("kind %v, want TLS (exit 4)", clierr.KindOf(err))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("verdict %q lacks %q", err, tt.want)
			}
			if hints := strings.Join(clierr.HintsOf(err), "\n"); !strings.Contains(hints, tt.hint) {
				t.Errorf("hints %q lack %q", hints, tt.hint)
			}
			if out.Len() != 0 || errb.Len() != 0 {
				t.Errorf("failure wrote output: %q %q", out, errb)
			}
		})
	}

	// A certificate close to expiry verifies, with a warning.
	io, _, errb := ui.Test(nil)
	if err := Verify(&VerifyOptions{IO: io, CAFile: ca, CertFile: srv, Now: func() time.Time { return now.AddDate(0, 0, 390) }}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "expires in") {
		t.Errorf("no near-expiry warning: %q", errb)
	}
	if err := Verify(&VerifyOptions{IO: io, CertFile: srv}); clierr.KindOf(err) != clierr.KindUsage {
		t.Errorf("missing --ca: %v", err)
	}
	for _, host := range []string{"bad host", "a..b", "-x.lan"} {
		err := Verify(&VerifyOptions{IO: io, CAFile: ca, CertFile: srv, Host: host})
		if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "is not a host name or IP address") {
			t.Errorf("--host %q: %v, want a usage error", host, err)
		}
	}
}
