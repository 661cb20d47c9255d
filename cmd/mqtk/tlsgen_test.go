package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/tlsgen"
)

// mqtk runs the real command tree in-process and returns the exit code,
// stdout and stderr.
func mqtkRun(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	streams, out, errb := ui.Test(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := execute(ctx, streams, args, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// TestTlsgenFlagsToOptions checks flag → Options through the runF seam.
func TestTlsgenFlagsToOptions(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want tlsgen.Options
	}{
		// --cn left out is passed as "", so that reusing an existing
		// client certificate refuses only a CN that was asked for.
		{[]string{}, nil, tlsgen.Options{Command: tlsgen.CmdAll, Dir: "certs"}},
		{[]string{"--cn", tlsgen.DefaultClientCN}, nil, tlsgen.Options{Command: tlsgen.CmdAll, Dir: "certs", CommonName: tlsgen.DefaultClientCN}},
		{[]string{"--dir", "x", "--key-type", "rsa-3072", "--days", "30", "--force", "--name-constraint", "lan", "--cn", "bob"}, nil,
			tlsgen.Options{Command: tlsgen.CmdAll, Dir: "x", KeyType: tlsgen.RSA3072, Days: 30, Force: true, NameConstraints: []string{"lan"}, CommonName: "bob"}},
		{[]string{"ca", "--cn", "Home CA", "--days", "7300"}, nil, tlsgen.Options{Command: tlsgen.CmdCA, Dir: "certs", CommonName: "Home CA", Days: 7300}},
		{[]string{"server", "a.lan", "10.0.0.1", "--out", "a", "--fullchain"}, nil,
			tlsgen.Options{Command: tlsgen.CmdServer, Dir: "certs", Names: []string{"a.lan", "10.0.0.1"}, Out: "a", Fullchain: true}},
		{[]string{"client", "sensor-1", "--p12", "--p12-password", "pw", "--p12-legacy"}, nil,
			tlsgen.Options{Command: tlsgen.CmdClient, Dir: "certs", CommonName: "sensor-1", P12: true, P12Legacy: true, P12Password: "pw"}},
		{[]string{"client", "sensor-1", "--p12"}, map[string]string{"MQTK_P12_PASSWORD": "fromenv"},
			tlsgen.Options{Command: tlsgen.CmdClient, Dir: "certs", CommonName: "sensor-1", P12: true, P12Password: "fromenv"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			streams, _, errb := ui.Test(nil)
			a := &app{io: streams, getenv: func(k string) string { return tt.env[k] }}
			var got *tlsgen.Options
			root := newTlsgenCmd(a, func(o *tlsgen.Options) error { got = o; return nil })
			root.SetArgs(tt.args)
			root.SilenceErrors, root.SilenceUsage = true, true
			if err := root.Execute(); err != nil {
				t.Fatalf("execute: %v %s", err, errb)
			}
			if got == nil {
				t.Fatal("runF not called")
			}
			got.IO = nil
			w := tt.want
			if got.Command != w.Command || got.Dir != w.Dir || got.KeyType != w.KeyType || got.Days != w.Days || got.Force != w.Force ||
				strings.Join(got.NameConstraints, ",") != strings.Join(w.NameConstraints, ",") || got.CommonName != w.CommonName ||
				strings.Join(got.Names, ",") != strings.Join(w.Names, ",") || got.Out != w.Out || got.Fullchain != w.Fullchain ||
				got.P12 != w.P12 || got.P12Legacy != w.P12Legacy || got.P12Password != w.P12Password {
				t.Errorf("got %+v\nwant %+v", *got, w)
			}
		})
	}
}

func TestTlsgenUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	// want is in the "mqtk:" line; hint, when given, in a "hint:" line.
	for _, tt := range []struct {
		args       []string
		want, hint string
	}{
		{[]string{"tlsgen", "--key-type", "dsa"}, "unknown --key-type", ""},
		{[]string{"tlsgen", "--days", "0"}, "--days 0 is not a positive number of days", "positive number of days, e.g. --days 397"},
		{[]string{"tlsgen", "ca", "--days", "0"}, "--days 0 is not a positive number of days", "positive number of days, e.g. --days 3650"},
		{[]string{"tlsgen", "--key-type", ""}, "--key-type is empty", "use one of ecdsa-p256,"},
		{[]string{"tlsgen", "client", "a", "--p12", "--p12-password", ""}, "--p12 with an empty password", ""},
		{[]string{"tlsgen", "verify", "--ca", "ca.pem", "--host", "bad host", "x.pem"}, `--host "bad host" is not a host name or IP address`, ""},
		{[]string{"tlsgen", "server"}, "at least one name", ""},
		{[]string{"tlsgen", "server", "broker:8883"}, "has a port", ""},
		{[]string{"tlsgen", "client"}, "exactly one name", ""},
		{[]string{"tlsgen", "client", "a", "--p12"}, "--p12 needs a password", "give --p12-password or set MQTK_P12_PASSWORD"},
		{[]string{"tlsgen", "localhost"}, `unexpected argument "localhost"`, "mqtk tlsgen server localhost"},
		{[]string{"tlsgen", "inspect"}, "at least one file", ""},
		{[]string{"tlsgen", "inspect", "--format", "yaml", "x"}, `unknown --format "yaml"`, "use text or json"},
		{[]string{"tlsgen", "verify", "x.pem"}, "tlsgen verify needs the CA", "--ca FILE"},
		{[]string{"tlsgen", "--bogus"}, "unknown flag", ""},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append(tt.args, "--dir", dir)
			if tt.args[1] == "inspect" || tt.args[1] == "verify" {
				args = tt.args
			}
			code, out, errs := mqtkRun(t, nil, args...)
			first, _, _ := strings.Cut(errs, "\n")
			if code != 2 || !strings.Contains(first, tt.want) || !strings.HasPrefix(errs, "mqtk: ") {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tt.want)
			}
			if tt.hint != "" && !hasHintLine(errs, tt.hint) {
				t.Errorf("stderr %q has no hint: line with %q", errs, tt.hint)
			}
			if out != "" {
				t.Errorf("stdout %q on a usage error", out)
			}
		})
	}
}

