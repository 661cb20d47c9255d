package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/tlsgen"
)

func runBrokerCmd(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	streams, out, errb := ui.Test(strings.NewReader(stdin))
	code := execute(context.Background(), streams, args, func(string) string { return "" })
	return out.String(), errb.String(), code
}

func TestBrokerConfigFileAndFlagPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(cfg, []byte("listen:\n  - tcp://127.0.0.1:1999\nmax-clients: 10\nmax-keepalive: 120\nconnect-timeout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runBrokerCmd(t, "", "broker", "--config", cfg, "--max-clients", "20", "--print-config")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"- tcp://127.0.0.1:1999", "max-clients: 20", "max-keepalive: 120", "connect-timeout: 3s", "max-packet-size: 1048576"} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
	// The printed configuration reads back unchanged.
	again := filepath.Join(t.TempDir(), "again.yaml")
	if err := os.WriteFile(again, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	out2, errs, code := runBrokerCmd(t, "", "broker", "--config", again, "--print-config")
	if code != 0 || out2 != out {
		t.Fatalf("round trip changed the config (exit %d, %s):\n%s\nvs\n%s", code, errs, out, out2)
	}
}

func TestBrokerConfigUnknownKeyIsUsageError(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(cfg, []byte("max-clientz: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := runBrokerCmd(t, "", "broker", "--config", cfg, "--print-config")
	if code != 2 || !strings.Contains(errs, "max-clientz") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestBrokerRefusesOpenListenerWithoutGuard(t *testing.T) {
	_, errs, code := runBrokerCmd(t, "", "broker", "--listen", "tcp://0.0.0.0:0")
	if code != 2 || !strings.Contains(errs, "--allow-anonymous") || !strings.Contains(errs, "--password-file") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestBrokerPasswdFromStdin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	_, errs, code := runBrokerCmd(t, "s3cret\n", "broker", "passwd", "--password-stdin", file, "alice")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	data, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(data), "alice:$7$") {
		t.Fatalf("file %q, %v", data, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// Without a terminal and without --password-stdin there is nowhere to ask.
	_, errs, code = runBrokerCmd(t, "", "broker", "passwd", file, "bob")
	if code != 2 || !strings.Contains(errs, "--password-stdin") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	_, _, code = runBrokerCmd(t, "", "broker", "passwd", file)
	if code != 2 {
		t.Fatalf("one argument: exit %d, want 2", code)
	}
}

// Client certificates guard only TLS listeners: a plain listener beside
// them would take anonymous clients from other machines.
func TestBrokerClientCertsDoNotGuardPlainListeners(t *testing.T) {
	_, errs, code := runBrokerCmd(t, "", "broker", "--listen", "tcp://0.0.0.0:0", "--listen", "tls://127.0.0.1:0",
		"--tls-cert", "x.pem", "--tls-key", "x-key.pem", "--tls-ca", "ca.pem", "--require-client-cert")
	if code != 2 || !strings.Contains(errs, "tcp://0.0.0.0:0 would accept anonymous clients") || !strings.Contains(errs, "tls:// or wss:// instead of tcp://") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestBrokerSetupErrorsExitCodesAndHints(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"port out of range", []string{"--listen", "tcp://127.0.0.1:99999"}, 2, []string{`port "99999" is not a port number`, "1 to 65535"}},
		{"not an IP", []string{"--listen", "tcp://999.1.1.1:0"}, 2, []string{`"999.1.1.1" is not a valid IP address`}},
		{"missing certificate", []string{"--listen", "tls://127.0.0.1:0", "--tls-cert", "nope.pem", "--tls-key", "nope-key.pem"}, 2,
			[]string{"load tls certificate", "hint: check the files given with --tls-cert and --tls-key"}},
		{"missing password file", []string{"--listen", "tcp://127.0.0.1:0", "--password-file", "nope.txt"}, 2,
			[]string{"read password file", "hint: check the file given with --password-file"}},
		{"missing acl file", []string{"--listen", "tcp://127.0.0.1:0", "--acl-file", "nope.acl"}, 2,
			[]string{"read acl file", "hint: check the file given with --acl-file"}},
		{"data directory cannot be created", []string{"--listen", "tcp://127.0.0.1:0", "--data", filepath.Join(notDir, "data")}, 1,
			[]string{"create data directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := runBrokerCmd(t, "", append([]string{"broker"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			if strings.Contains(errs, "see 'mqtk --help'") {
				t.Errorf("generic hint where a specific one was given:\n%s", errs)
			}
		})
	}
}

// --print-config shows every key with its effective value, false and zero
// included (max-message-expiry 0 is the documented "no ceiling").
func TestBrokerPrintConfigShowsEveryKey(t *testing.T) {
	out, errs, code := runBrokerCmd(t, "", "broker", "--print-config")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"max-message-expiry: 0s", "trace: false", "allow-anonymous: false", "tls: false",
		"password-file: \"\"", "auth-fail-delay: 1s", "topic-alias-out-max: 10", "pprof: false"} {
		if !strings.Contains(out, want) {
			t.Errorf("printed config lacks %q:\n%s", want, out)
		}
	}
}

// brokerOpts runs 'mqtk broker ARGS' up to the point where it would start
// the broker and returns the options it would start it with.
func brokerOpts(t *testing.T, args ...string) broker.Options {
	t.Helper()
	streams, _, errb := ui.Test(nil)
	var got *broker.Options
	cmd := newBrokerCmd(&app{io: streams, getenv: func(string) string { return "" }}, func(o *broker.Options) error {
		got = o
		return nil
	})
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil || got == nil {
		t.Fatalf("mqtk broker %v: %v %s", args, err, errb)
	}
	return *got
}

// An explicit 0 means what it says; left out, the default applies.
func TestBrokerExplicitZeroLimits(t *testing.T) {
	o := brokerOpts(t, "--auth-fail-delay", "0", "--max-session-expiry", "0", "--topic-alias-out-max", "0")
	if !o.ExactLimits || o.AuthFailDelay != 0 || o.MaxSessionExpiry != 0 || o.TopicAliasOutMaximum != 0 {
		t.Errorf("explicit zeros: exact=%v auth-fail-delay=%v max-session-expiry=%v topic-alias-out-max=%d",
			o.ExactLimits, o.AuthFailDelay, o.MaxSessionExpiry, o.TopicAliasOutMaximum)
	}
	d := broker.DefaultLimits()
	if o := brokerOpts(t); o.AuthFailDelay != d.AuthFailDelay || o.MaxSessionExpiry != d.MaxSessionExpiry {
		t.Errorf("defaults: auth-fail-delay=%v max-session-expiry=%v", o.AuthFailDelay, o.MaxSessionExpiry)
	}
	// The same through a config file.
	cfg := filepath.Join(t.TempDir(), "b.yaml")
	if err := os.WriteFile(cfg, []byte("auth-fail-delay: 0s\nmax-session-expiry: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o := brokerOpts(t, "--config", cfg); o.AuthFailDelay != 0 || o.MaxSessionExpiry != 0 {
		t.Errorf("config file zeros: auth-fail-delay=%v max-session-expiry=%v", o.AuthFailDelay, o.MaxSessionExpiry)
	}
}

// With no flags the broker listens on 127.0.0.1:1883 and nowhere else.
func TestBrokerDefaultListener(t *testing.T) {
	o := brokerOpts(t)
	if len(o.Listeners) != 1 || o.Listeners[0] != "tcp://127.0.0.1:1883" {
		t.Fatalf("listeners %q, want only tcp://127.0.0.1:1883", o.Listeners)
	}
	if _, err := broker.New(o); err != nil {
		t.Fatalf("the default options do not make a broker: %v", err)
	}
}

// --tls fills in the options through the runF seam without writing
// anything; the certificates are made after the seam, by runBroker's
// makeLocalTLS, and serve localhost.
func TestBrokerTLSSeamWritesNothing(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "mqtk", "tls")
	streams, _, errb := ui.Test(nil)
	a := &app{io: streams, getenv: func(k string) string {
		if k == "XDG_DATA_HOME" {
			return data
		}
		return ""
	}}
	var got *broker.Options
	cmd := newBrokerCmd(a, func(o *broker.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--tls"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.Execute(); err != nil || got == nil {
		t.Fatalf("execute: %v %s", err, errb)
	}
	want := []string{broker.DefaultListener, "tls://127.0.0.1:8883"}
	if strings.Join(got.Listeners, " ") != strings.Join(want, " ") {
		t.Errorf("listeners %q, want %q", got.Listeners, want)
	}
	ca := filepath.Join(dir, tlsgen.CAFile)
	if got.TLSCert != filepath.Join(dir, "server.pem") || got.TLSKey != filepath.Join(dir, "server-key.pem") || got.TLSCA != ca {
		t.Errorf("files %s %s %s, want them in %s", got.TLSCert, got.TLSKey, got.TLSCA, dir)
	}
	if _, err := os.Stat(filepath.Join(data, "mqtk")); !os.IsNotExist(err) {
		t.Fatalf("the runF seam wrote to %s: %v", data, err)
	}
	files, err := makeLocalTLS(a, dir)
	if err != nil {
		t.Fatal(err)
	}
	if files.CertFile != got.TLSCert || files.KeyFile != got.TLSKey || files.CAFile != got.TLSCA || !files.CACreated {
		t.Errorf("made %+v, the seam saw %s %s %s", files, got.TLSCert, got.TLSKey, got.TLSCA)
	}
	if !strings.Contains(errb.String(), "made a local CA and server certificate in "+dir) {
		t.Errorf("no word of the new CA: %q", errb)
	}
	code, out, errs := mqtkRun(t, nil, "tlsgen", "verify", "--ca", ca, got.TLSCert, "--host", "localhost")
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("verify: exit %d %q %q", code, out, errs)
	}
}

// shellWords splits a banner line as a shell would (single quotes only,
// which is all the banner uses).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, in = !quoted, true
		case r == ' ' && !quoted:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// The banner's "try it" lines work as printed.
func TestBrokerBannerLinesWork(t *testing.T) {
	env := func(string) string { return "" }
	logs := &ui.SyncBuffer{}
	streams := &ui.Streams{In: strings.NewReader(""), Out: ui.NewStream(io.Discard, false, ui.ColorNever, env),
		Err: ui.NewStream(logs, false, ui.ColorNever, env), Getenv: env}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- execute(ctx, streams, []string{"broker", "--listen", "tcp://127.0.0.1:0"}, env) }()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("broker exit %d:\n%s", code, logs)
		}
	}()
	var subLine, pubLine string
	for i := 0; i < 500 && (subLine == "" || pubLine == ""); i++ {
		for _, l := range strings.Split(logs.String(), "\n") {
			if j := strings.Index(l, "mqtk sub "); j >= 0 {
				subLine = l[j:]
			}
			if j := strings.Index(l, "mqtk pub "); j >= 0 {
				pubLine = l[j:]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if subLine == "" || pubLine == "" {
		t.Fatalf("no try-it lines in the banner:\n%s", logs)
	}
	subStreams, subOut, subErr := ui.Test(nil)
	subDone := make(chan int, 1)
	go func() {
		subDone <- execute(ctx, subStreams, append(shellWords(subLine)[1:], "-C", "1", "-W", "30"), env)
	}()
	// Publish until the subscriber, which may not have subscribed yet, has
	// its message.
	for i := 0; ; i++ {
		pubStreams, _, pubErr := ui.Test(nil)
		if code := execute(ctx, pubStreams, shellWords(pubLine)[1:], env); code != 0 {
			t.Fatalf("%s: exit %d: %s", pubLine, code, pubErr)
		}
		select {
		case code := <-subDone:
			if code != 0 || !strings.Contains(subOut.String(), "hello/world hi there") {
				t.Fatalf("%s: exit %d, out %q, err %q", subLine, code, subOut, subErr)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if i == 100 {
			t.Fatalf("%s received nothing", subLine)
		}
	}
}

// With TLS from files and no CA, the banner says which CA the client
// needs, and with client certificates which certificate.
func TestBrokerBannerTLSPlaceholders(t *testing.T) {
	dir := t.TempDir()
	env := func(string) string { return "" }
	streams, _, errb := ui.Test(nil)
	if code := execute(context.Background(), streams, []string{"tlsgen", "server", "localhost", "--dir", dir}, env); code != 0 {
		t.Fatalf("tlsgen server: exit %d: %s", code, errb)
	}
	cert, key, ca := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "ca.pem")
	for _, f := range []string{cert, key, ca} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("tlsgen server did not write %s: %v", f, err)
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--tls-cert", cert, "--tls-key", key}, []string{"--cafile CA.pem", "CA.pem: the CA certificate that signed " + cert}},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", ca, "--require-client-cert"},
			[]string{"--cafile " + ca, "--cert CLIENT.pem --key CLIENT-key.pem", "signed by " + ca}},
	} {
		logs := &ui.SyncBuffer{}
		streams := &ui.Streams{In: strings.NewReader(""), Out: ui.NewStream(io.Discard, false, ui.ColorNever, env),
			Err: ui.NewStream(logs, false, ui.ColorNever, env), Getenv: env}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() {
			done <- execute(ctx, streams, append([]string{"broker", "--listen", "tls://127.0.0.1:0"}, tc.args...), env)
		}()
		for i := 0; i < 500 && !strings.Contains(logs.String(), "press Ctrl-C"); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("exit %d:\n%s", code, logs)
		}
		for _, w := range tc.want {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("banner lacks %q:\n%s", w, logs)
			}
		}
	}
}
