package tlsgen

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// summary prints what was written, then, for the one-shot command, the
// exact lines that use the files: mqtk broker, mqtk sub/pub, mosquitto.conf
// and mosquitto's clients.
func (r *runner) summary() error {
	if r.o.IO == nil {
		return nil
	}
	var b strings.Builder
	width := 0
	for _, f := range r.files {
		width = max(width, len(f.what))
	}
	for _, f := range r.files {
		fmt.Fprintf(&b, "%-*s  %s", width, f.what, f.path)
		if f.note != "" {
			fmt.Fprintf(&b, "  (%s)", f.note)
		}
		b.WriteByte('\n')
	}
	switch r.o.Command {
	case CmdAll:
		r.snippets(&b)
	case CmdServer:
		p := func(name string) string { return shellQuote(filepath.Join(r.dir, name)) }
		base := r.base("server")
		fmt.Fprintf(&b, "\nServe it:\n  mqtk broker --listen tls://127.0.0.1:8883 --tls-cert %s --tls-key %s\n", p(base+".pem"), p(base+"-key.pem"))
		fmt.Fprintf(&b, "For mosquitto, which reads them as the user mosquitto, install copies it can read:\n%s", r.mosquittoInstall(base))
		fmt.Fprintf(&b, "  (mosquitto.conf: certfile %s/%s.pem, keyfile %s/%s-key.pem)\nClients trust it with --cafile %s\n",
			mosquittoCertDir, base, mosquittoCertDir, base, p(CAFile))
	case CmdClient:
		p := func(name string) string { return shellQuote(filepath.Join(r.dir, name)) }
		base := r.base("client")
		fmt.Fprintf(&b, "\nConnect with it (brokers with use_identity_as_username see the user %s):\n  mqtk sub -h localhost -p 8883 --cafile %s --cert %s --key %s -t 'test/#'\n",
			shellQuote(r.o.CommonName), p(CAFile), p(base+".pem"), p(base+"-key.pem"))
	}
	_, err := fmt.Fprint(r.o.IO.Out, b.String())
	return err
}

func (r *runner) snippets(b *strings.Builder) {
	p := func(name string) string { return shellQuote(filepath.Join(r.dir, name)) }
	ca := p(CAFile)
	tlsFlags := fmt.Sprintf("--cafile %s --cert %s --key %s", ca, p("client.pem"), p("client-key.pem"))
	fmt.Fprintf(b, `
Run mqtk's broker with MQTTS and client certificates (the client's CN becomes its user name):
  mqtk broker --listen tls://127.0.0.1:8883 --tls-cert %s --tls-key %s --tls-ca %s --require-client-cert --cert-as-username

Subscribe and publish with the client certificate:
  mqtk sub -h localhost -p 8883 %s -t 'test/#'
  mqtk pub -h localhost -p 8883 %s -t test/hello -m hello

The same with mosquitto's clients:
  mosquitto_sub -h localhost -p 8883 %s -t 'test/#'
  mosquitto_pub -h localhost -p 8883 %s -t test/hello -m hello
`, p("server.pem"), p("server-key.pem"), ca, tlsFlags, tlsFlags, tlsFlags, tlsFlags)
	fmt.Fprintf(b, `
Or serve them from mosquitto. Started as root, it reads certificates as the user mosquitto,
which cannot read %s (mode 0700) or the key (0600); install copies it can read:
%sthen put these lines in /etc/mosquitto/conf.d/mqtk.conf and restart mosquitto:
  listener 8883
  cafile %s/%s
  certfile %s/server.pem
  keyfile %s/server-key.pem
  require_certificate true
  use_identity_as_username true
`, shellQuote(r.dir), r.mosquittoInstall("server"), mosquittoCertDir, CAFile, mosquittoCertDir, mosquittoCertDir)
}

// mosquittoCertDir is where Debian's mosquitto package expects
// certificates; it exists (mode 0755) once mosquitto is installed.
const mosquittoCertDir = "/etc/mosquitto/certs"

// mosquittoInstall returns the commands that copy the CA and the server
// pair base into mosquittoCertDir. mosquitto drops from root to its own
// user before it loads certificates, so it needs: certificates readable by
// all (0644, they are public), the key readable by its group only (0640,
// group mosquitto), and directories it can enter (install -D makes them
// 0755). The copies are owned by root, so mosquitto cannot change them.
func (r *runner) mosquittoInstall(base string) string {
	p := func(name string) string { return shellQuote(filepath.Join(r.dir, name)) }
	return fmt.Sprintf("  sudo install -D -m 0644 -t %s %s %s\n  sudo install -m 0640 -g mosquitto -t %s %s\n",
		mosquittoCertDir, p(CAFile), p(base+".pem"), mosquittoCertDir, p(base+"-key.pem"))
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func describeValidity(c *x509.Certificate, now time.Time) string {
	return fmt.Sprintf("valid until %s (%d days)", c.NotAfter.UTC().Format(time.DateOnly), daysLeft(c.NotAfter, now))
}