// hasHintLine reports whether stderr has a "hint:" line containing s.
func hasHintLine(stderr, s string) bool {
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "hint: ") && strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func TestTlsgenCommandEndToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errs := mqtkRun(t, nil, "tlsgen", "--dir", dir)
	if code != 0 {
		t.Fatalf("tlsgen: exit %d\n%s", code, errs)
	}
	if !strings.Contains(out, "--tls-cert "+filepath.Join(dir, "server.pem")) {
		t.Errorf("no broker line:\n%s", out)
	}
	code, out, _ = mqtkRun(t, nil, "tlsgen", "verify", "--ca", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), "--host", "127.0.0.1")
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("verify: exit %d, %q", code, out)
	}
	code, _, errs = mqtkRun(t, nil, "tlsgen", "verify", "--ca", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), "--host", "mqtt.example.com")
	if code != 4 || !strings.Contains(errs, "not valid for mqtt.example.com") || !strings.Contains(errs, "hint: ") {
		t.Errorf("verify mismatch: exit %d, %q", code, errs)
	}
	code, out, _ = mqtkRun(t, nil, "tlsgen", "inspect", "--format", "json", filepath.Join(dir, "client.pem"))
	if code != 0 || !strings.Contains(out, `"common_name": "mqtk-client"`) {
		t.Errorf("inspect: exit %d, %q", code, out)
	}
	code, _, errs = mqtkRun(t, map[string]string{"MQTK_P12_PASSWORD": "pw"}, "tlsgen", "client", "alice", "--out", "alice", "--p12", "--dir", dir)
	if code != 0 {
		t.Fatalf("client --p12: exit %d %s", code, errs)
	}
	if bin, err := exec.LookPath("openssl"); err == nil {
		o, err := exec.Command(bin, "pkcs12", "-in", filepath.Join(dir, "alice.p12"), "-passin", "pass:pw", "-nokeys").CombinedOutput()
		if err != nil || !strings.Contains(string(o), "CN = alice") {
			t.Errorf("openssl pkcs12: %v\n%s", err, o)
		}
	}
	// Overwriting without --force is a usage error and keeps the file.
	before, _ := os.ReadFile(filepath.Join(dir, "alice.pem"))
	code, _, errs = mqtkRun(t, nil, "tlsgen", "client", "alice", "--out", "alice", "--dir", dir)
	after, _ := os.ReadFile(filepath.Join(dir, "alice.pem"))
	if code != 2 || !hasHintLine(errs, "add --force") || string(before) != string(after) {
		t.Errorf("overwrite without --force: exit %d %q", code, errs)
	}
}

