package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/testpki"
	"github.com/mqtk/mqtk/internal/ui"
)

// parseConn runs a throwaway command carrying the connection flags and
// returns the Config they resolve to.
func parseConn(t *testing.T, env map[string]string, args ...string) (mqttconn.Config, string, error) {
	t.Helper()
	streams, _, errb := ui.Test(nil)
	a := &app{io: streams, getenv: func(k string) string { return env[k] }}
	var got mqttconn.Config
	var cerr error
	var flags *connFlags
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error {
		got, cerr = flags.config(context.Background())
		return nil
	}}
	cmd.Flags().Bool("help", false, "help") // -h is the host, as on the real root
	flags = addConnFlags(cmd, a, "c")
	cmd.SetArgs(args)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.Execute(); err != nil {
		return got, errb.String(), err
	}
	return got, errb.String(), cerr
}

func TestConnFlagsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "mqtk")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "config.yaml"), []byte(`
default: dev
profiles:
  dev:
    host: profile-host
    port: 1999
    username: profile-user
    keepalive: 30
  other:
    url: mqtts://other-host
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"XDG_CONFIG_HOME": dir}

	c, _, err := parseConn(t, env)
	if err != nil || c.Host != "profile-host" || c.Port != 1999 || c.Username != "profile-user" || c.KeepAlive != 30*time.Second {
		t.Fatalf("default profile: %+v %v", c, err)
	}
	env["MQTK_USERNAME"], env["MQTK_PASSWORD"] = "env-user", "env-pw"
	c, _, err = parseConn(t, env)
	if err != nil || c.Username != "env-user" || c.Password != "env-pw" || c.Host != "profile-host" {
		t.Fatalf("env over profile: %+v %v", c, err)
	}
	c, _, err = parseConn(t, env, "-u", "flag-user", "-h", "flag-host")
	if err != nil || c.Username != "flag-user" || c.Host != "flag-host" || c.Port != 1999 {
		t.Fatalf("flag over env: %+v %v", c, err)
	}
	env["MQTK_PROFILE"] = "other"
	c, _, err = parseConn(t, env)
	if err != nil || c.String() != "mqtts://other-host:8883" {
		t.Fatalf("MQTK_PROFILE: %s %v", c.String(), err)
	}
	// A URL from a stronger source replaces the whole address of a weaker
	// one: the profile's host, port and user must not leak into it.
	delete(env, "MQTK_PROFILE")
	delete(env, "MQTK_USERNAME")
	delete(env, "MQTK_PASSWORD")
	c, _, err = parseConn(t, env, "-L", "mqtt://127.0.0.1:1884")
	if err != nil || c.String() != "mqtt://127.0.0.1:1884" || c.Username != "profile-user" {
		t.Fatalf("-L over profile host/port (the login stays): %s user %q %v", c.String(), c.Username, err)
	}
	c, _, err = parseConn(t, env, "-L", "mqtt://url-user@127.0.0.1:1884")
	if err != nil || c.Username != "url-user" {
		t.Fatalf("-L with a user over the profile's: user %q %v", c.Username, err)
	}
	env["MQTK_URL"] = "mqtt://env-host:1885"
	c, _, err = parseConn(t, env)
	if err != nil || c.String() != "mqtt://env-host:1885" || c.Username != "profile-user" {
		t.Fatalf("MQTK_URL over profile host/port: %s user %q %v", c.String(), c.Username, err)
	}
	// ...while an explicit flag still overrides a part of a weaker URL.
	c, _, err = parseConn(t, env, "-p", "1886")
	if err != nil || c.String() != "mqtt://env-host:1886" {
		t.Fatalf("-p over MQTK_URL: %s %v", c.String(), err)
	}
	delete(env, "MQTK_URL")
	_, _, err = parseConn(t, env, "--profile", "missing")
	if clierr.KindOf(err) != clierr.KindUsage {
		t.Fatalf("missing profile: %v", err)
	}
}

func TestConnFlagsMosquittoSpellings(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("from-file\nignored\n"), 0o600)
	c, _, err := parseConn(t, nil, "-h", "127.0.0.1", "-p", "1884", "-V", "mqttv311", "-i", "me", "-k", "5",
		"-u", "u", "--password-file", pwFile, "--will-topic", "w", "--will-payload", "bye", "--will-qos", "1",
		"--ws-header", "X-A: b", "--insecure", "-d")
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != mqttconn.V311 || c.ClientID != "me" || c.KeepAlive != 5*time.Second || c.Password != "from-file" ||
		c.Will == nil || c.Will.QoS != 1 || string(c.Will.Payload) != "bye" || c.WSHeaders.Get("X-A") != "b" ||
		!c.TLS.Enabled || c.Port != 1884 || c.Debug == nil {
		t.Errorf("parsed: %+v", c)
	}
	// -c was given away by this command: --no-clean keeps its long form.
	if _, _, err := parseConn(t, nil, "--no-clean", "-i", "x"); err != nil {
		t.Errorf("--no-clean long form: %v", err)
	}
	if _, _, err := parseConn(t, nil, "-c"); err == nil {
		t.Errorf("-c must not be bound when the command keeps it")
	}
}

func TestConnFlagsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"-V", "7"},
		{"-k", "soon"},
		{"-P", "a", "--password-file", "f"},
		{"--password-file", "/nonexistent/pw"},
		{"--ws-header", "novalue"},
		{"--will-qos", "3", "--will-topic", "t"},
		{"-L", "http://x"},
		{"--cert", "c.pem"},
	} {
		_, _, err := parseConn(t, nil, args...)
		if clierr.KindOf(err) != clierr.KindUsage {
			t.Errorf("%v: want usage error, got %v", args, err)
		}
	}
	env := map[string]string{"MQTK_PORT": "abc"}
	_, _, err := parseConn(t, env)
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "MQTK_PORT") {
		t.Errorf("bad env value must name the variable: %v", err)
	}
}

// -I and --ws-path reach the Config (the transports tests cover what the
// Config does with them).
func TestConnFlagsIDPrefixAndWSPath(t *testing.T) {
	c, _, err := parseConn(t, nil, "-I", "probe-", "-L", "ws://127.0.0.1:9001", "--ws-path", "/custom")
	if err != nil {
		t.Fatal(err)
	}
	if c.IDPrefix != "probe-" || c.WSPath != "/custom" || c.String() != "ws://127.0.0.1:9001/custom" {
		t.Errorf("IDPrefix %q, WSPath %q, URL %s", c.IDPrefix, c.WSPath, c.String())
	}
	c, _, err = parseConn(t, nil, "--will-topic", "w", "--will-retain")
	if err != nil || c.Will == nil || !c.Will.Retain {
		t.Errorf("--will-retain: will %+v, %v", c.Will, err)
	}
}

// mosquitto's other spellings and the options mqtk takes only to stay a
// drop-in: each reaches the Config with mosquitto's meaning.
func TestConnFlagsMosquittoAliases(t *testing.T) {
	c, _, err := parseConn(t, nil, "--pw", "secret", "--disable-clean-session", "-i", "keep", "--tls-alpn", "mqtt",
		"-x", "∞", "--nodelay", "-A", "127.0.0.2", "--proxy", "socks5h://u:p@127.0.0.1:1080", "--keyform", "pem")
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != "secret" || !c.NoClean || fmt.Sprint(c.TLS.ALPN) != "[mqtt]" ||
		c.SessionExpiry == nil || *c.SessionExpiry != time.Duration(math.MaxUint32)*time.Second ||
		c.BindAddress != "127.0.0.2" || c.Proxy != "socks5h://u:p@127.0.0.1:1080" {
		t.Errorf("parsed: %+v", c)
	}
	c, _, err = parseConn(t, nil, "--ws", "-h", "127.0.0.1", "-p", "9001")
	if err != nil || c.Scheme != "ws" || c.WSPath != "/mqtt" || c.Port != 9001 {
		t.Errorf("--ws: %v %s %+v", err, c.Scheme, c)
	}
	c, _, err = parseConn(t, nil, "--ws", "--cafile", "ca.pem")
	if err != nil || c.Scheme != "wss" || c.Port != 443 {
		t.Errorf("--ws with TLS: %v %s %d", err, c.Scheme, c.Port)
	}
	c, _, err = parseConn(t, nil, "--unix", "/run/m.sock", "-h", "ignored")
	if err != nil || c.Scheme != "unix" || c.SocketPath != "/run/m.sock" {
		t.Errorf("--unix: %v %s %q", err, c.Scheme, c.SocketPath)
	}
	// --unix from the command line wins over a URL from the environment.
	c, _, err = parseConn(t, map[string]string{"MQTK_URL": "mqtt://elsewhere:1883"}, "--unix", "/run/m.sock")
	if err != nil || c.Scheme != "unix" {
		t.Errorf("--unix over MQTK_URL: %v %s", err, c.Scheme)
	}
	c, _, err = parseConn(t, nil, "--tls-use-os-certs")
	if err != nil || c.Scheme != "tls" || !c.TLS.OSCerts || c.Port != 8883 {
		t.Errorf("--tls-use-os-certs: %v %s %+v", err, c.Scheme, c.TLS)
	}
	// --no-tls undoes TLS options given elsewhere (here the environment).
	c, _, err = parseConn(t, map[string]string{"MQTK_CAFILE": "ca.pem"}, "--no-tls", "-p", "1883")
	if err != nil || c.Scheme != "tcp" || c.TLS.Enabled || c.TLS.CAFile != "" {
		t.Errorf("--no-tls: %v %s %+v", err, c.Scheme, c.TLS)
	}
	for _, v := range []string{"tlsv1.1", "tlsv1.2", "tlsv1.3", "1.3"} {
		if _, _, err := parseConn(t, nil, "--cafile", "ca.pem", "--tls-version", v); err != nil {
			t.Errorf("--tls-version %s: %v", v, err)
		}
	}
}

// What mqtk cannot do is refused with the reason and what to use instead,
// never "unknown flag"; bad values are usage errors that say how to fix them.
func TestConnFlagsRefusedAndBadMosquittoOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--psk", "deadbeef", "--psk-identity", "me"}, []string{"TLS-PSK", "no pre-shared-key cipher suites", "hint: use certificates instead: mqtk tlsgen"}},
		{[]string{"--psk-identity", "me"}, []string{"TLS-PSK"}},
		{[]string{"--keyform", "engine", "--key", "k"}, []string{"--keyform engine is not supported", "PEM files only", "hint: export the key to a PEM file"}},
		{[]string{"--tls-engine", "tpm"}, []string{"OpenSSL engines", "hint: give the client key as a PEM file"}},
		{[]string{"--tls-engine-kpass-sha1", "00"}, []string{"--tls-engine/--tls-engine-kpass-sha1 are not supported"}},
		{[]string{"--ciphers", "DHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:PSK-AES128-CBC-SHA"}, []string{"Go's TLS does not implement DHE-RSA-AES256-GCM-SHA384, PSK-AES128-CBC-SHA", "hint: Go has the ECDHE suites"}},
		{[]string{"--ciphers", "HIGH:!aNULL"}, []string{"keywords and operators are not supported: HIGH, !aNULL", "hint: name the suites themselves"}},
		{[]string{"--tls-version", "tlsv1"}, []string{"unsupported --tls-version \"1\""}},
		{[]string{"--proxy", "ftp://127.0.0.1:21"}, []string{`unknown scheme "ftp"`, "hint: write it as socks5h://"}},
		{[]string{"--proxy", "127.0.0.1:1080"}, []string{"no scheme", "hint: write it as socks5h://"}},
		{[]string{"--proxy", "http://127.0.0.1"}, []string{"an HTTP proxy needs its port"}},
		{[]string{"--proxy", "socks5h://:1080"}, []string{"no proxy host"}},
		{[]string{"--proxy", "https://p:443"}, []string{"https://", "hint: use http://host:port"}},
		{[]string{"--proxy", "socks5h://127.0.0.1:1080", "--unix", "/run/x.sock"}, []string{"--proxy does not apply to a unix socket"}},
		{[]string{"-A", "127.0.0.1", "-L", "unix:///run/x.sock"}, []string{"-A (bind address) does not apply to a unix socket"}},
		{[]string{"--no-tls", "-L", "mqtts://h:8883"}, []string{"--no-tls with the TLS URL", "hint: use mqtt:// or ws://"}},
		{[]string{"--unix", "/run/x.sock", "-L", "mqtt://h"}, []string{"both say where to connect"}},
	} {
		code, out, errb := runMqtk(t, "", append([]string{"pub", "-t", "a", "-m", "x"}, tc.args...)...)
		if code != 2 || out != "" {
			t.Errorf("pub %v: exit %d, stdout %q; want exit 2\n%s", tc.args, code, out, errb)
		}
		for _, w := range tc.want {
			if !strings.Contains(errb, w) {
				t.Errorf("pub %v: stderr lacks %q:\n%s", tc.args, w, errb)
			}
		}
	}
}

// testProxy is a SOCKS5 or HTTP CONNECT proxy on 127.0.0.1, written here
// so that the tests see what went through it: each tunnel's target, as
// the client asked for it.
type testProxy struct {
	URL string // with the credentials when it has a login
	ln  net.Listener

	mu      sync.Mutex
	targets []string
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

func startTestProxy(t *testing.T, kind, user, pass string) *testProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{ln: ln, conns: map[net.Conn]bool{}}
	scheme := map[string]string{"socks": "socks5h", "http": "http"}[kind]
	p.URL = fmt.Sprintf("%s://%s", scheme, ln.Addr())
	if user != "" {
		p.URL = fmt.Sprintf("%s://%s:%s@%s", scheme, user, pass, ln.Addr())
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c, true)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer p.track(c, false)
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				var target string
				if kind == "socks" {
					target = socksHandshake(c, br, user, pass)
				} else {
					target = httpConnectHandshake(c, br, user, pass)
				}
				if target == "" {
					return
				}
				up, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					if kind == "socks" {
						c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
					} else {
						io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
					}
					return
				}
				p.track(up, true)
				defer p.track(up, false)
				defer up.Close()
				p.mu.Lock()
				p.targets = append(p.targets, target)
				p.mu.Unlock()
				if kind == "socks" {
					c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
				} else {
					io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				}
				_ = c.SetDeadline(time.Time{})
				done := make(chan struct{})
				go func() {
					io.Copy(up, br)
					up.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				io.Copy(c, up)
				c.Close()
				<-done
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *testProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

// Targets returns the targets of the tunnels opened so far.
func (p *testProxy) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// socksHandshake serves RFC 1928 (with RFC 1929 user/password when user is
// set) up to the CONNECT request and returns its target, or "" after
// refusing the client.
func socksHandshake(c net.Conn, br *bufio.Reader, user, pass string) string {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
		return ""
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return ""
	}
	want := byte(0)
	if user != "" {
		want = 2
	}
	if !bytes.Contains(methods, []byte{want}) {
		c.Write([]byte{5, 0xff})
		return ""
	}
	c.Write([]byte{5, want})
	if want == 2 {
		readStr := func() string {
			n, _ := br.ReadByte()
			b := make([]byte, n)
			io.ReadFull(br, b)
			return string(b)
		}
		if v, _ := br.ReadByte(); v != 1 {
			return ""
		}
		u, pw := readStr(), readStr()
		if u != user || pw != pass {
			c.Write([]byte{1, 1})
			return ""
		}
		c.Write([]byte{1, 0})
	}
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[1] != 1 {
		return ""
	}
	var host string
	switch req[3] {
	case 1, 4:
		ip := make([]byte, map[byte]int{1: 4, 4: 16}[req[3]])
		io.ReadFull(br, ip)
		host = net.IP(ip).String()
	case 3:
		n, _ := br.ReadByte()
		name := make([]byte, n)
		io.ReadFull(br, name)
		host = string(name)
	default:
		return ""
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port[0])<<8|int(port[1])))
}

// httpConnectHandshake reads one CONNECT request, checks its Basic
// credentials when user is set, and returns its target.
func httpConnectHandshake(c net.Conn, br *bufio.Reader, user, pass string) string {
	req, err := http.ReadRequest(br)
	if err != nil {
		return ""
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return ""
	}
	if user != "" {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
		if req.Header.Get("Proxy-Authorization") != want {
			io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
			return ""
		}
	}
	return req.Host
}

// ownBroker starts mqtk's broker on the given listeners and returns it with
// the address of each listener, by scheme.
func ownBroker(t *testing.T, o broker.Options) (*broker.Broker, map[string]string) {
	t.Helper()
	o.AllowAnonymous = true
	b, err := broker.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close(context.Background())
		cancel()
	})
	addrs := map[string]string{}
	for _, l := range b.Listeners() {
		addrs[l.Scheme] = l.Addr
	}
	return b, addrs
}

// --proxy carries pub and sub through SOCKS5 and HTTP CONNECT proxies, with
// and without a login, to mqtk's broker and to mosquitto, over every
// transport; the proxy's log shows each connection went through it.
func TestProxyCarriesEveryTransport(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "localhost", "127.0.0.1")
	_, own := ownBroker(t, broker.Options{Listeners: []string{"tcp://127.0.0.1:0", "tls://127.0.0.1:0", "ws://127.0.0.1:0/mqtt", "wss://127.0.0.1:0/mqtt"},
		TLSCert: cert, TLSKey: key})
	mosq := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{{}, {TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}}}})
	type target struct{ name, url string }
	targets := []target{
		{"own/tcp", "mqtt://localhost:" + portOf(own["tcp"])},
		{"own/tls", "mqtts://localhost:" + portOf(own["tls"])},
		{"own/ws", "ws://localhost:" + portOf(own["ws"]) + "/mqtt"},
		{"own/wss", "wss://localhost:" + portOf(own["wss"]) + "/mqtt"},
		{"mosquitto/tcp", fmt.Sprintf("mqtt://localhost:%d", mosq.Ports[0])},
		{"mosquitto/tls", fmt.Sprintf("mqtts://localhost:%d", mosq.Ports[1])},
	}
	for _, kind := range []string{"socks", "http"} {
		for _, login := range []bool{false, true} {
			user, pass := "", ""
			if login {
				user, pass = "pxuser", "px:pass"
			}
			p := startTestProxy(t, kind, user, pass)
			for i, tg := range targets {
				name := fmt.Sprintf("%s/login=%v/%s", kind, login, tg.name)
				t.Run(name, func(t *testing.T) {
					before := len(p.Targets())
					topic := fmt.Sprintf("px/%s/%v/%d", kind, login, i)
					conn := []string{"-L", tg.url, "--cafile", pki.CAFile, "--proxy", p.URL}
					if !strings.HasPrefix(tg.url, "mqtts") && !strings.HasPrefix(tg.url, "wss") {
						conn = []string{"-L", tg.url, "--proxy", p.URL}
					}
					code, _, errb := runMqtk(t, "", append([]string{"pub", "-t", topic, "-m", "through " + kind, "-r", "-q", "1"}, conn...)...)
					if code != 0 {
						t.Fatalf("pub: exit %d\n%s", code, errb)
					}
					code, out, errb := runMqtk(t, "", append([]string{"sub", "-t", topic, "-C", "1", "-W", "10"}, conn...)...)
					if code != 0 || out != "through "+kind+"\n" {
						t.Fatalf("sub: exit %d, stdout %q\n%s", code, out, errb)
					}
					// socks5h:// and HTTP CONNECT hand the proxy the name:
					// it resolves localhost, not mqtk.
					got := p.Targets()[before:]
					u, _ := url.Parse(tg.url)
					if len(got) != 2 || got[0] != u.Host || got[1] != u.Host {
						t.Errorf("proxy tunnels %q, want two to %s", got, u.Host)
					}
				})
			}
		}
	}
	// socks5:// resolves the name here and hands the proxy an address.
	t.Run("socks5-resolves-locally", func(t *testing.T) {
		p := startTestProxy(t, "socks", "", "")
		u := strings.Replace(p.URL, "socks5h://", "socks5://", 1)
		code, _, errb := runMqtk(t, "", "pub", "-h", "localhost", "-p", portOf(own["tcp"]), "-t", "px/local", "-m", "x", "--proxy", u)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, errb)
		}
		if got := p.Targets(); len(got) != 1 || got[0] != "127.0.0.1:"+portOf(own["tcp"]) {
			t.Errorf("tunnels %q, want one to 127.0.0.1:%s", got, portOf(own["tcp"]))
		}
	})
	// rr binds the same connection flags.
	t.Run("rr", func(t *testing.T) {
		p := startTestProxy(t, "http", "", "")
		code, _, errb := runMqtk(t, "", "rr", "-L", "mqtt://127.0.0.1:"+portOf(own["tcp"]), "-t", "px/rr", "-e", "px/rr/re", "-m", "q", "-W", "0.5", "--proxy", p.URL)
		if code != 27 {
			t.Fatalf("rr with nobody answering: exit %d, want 27\n%s", code, errb)
		}
		if len(p.Targets()) != 1 {
			t.Errorf("rr: tunnels %q, want one", p.Targets())
		}
	})
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// A proxy that refuses the login, wants one, or is not there fails with
// exit 3 (network) and a message that names the proxy, not the broker.
func TestProxyFailuresExit3(t *testing.T) {
	_, own := ownBroker(t, broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}})
	socks := startTestProxy(t, "socks", "u", "right")
	httpP := startTestProxy(t, "http", "u", "right")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	wrong := func(u string) string { return strings.Replace(u, ":right@", ":wrong@", 1) }
	noLogin := func(u string) string { return strings.Replace(u, "u:right@", "", 1) }
	for _, tc := range []struct {
		proxy string
		want  []string
	}{
		{wrong(socks.URL), []string{"refused the user name or password", "hint: check the user:pass@ part of --proxy"}},
		{noLogin(socks.URL), []string{"wants a login", "hint: give it in the URL"}},
		{wrong(httpP.URL), []string{"refused the user name or password (HTTP 407", "hint: check the user:pass@ part"}},
		{noLogin(httpP.URL), []string{"wants a login (HTTP 407"}},
		{"socks5h://" + deadAddr, []string{"the proxy socks5h://" + deadAddr + " refused the connection", "hint: is the proxy running there?"}},
		{"http://" + deadAddr, []string{"the proxy http://" + deadAddr + " refused the connection"}},
	} {
		code, _, errb := runMqtk(t, "", "pub", "-h", "127.0.0.1", "-p", portOf(own["tcp"]), "-t", "px/f", "-m", "x", "--proxy", tc.proxy)
		if code != 3 {
			t.Errorf("--proxy %s: exit %d, want 3\n%s", tc.proxy, code, errb)
		}
		for _, w := range tc.want {
			if !strings.Contains(errb, w) {
				t.Errorf("--proxy %s: stderr lacks %q:\n%s", tc.proxy, w, errb)
			}
		}
		if strings.Contains(errb, "wrong") {
			t.Errorf("--proxy %s: the password shows in the message:\n%s", tc.proxy, errb)
		}
	}
	if n := len(socks.Targets()) + len(httpP.Targets()); n != 0 {
		t.Errorf("%d tunnels opened without the right login", n)
	}
}

// tlsFront terminates TLS with tc on 127.0.0.1 and forwards the plain
// stream to backend (a broker's TCP listener), reporting the state of each
// handshake: what the client and this server agreed on the wire.
func tlsFront(t *testing.T, tc *tls.Config, backend string) (port string, states <-chan tls.ConnectionState) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan tls.ConnectionState, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	keep := func(c net.Conn, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			open[c] = true
		} else {
			delete(open, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			keep(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer keep(c, false)
				defer c.Close()
				tcn := c.(*tls.Conn)
				_ = tcn.SetDeadline(time.Now().Add(10 * time.Second))
				if tcn.Handshake() != nil {
					return
				}
				_ = tcn.SetDeadline(time.Time{})
				select {
				case ch <- tcn.ConnectionState():
				default:
				}
				up, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				keep(up, true)
				defer keep(up, false)
				defer up.Close()
				go func() { io.Copy(up, tcn); up.Close() }()
				io.Copy(tcn, up)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return portOf(ln.Addr().String()), ch
}

// --tls-version, --ciphers and --tls-keylog, seen on the wire: the TLS
// version and suite the handshake settled on, and the keys logged.
func TestTLSVersionCiphersKeylogOnTheWire(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "localhost", "127.0.0.1")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	_, own := ownBroker(t, broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}})
	pubVia := func(port string, extra ...string) (int, string) {
		code, _, errb := runMqtk(t, "", append([]string{"pub", "-h", "127.0.0.1", "-p", port, "--cafile", pki.CAFile, "-t", "tlsv/x", "-m", "y"}, extra...)...)
		return code, errb
	}
	state := func(ch <-chan tls.ConnectionState) tls.ConnectionState {
		t.Helper()
		select {
		case s := <-ch:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no handshake reached the server")
		}
		return tls.ConnectionState{}
	}
	any13, ch13 := tlsFront(t, &tls.Config{Certificates: []tls.Certificate{pair}}, own["tcp"])
	only12, ch12 := tlsFront(t, &tls.Config{Certificates: []tls.Certificate{pair}, MaxVersion: tls.VersionTLS12}, own["tcp"])
	only11, ch11 := tlsFront(t, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, own["tcp"])

	// tlsv1.2 is the lowest version, as mosquitto 2.0's clients take it:
	// they too settle on TLS 1.3 when the broker has it.
	if code, errb := pubVia(any13, "--tls-version", "tlsv1.2"); code != 0 {
		t.Fatalf("tlsv1.2 to a TLS 1.3 server: exit %d\n%s", code, errb)
	}
	if v := state(ch13).Version; v != tls.VersionTLS13 {
		t.Errorf("tlsv1.2 to a TLS 1.3 server negotiated %s", tls.VersionName(v))
	}
	if code, errb := pubVia(only12, "--tls-version", "tlsv1.2"); code != 0 || state(ch12).Version != tls.VersionTLS12 {
		t.Errorf("tlsv1.2 to a TLS 1.2 server: exit %d\n%s", code, errb)
	}
	if code, errb := pubVia(only12, "--tls-version", "tlsv1.3"); code != 4 || !strings.Contains(errb, "does not support the TLS version") {
		t.Errorf("tlsv1.3 to a TLS 1.2 server: exit %d, want 4\n%s", code, errb)
	}
	if code, errb := pubVia(only11); code != 4 {
		t.Errorf("the default (TLS 1.2 and up) to a TLS 1.1 server: exit %d, want 4\n%s", code, errb)
	}
	if code, errb := pubVia(only11, "--tls-version", "tlsv1.1"); code != 0 || state(ch11).Version != tls.VersionTLS11 {
		t.Errorf("tlsv1.1 to a TLS 1.1 server: exit %d\n%s", code, errb)
	}

	// --ciphers restricts the TLS 1.2 suites, in OpenSSL and IANA
	// spelling (which one of several wins is the server's choice in Go).
	for _, tc := range []struct{ list, want string }{
		{"ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
		{"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
		{"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"},
	} {
		if code, errb := pubVia(only12, "--ciphers", tc.list); code != 0 {
			t.Errorf("--ciphers %s: exit %d\n%s", tc.list, code, errb)
			continue
		}
		if got := tls.CipherSuiteName(state(ch12).CipherSuite); got != tc.want {
			t.Errorf("--ciphers %s negotiated %s, want %s", tc.list, got, tc.want)
		}
	}

	// --tls-keylog appends the secrets of each handshake.
	keylog := filepath.Join(t.TempDir(), "keys.log")
	for i, port := range []string{any13, only12} {
		if code, errb := pubVia(port, "--tls-keylog", keylog); code != 0 {
			t.Fatalf("--tls-keylog: exit %d\n%s", code, errb)
		}
		_ = state(map[int]<-chan tls.ConnectionState{0: ch13, 1: ch12}[i])
	}
	b, err := os.ReadFile(keylog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "CLIENT_HANDSHAKE_TRAFFIC_SECRET ") || !strings.Contains(string(b), "CLIENT_RANDOM ") {
		t.Errorf("key log lacks the TLS 1.3 or the TLS 1.2 secrets:\n%s", b)
	}
	if fi, err := os.Stat(keylog); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key log mode %v, want 0600 (%v)", fi.Mode().Perm(), err)
	}
	if code, errb := pubVia(any13, "--tls-keylog", filepath.Join(t.TempDir(), "no", "such", "dir", "k.log")); code != 2 || !strings.Contains(errb, "open --tls-keylog") {
		t.Errorf("--tls-keylog in a missing directory: exit %d, want 2\n%s", code, errb)
	}

	// --tls-use-os-certs: alone, TLS with the system's CAs, which do not
	// know this private CA; with --cafile, both are trusted.
	if code, _, errb := runMqtk(t, "", "pub", "-h", "127.0.0.1", "-p", any13, "-t", "tlsv/x", "-m", "y", "--tls-use-os-certs"); code != 4 || !strings.Contains(errb, "unknown authority") {
		t.Errorf("--tls-use-os-certs alone with a private CA: exit %d, want 4\n%s", code, errb)
	}
	if code, errb := pubVia(any13, "--tls-use-os-certs"); code != 0 {
		t.Errorf("--tls-use-os-certs with --cafile: exit %d\n%s", code, errb)
	} else {
		state(ch13)
	}
	// --no-tls undoes --cafile: a plain connection to the plain port.
	if code, errb := pubVia(portOf(own["tcp"]), "--no-tls"); code != 0 {
		t.Errorf("--cafile --no-tls to a plain port: exit %d\n%s", code, errb)
	}
}

// -A binds the local end: the broker sees the client come from that
// address (127.0.0.2 is loopback on Linux, so no interface is needed).
func TestBindAddressSeenByBroker(t *testing.T) {
	b, own := ownBroker(t, broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		streams, _, _ := ui.Test(nil)
		done <- execute(ctx, streams, []string{"sub", "-h", "127.0.0.1", "-p", portOf(own["tcp"]), "-A", "127.0.0.2", "-i", "bound", "-t", "bind/#", "-W", "5"}, func(string) string { return "" })
	}()
	var remote string
	for deadline := time.Now().Add(10 * time.Second); remote == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, c := range b.Engine().Clients() {
			if c.ID == "bound" && c.Connected {
				remote = c.Remote
			}
		}
	}
	cancel()
	<-done
	if host, _, _ := net.SplitHostPort(remote); host != "127.0.0.2" {
		t.Errorf("the broker saw the client at %q, want 127.0.0.2", remote)
	}
	// mosquitto logs the address it sees.
	mosq := mosquittotest.Start(t, mosquittotest.Options{})
	code, _, errb := runMqtk(t, "", "pub", "-h", "127.0.0.1", "-p", strconv.Itoa(mosq.Port()), "-A", "127.0.0.3", "-i", "bound3", "-t", "bind/x", "-m", "y")
	if code != 0 {
		t.Fatalf("pub -A 127.0.0.3: exit %d\n%s", code, errb)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(mosq.Log(), "from 127.0.0.3:") && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	if !strings.Contains(mosq.Log(), "from 127.0.0.3:") {
		t.Errorf("mosquitto's log does not show a client from 127.0.0.3:\n%s", mosq.Log())
	}
	if code, _, errb := runMqtk(t, "", "pub", "-h", "127.0.0.1", "-p", portOf(own["tcp"]), "-A", "192.0.2.1", "-t", "bind/x", "-m", "y"); code != 3 || !strings.Contains(errb, "-A must be an address of this machine") {
		t.Errorf("-A with a foreign address: exit %d, want 3\n%s", code, errb)
	}
}

// --unix and --ws reach the broker's unix-socket and WebSocket listeners
// with -h/-p as mosquitto's clients use them.
func TestUnixAndWSFlags(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "b.sock")
	_, own := ownBroker(t, broker.Options{Listeners: []string{"unix://" + sock, "ws://127.0.0.1:0/mqtt"}})
	if code, _, errb := runMqtk(t, "", "pub", "--unix", sock, "-t", "ux/a", "-m", "over unix", "-r"); code != 0 {
		t.Fatalf("pub --unix: exit %d\n%s", code, errb)
	}
	code, out, errb := runMqtk(t, "", "sub", "-h", "127.0.0.1", "-p", portOf(own["ws"]), "--ws", "-t", "ux/a", "-C", "1", "-W", "5")
	if code != 0 || out != "over unix\n" {
		t.Fatalf("sub --ws: exit %d, stdout %q\n%s", code, out, errb)
	}
	if code, _, errb := runMqtk(t, "", "pub", "--unix", filepath.Join(t.TempDir(), "none.sock"), "-t", "ux/a", "-m", "x"); code != 3 || !strings.Contains(errb, "no socket at") {
		t.Errorf("--unix to a missing socket: exit %d, want 3\n%s", code, errb)
	}
}

// Go turns Nagle's algorithm off on every TCP connection, which is what
// --nodelay asks for: the option is accepted, and the socket has it.
func TestNodelayIsOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	c, _, err := parseConn(t, nil, "-h", "127.0.0.1", "-p", portOf(ln.Addr().String()), "--nodelay")
	if err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	conn, err := d.Dial("tcp", c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	raw.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY) })
	if serr != nil || v == 0 {
		t.Errorf("TCP_NODELAY = %d (%v), want on", v, serr)
	}
}
