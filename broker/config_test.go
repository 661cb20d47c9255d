package broker

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// "listen: URL" in a config file is one listener; a list stays a list,
// and what the file leaves out keeps its default.
func TestReadConfigListen(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"listen: tcp://127.0.0.1:1999\n", []string{"tcp://127.0.0.1:1999"}},
		{"listen:\n  - tcp://127.0.0.1:1999\n  - ws://127.0.0.1:8080/mqtt\n", []string{"tcp://127.0.0.1:1999", "ws://127.0.0.1:8080/mqtt"}},
		{"listen:\n", nil},
		{"", nil},
	} {
		c, err := ReadConfig(writeConfig(t, tc.text))
		if err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		if strings.Join(c.Listeners, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q: listeners %q, want %q", tc.text, c.Listeners, tc.want)
		}
		if c.MaxPacketSize != DefaultLimits().MaxPacketSize {
			t.Errorf("%q: max-packet-size %d, want the default", tc.text, c.MaxPacketSize)
		}
	}
}

// A file's explicit zero is kept: Complete fills only what is unset
// because the flags and the file start from DefaultLimits.
func TestReadConfigKeepsExplicitZero(t *testing.T) {
	c, err := ReadConfig(writeConfig(t, "auth-fail-delay: 0s\nmax-clients: 10\ntls: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if c.AuthFailDelay != 0 || c.MaxClients != 10 || !c.TLS {
		t.Errorf("auth-fail-delay %v, max-clients %d, tls %v", c.AuthFailDelay, c.MaxClients, c.TLS)
	}
	if c.WriteTimeout != DefaultLimits().WriteTimeout {
		t.Errorf("write-timeout %v, want the default", c.WriteTimeout)
	}
}

// Errors in the file are option errors naming --config, so the command
// reports them as usage errors; an unknown key gets a hint.
func TestReadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		want, hint string
	}{
		{"unknown key", writeConfig(t, "max-clientz: 10\n"), "max-clientz", "--print-config"},
		{"bad value", writeConfig(t, "max-clients: lots\n"), "lots", "--print-config"},
		{"not yaml", writeConfig(t, "listen: [\n"), "config ", ""},
		{"missing", filepath.Join(t.TempDir(), "nope.yaml"), "read config", ""},
	} {
		_, err := ReadConfig(tc.path)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Option != "config" {
			t.Errorf("%s: %v, want an OptionError for config", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(oe.Hint, tc.hint) {
			t.Errorf("%s: %q (hint %q), want %q (hint %q)", tc.name, err, oe.Hint, tc.want, tc.hint)
		}
	}
}

func TestConfigComplete(t *testing.T) {
	c := Config{}
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 1 || c.Listeners[0] != DefaultListener || c.LogFormat != "text" || c.MaxPacketSize != DefaultLimits().MaxPacketSize {
		t.Errorf("completed %+v", c.Options)
	}
	// What Complete accepts, New accepts.
	if _, err := New(c.Options); err != nil {
		t.Errorf("New refuses the completed defaults: %v", err)
	}
	c = Config{Options: Options{LogFormat: "xml"}}
	err := c.Complete()
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Option != "log-format" || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("log format xml: %v", err)
	}
}

// The listeners --tls adds, from the listeners given.
func TestAddLocalTLS(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen []string
		want   []string
	}{
		{"none", nil, []string{"tls://127.0.0.1:8883"}},
		{"default", []string{DefaultListener}, []string{DefaultListener, "tls://127.0.0.1:8883"}},
		{"with ws", []string{"tcp://127.0.0.1:1883", "ws://127.0.0.1:8080/mqtt"},
			[]string{"tcp://127.0.0.1:1883", "ws://127.0.0.1:8080/mqtt", "tls://127.0.0.1:8883", "wss://127.0.0.1:8443/mqtt"}},
		{"ws path kept", []string{"ws://:8080/ws"}, []string{"ws://:8080/ws", "tls://127.0.0.1:8883", "wss://:8443/ws"}},
		{"ws default path", []string{"ws://127.0.0.1:8080"}, []string{"ws://127.0.0.1:8080", "tls://127.0.0.1:8883", "wss://127.0.0.1:8443/mqtt"}},
		{"tcp host", []string{"mqtt://0.0.0.0:1883"}, []string{"mqtt://0.0.0.0:1883", "tls://0.0.0.0:8883"}},
		{"ipv6", []string{"tcp://[::1]:1883"}, []string{"tcp://[::1]:1883", "tls://[::1]:8883"}},
		{"explicit tls kept", []string{"tls://127.0.0.1:9883"}, []string{"tls://127.0.0.1:9883"}},
		{"mqtts is tls", []string{"tcp://127.0.0.1:1883", "mqtts://127.0.0.1:9883"}, []string{"tcp://127.0.0.1:1883", "mqtts://127.0.0.1:9883"}},
		{"wss is tls", []string{"wss://127.0.0.1:9443/mqtt"}, []string{"wss://127.0.0.1:9443/mqtt"}},
		{"unix and bad ones ignored", []string{"unix:///tmp/x.sock", "ftp://x:21"}, []string{"unix:///tmp/x.sock", "ftp://x:21", "tls://127.0.0.1:8883"}},
	} {
		o := Options{Listeners: tc.listen}
		o.AddLocalTLS("c.pem", "k.pem", "ca.pem")
		if strings.Join(o.Listeners, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: listeners %q, want %q", tc.name, o.Listeners, tc.want)
		}
		if o.TLSCert != "c.pem" || o.TLSKey != "k.pem" || o.TLSCA != "ca.pem" {
			t.Errorf("%s: files %q %q %q", tc.name, o.TLSCert, o.TLSKey, o.TLSCA)
		}
	}
	// Files given explicitly win over the made ones.
	o := Options{TLSCert: "mine.pem", TLSKey: "mine-key.pem", TLSCA: "my-ca.pem"}
	o.AddLocalTLS("c.pem", "k.pem", "ca.pem")
	if o.TLSCert != "mine.pem" || o.TLSKey != "mine-key.pem" || o.TLSCA != "my-ca.pem" {
		t.Errorf("explicit files replaced: %q %q %q", o.TLSCert, o.TLSKey, o.TLSCA)
	}
}

// Run serves from Start until ctx ends, calls serving in between with
// the bound listeners, and closes cleanly; bad options come back as
// OptionError without serving.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	called := false
	err := Run(ctx, Options{Listeners: []string{"tcp://127.0.0.1:0"}}, func(ctx context.Context, b *Broker) {
		called = true
		lns := b.Listeners()
		if len(lns) != 1 {
			t.Errorf("listeners %v", lns)
		} else if c, err := net.DialTimeout("tcp", lns[0].Addr, 10*time.Second); err != nil {
			t.Errorf("dial %s while serving: %v", lns[0].Addr, err)
		} else {
			c.Close()
		}
		cancel()
	})
	if err != nil || !called {
		t.Errorf("Run: %v, serving called %v", err, called)
	}

	err = Run(context.Background(), Options{Listeners: []string{"ftp://127.0.0.1:21"}}, func(context.Context, *Broker) {
		t.Error("serving called with bad options")
	})
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Option != "listen" {
		t.Errorf("bad listener: %v, want an OptionError for listen", err)
	}
}