// TestTlsgenWithMosquittoMTLS runs Debian's mosquitto with the generated CA
// and server certificate, require_certificate and use_identity_as_username,
// and exchanges messages with mosquitto's clients and with mqtk pub/sub
// using the generated client certificate.
func TestTlsgenWithMosquittoMTLS(t *testing.T) {
	mosquittotest.Require(t)
	pubBin, subBin := mosquittotest.RequireClients(t)
	dir := filepath.Join(t.TempDir(), "certs")
	if code, _, errs := mqtkRun(t, nil, "tlsgen", "--dir", dir); code != 0 {
		t.Fatalf("tlsgen: exit %d %s", code, errs)
	}
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	b := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{{TLS: &mosquittotest.TLS{
		CAFile: ca, CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"),
		RequireCertificate: true, UseIdentityAsUsername: true,
	}}}})
	port := strconv.Itoa(b.Port())
	mosqTLS := []string{"-h", "localhost", "-p", port, "--cafile", ca, "--cert", cert, "--key", key}

	// mosquitto_pub publishes a retained message; mosquitto_sub reads it.
	runTool := func(bin string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s\nbroker log:\n%s", filepath.Base(bin), args, err, out, b.Log())
		}
		return string(out)
	}
	runTool(pubBin, append(mosqTLS, "-t", "tlsgen/mosq", "-m", "from mosquitto_pub", "-r", "-q", "1")...)
	if got := runTool(subBin, append(mosqTLS, "-t", "tlsgen/mosq", "-C", "1", "-W", "10")...); strings.TrimSpace(got) != "from mosquitto_pub" {
		t.Errorf("mosquitto_sub got %q", got)
	}
	if !strings.Contains(b.Log(), "u'mqtk-client'") {
		t.Errorf("mosquitto did not take the certificate CN as the user name:\n%s", b.Log())
	}
	// Connecting by IP works too, because 127.0.0.1 is an IP SAN.
	runTool(pubBin, "-h", "127.0.0.1", "-p", port, "--cafile", ca, "--cert", cert, "--key", key, "-t", "tlsgen/ip", "-m", "x")

	// mqtk pub and sub with the client certificate.
	mqtkTLS := []string{"-h", "localhost", "-p", port, "--cafile", ca, "--cert", cert, "--key", key}
	if code, _, errs := mqtkRun(t, nil, append([]string{"pub"}, append(mqtkTLS, "-t", "tlsgen/mqtk", "-m", "from mqtk pub", "-r", "-q", "1")...)...); code != 0 {
		t.Fatalf("mqtk pub: exit %d %s\nbroker log:\n%s", code, errs, b.Log())
	}
	code, out, errs := mqtkRun(t, nil, append([]string{"sub"}, append(mqtkTLS, "-t", "tlsgen/#", "-C", "2", "-W", "10")...)...)
	if code != 0 || !strings.Contains(out, "from mqtk pub") || !strings.Contains(out, "from mosquitto_pub") {
		t.Errorf("mqtk sub: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A name the server certificate does not cover: exit 4, and the
	// diagnosis names the names it does cover.
	code, _, errs = mqtkRun(t, nil, append([]string{"pub", "--sni", "mqtt.example.com"}, append(mqtkTLS, "-t", "tlsgen/x", "-m", "x")...)...)
	t.Logf("wrong name: exit %d, stderr:\n%s", code, errs)
	if code != 4 || !strings.Contains(errs, "localhost") || !strings.Contains(errs, "mqtk tlsgen server mqtt.example.com") {
		t.Errorf("pub to a name outside the certificate: exit %d, stderr %q", code, errs)
	}

	// Trusting another CA: exit 4.
	otherDir := filepath.Join(t.TempDir(), "other")
	if code, _, errs := mqtkRun(t, nil, "tlsgen", "ca", "--dir", otherDir); code != 0 {
		t.Fatalf("tlsgen ca: exit %d %s", code, errs)
	}
	code, _, errs = mqtkRun(t, nil, "pub", "-h", "localhost", "-p", port, "--cafile", filepath.Join(otherDir, "ca.pem"), "--cert", cert, "--key", key, "-t", "tlsgen/x", "-m", "x")
	t.Logf("wrong CA: exit %d, stderr:\n%s", code, errs)
	if code != 4 {
		t.Errorf("pub trusting another CA: exit %d, stderr %q", code, errs)
	}

	// Without a client certificate the broker refuses the handshake: exit 4
	// and a message that says so.
	code, _, errs = mqtkRun(t, nil, "pub", "-h", "localhost", "-p", port, "--cafile", ca, "-t", "tlsgen/anon", "-m", "x")
	t.Logf("no client certificate: exit %d, stderr:\n%s", code, errs)
	if code != 4 || !strings.Contains(strings.ToLower(errs), "certificate") {
		t.Errorf("pub without a client certificate: exit %d, stderr %q; want 4 and a message about the certificate", code, errs)
	}
}

// TestTlsgenPrintedBrokerLineServesMTLS runs mqtk broker with exactly the
// flags `mqtk tlsgen` prints (on a free port instead of 8883), then mqtk
// pub/sub and mosquitto_sub with the client certificate.
func TestTlsgenPrintedBrokerLineServesMTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errs := mqtkRun(t, nil, "tlsgen", "--dir", dir)
	if code != 0 {
		t.Fatalf("tlsgen: exit %d %s", code, errs)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "mqtk broker ") {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatalf("no mqtk broker line in:\n%s", out)
	}
	port := strconv.Itoa(mosquittotest.FreePort(t))
	args := strings.Fields(strings.Replace(line, "127.0.0.1:8883", "127.0.0.1:"+port, 1))[1:]

	startBrokerProcess(t, nil, "127.0.0.1:"+port, args...)

	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	tlsArgs := []string{"-h", "localhost", "-p", port, "--cafile", ca, "--cert", cert, "--key", key}
	if code, _, errs := mqtkRun(t, nil, append([]string{"pub"}, append(tlsArgs, "-t", "mtls/x", "-m", "over mTLS", "-r", "-q", "1")...)...); code != 0 {
		t.Fatalf("mqtk pub: exit %d %s", code, errs)
	}
	code, got, errs := mqtkRun(t, nil, append([]string{"sub"}, append(tlsArgs, "-t", "mtls/x", "-C", "1", "-W", "10")...)...)
	if code != 0 || strings.TrimSpace(got) != "over mTLS" {
		t.Errorf("mqtk sub: exit %d, %q, %s", code, got, errs)
	}
	code, _, errs = mqtkRun(t, nil, "pub", "-h", "localhost", "-p", port, "--cafile", ca, "-t", "mtls/x", "-m", "anon")
	if code != 4 {
		t.Errorf("pub without a client certificate to mqtk broker: exit %d, %q", code, errs)
	}
	// Last, so that a machine without mosquitto's clients still runs the
	// mqtk half; the skip says what is missing.
	// mqtk and mosquitto's clients spell the connection flags alike.
	mosquittoExchange(t, tlsArgs, "mtls/x", "over mTLS", true)
}

