package mqttconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

func TestParseProxy(t *testing.T) {
	for raw, want := range map[string]string{
		"socks5h://127.0.0.1:1080":       "socks5h://127.0.0.1:1080",
		"SOCKS5H://proxy":                "socks5h://proxy:1080",
		"socks5://u:p@[::1]:9050":        "socks5://u:p@[::1]:9050",
		"http://user:pa%3Ass@proxy:3128": "http://user:pa%3Ass@proxy:3128",
	} {
		u, err := ParseProxy(raw)
		if err != nil || u.String() != want {
			t.Errorf("ParseProxy(%q) = %v, %v; want %s", raw, u, err, want)
		}
	}
	for _, raw := range []string{"proxy:1080", "ftp://p:21", "http://p", "socks5h://:1080", "socks5h://p:99999", "https://p:443", "socks4://p:1080", "http://p:3128/path"} {
		_, err := ParseProxy(raw)
		if clierr.KindOf(err) != clierr.KindUsage || len(clierr.HintsOf(err)) == 0 && !strings.Contains(err.Error(), raw) {
			t.Errorf("ParseProxy(%q): %v, want a usage error", raw, err)
		}
	}
	// The password never shows in messages.
	u, _ := ParseProxy("http://user:secret@p:3128")
	if s := redacted(u); strings.Contains(s, "secret") || s != "http://user@p:3128" {
		t.Errorf("redacted = %q", s)
	}
}

// A proxy may send the first bytes of the tunnel in the same segment as
// its answer to CONNECT: they are the broker's and must not be lost. A
// server that is no HTTP proxy gets a message that says so.
func TestHTTPConnectEdgeCases(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	replies := make(chan string, 2)
	replies <- "HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nEARLY"
	replies <- "SSH-2.0-OpenSSH\r\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			http.ReadRequest(bufio.NewReader(c))
			io.WriteString(c, <-replies)
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	cfg := Default()
	cfg.Host, cfg.Port, cfg.Proxy = "broker", 1883, "http://"+ln.Addr().String()
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	dial, err := transportDialer(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", cfg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "EARLY" {
		t.Errorf("bytes after the proxy's answer: %q, %v", b, err)
	}
	c.Close()
	_, err = dial(ctx, "tcp", cfg.Addr())
	if clierr.KindOf(err) != clierr.KindNetwork || !strings.Contains(err.Error(), "did not answer CONNECT as an HTTP proxy") {
		t.Errorf("not a proxy: %v", err)
	}
}

func TestParseCiphers(t *testing.T) {
	got, err := ParseCiphers("ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256")
	if err != nil || len(got) != 2 || got[0] != tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 || got[1] != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Errorf("ParseCiphers = %v, %v", got, err)
	}
	for list, want := range map[string]string{
		"DHE-RSA-AES128-GCM-SHA256":        "does not implement DHE-RSA-AES128-GCM-SHA256",
		"ECDHE-RSA-AES256-SHA384:CAMELLIA": "keywords and operators are not supported: CAMELLIA",
		"DEFAULT:@STRENGTH":                "DEFAULT, @STRENGTH",
		"::":                               "names no cipher suite",
	} {
		_, err := ParseCiphers(list)
		if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCiphers(%q) = %v, want %q", list, err, want)
		}
	}
}
