package tlsgen

import (
	"fmt"
	"path/filepath"
	"strings"
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
		fmt.Fprintf(&b, "\nServe it:\n  mqtk broker --listen tls://127.0.0.1:8883 --tls-cert %s --tls-key %s\n  (mosquitto.conf: certfile %s, keyfile %s)\nClients trust it with --cafile %s\n",
			p(base+".pem"), p(base+"-key.pem"), p(base+".pem"), p(base+"-key.pem"), p(CAFile))
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
	abs := func(name string) string {
		a, err := filepath.Abs(filepath.Join(r.dir, name))
		if err != nil {
			return filepath.Join(r.dir, name)
		}
		return a
	}
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

Or serve them from mosquitto (mosquitto.conf):
  listener 8883
  cafile %s
  certfile %s
  keyfile %s
  require_certificate true
  use_identity_as_username true
`, p("server.pem"), p("server-key.pem"), ca, tlsFlags, tlsFlags, tlsFlags, tlsFlags,
		abs(CAFile), abs("server.pem"), abs("server-key.pem"))
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