// mosquittoExchange checks mosquitto's clients against a running broker
// with the connection flags conn: mosquitto_sub reads the retained message
// mqtk published on topic (want), mosquitto_pub publishes one that mqtk
// sub reads back, and, when mtls, mosquitto_pub without the client
// certificate is refused. It skips, saying so, when the clients are not
// installed (.ci/run installs them).
func mosquittoExchange(t *testing.T, conn []string, topic, want string, mtls bool) {
	t.Helper()
	pubBin, subBin := mosquittotest.RequireClients(t)
	tool := func(bin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		o, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		return strings.TrimSpace(string(o)), err
	}
	if got, err := tool(subBin, append(conn, "-t", topic, "-C", "1", "-W", "10")...); err != nil || got != want {
		t.Errorf("mosquitto_sub: %v %q, want %q", err, got, want)
	}
	if o, err := tool(pubBin, append(conn, "-t", topic+"/mosq", "-m", "from mosquitto_pub", "-r", "-q", "1")...); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, o)
	}
	code, got, errs := mqtkRun(t, nil, append([]string{"sub"}, append(conn, "-t", topic+"/mosq", "-C", "1", "-W", "10")...)...)
	if code != 0 || strings.TrimSpace(got) != "from mosquitto_pub" {
		t.Errorf("mqtk sub of mosquitto_pub's message: exit %d, %q, %s", code, got, errs)
	}
	if !mtls {
		return
	}
	var anon []string
	for i := 0; i < len(conn); i++ {
		if conn[i] == "--cert" || conn[i] == "--key" {
			i++
			continue
		}
		anon = append(anon, conn[i])
	}
	if o, err := tool(pubBin, append(anon, "-t", topic, "-m", "anon")...); err == nil {
		t.Errorf("mosquitto_pub without a client certificate got through: %s", o)
	}
}

// startBrokerProcess runs `mqtk ARGS` as its own process, with extra
// environment env, waits (boundedly) until addr accepts connections and the
// banner is complete (the broker listens before it prints it), and stops it
// with SIGTERM when the test ends. The test binary doubles as mqtk
// on $PATH (testscript.Main in script_test.go); a separate process keeps
// the broker's global state (colour, signals) apart from in-process clients.
func startBrokerProcess(t *testing.T, env []string, addr string, args ...string) *ui.SyncBuffer {
	t.Helper()
	bin, err := exec.LookPath("mqtk")
	if err != nil {
		t.Skipf("mqtk is not on $PATH (testscript.Main installs it): %v", err)
	}
	logs := &ui.SyncBuffer{}
	broker := exec.Command(bin, args...)
	broker.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	broker.Stderr = logs
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = broker.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = broker.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Error("mqtk broker did not stop within 15s of SIGTERM")
			_ = broker.Process.Kill()
			<-exited
		}
	})
	for i := 0; i < 200; i++ {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if strings.Contains(logs.String(), "press Ctrl-C to stop") {
				return logs
			}
		}
		select {
		case <-exited:
			t.Fatalf("mqtk %s exited: %s", strings.Join(args, " "), logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("mqtk broker not listening on %s, or its banner incomplete: %s", addr, logs.String())
	return nil
}

// TestBrokerTLSAloneServesMQTTSAndMTLS: `mqtk broker --tls` makes its own CA
// and server certificate; mqtk pub/sub and mosquitto_pub reach it with the
// --cafile it prints, and with --require-client-cert a client certificate
// from `mqtk tlsgen client` (same CA directory) gets through while a client
// without one is refused with exit 4.
func TestBrokerTLSAloneServesMQTTSAndMTLS(t *testing.T) {
	for _, mtls := range []bool{false, true} {
		name := "mqtts"
		if mtls {
			name = "mtls"
		}
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			caDir := filepath.Join(data, "mqtk", "tls")
			env := map[string]string{"XDG_DATA_HOME": data}
			port := strconv.Itoa(mosquittotest.FreePort(t))
			args := []string{"broker", "--tls", "--listen", "tls://127.0.0.1:" + port}
			var clientArgs []string
			if mtls {
				// The CA must exist before the client certificate is
				// issued from it; EnsureLocal is what --tls calls.
				if _, err := tlsgen.EnsureLocal(caDir); err != nil {
					t.Fatal(err)
				}
				if code, _, errs := mqtkRun(t, env, "tlsgen", "client", "alice", "--dir", caDir); code != 0 {
					t.Fatalf("tlsgen client: exit %d %s", code, errs)
				}
				args = append(args, "--require-client-cert")
				clientArgs = []string{"--cert", filepath.Join(caDir, "client.pem"), "--key", filepath.Join(caDir, "client-key.pem")}
			}
			logs := startBrokerProcess(t, []string{"XDG_DATA_HOME=" + data}, "127.0.0.1:"+port, args...)
			ca := filepath.Join(caDir, "ca.pem")
			if !strings.Contains(logs.String(), ca) {
				t.Errorf("banner does not name the CA file %s:\n%s", ca, logs.String())
			}
			conn := append([]string{"-h", "localhost", "-p", port, "--cafile", ca}, clientArgs...)
			if code, _, errs := mqtkRun(t, env, append([]string{"pub"}, append(conn, "-t", "gen/x", "-m", "generated", "-r", "-q", "1")...)...); code != 0 {
				t.Fatalf("mqtk pub: exit %d %s", code, errs)
			}
			code, got, errs := mqtkRun(t, env, append([]string{"sub"}, append(conn, "-t", "gen/x", "-C", "1", "-W", "10")...)...)
			if code != 0 || strings.TrimSpace(got) != "generated" {
				t.Errorf("mqtk sub: exit %d, %q, %s", code, got, errs)
			}
			if mtls {
				code, _, errs := mqtkRun(t, env, "pub", "-h", "localhost", "-p", port, "--cafile", ca, "-t", "gen/x", "-m", "anon")
				if code != 4 {
					t.Errorf("pub without a client certificate: exit %d, %q", code, errs)
				}
			}
			mosquittoExchange(t, conn, "gen/x", "generated", mtls)
		})
	}
}

// TestBrokerTLSListeners checks the listeners `mqtk broker --tls` adds,
// through the runF seam so that nothing binds 8883 or 8443, and where it
// keeps its certificates: $XDG_DATA_HOME/mqtk/tls, else
// ~/.local/share/mqtk/tls.
func TestBrokerTLSListeners(t *testing.T) {
	data, home := t.TempDir(), t.TempDir()
	xdgDir := filepath.Join(data, "mqtk", "tls")
	homeDir := filepath.Join(home, ".local", "share", "mqtk", "tls")
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
		dir  string
	}{
		{"no listen", map[string]string{"XDG_DATA_HOME": data}, []string{"--tls"},
			[]string{"tcp://127.0.0.1:1883", "tls://127.0.0.1:8883"}, xdgDir},
		{"with ws", map[string]string{"XDG_DATA_HOME": data}, []string{"--tls", "--listen", "tcp://127.0.0.1:1883", "--listen", "ws://127.0.0.1:8080/mqtt"},
			[]string{"tcp://127.0.0.1:1883", "ws://127.0.0.1:8080/mqtt", "tls://127.0.0.1:8883", "wss://127.0.0.1:8443/mqtt"}, xdgDir},
		{"explicit tls kept", map[string]string{"XDG_DATA_HOME": data}, []string{"--tls", "--listen", "tls://127.0.0.1:9883"},
			[]string{"tls://127.0.0.1:9883"}, xdgDir},
		{"HOME without XDG_DATA_HOME", map[string]string{"HOME": home}, []string{"--tls"},
			[]string{"tcp://127.0.0.1:1883", "tls://127.0.0.1:8883"}, homeDir},
	} {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, errb := ui.Test(nil)
			a := &app{io: streams, getenv: func(k string) string { return tt.env[k] }}
			var got *broker.Options
			cmd := newBrokerCmd(a, func(o *broker.Options) error { got = o; return nil })
			cmd.SetArgs(tt.args)
			cmd.SilenceErrors, cmd.SilenceUsage = true, true
			if err := cmd.Execute(); err != nil {
				t.Fatalf("execute: %v %s", err, errb)
			}
			if got == nil {
				t.Fatal("runF not called")
			}
			if strings.Join(got.Listeners, " ") != strings.Join(tt.want, " ") {
				t.Errorf("listeners %q, want %q", got.Listeners, tt.want)
			}
			ca := filepath.Join(tt.dir, tlsgen.CAFile)
			if got.TLSCert != filepath.Join(tt.dir, "server.pem") || got.TLSKey != filepath.Join(tt.dir, "server-key.pem") || got.TLSCA != ca {
				t.Errorf("files %s %s %s, want them in %s", got.TLSCert, got.TLSKey, got.TLSCA, tt.dir)
			}
			// runF sees the paths; runBroker makes the files after the seam.
			if _, err := makeLocalTLS(a, tt.dir); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{got.TLSCert, got.TLSKey, got.TLSCA} {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("not made: %v", err)
				}
			}
			code, out, errs := mqtkRun(t, nil, "tlsgen", "verify", "--ca", ca, got.TLSCert, "--host", "localhost")
			if code != 0 || !strings.HasPrefix(out, "ok: ") {
				t.Errorf("verify: exit %d %q %q", code, out, errs)
			}
		})
	}
}
