package mqttconn

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

func TestResolve(t *testing.T) {
	cases := []struct {
		name string
		in   Config
		want string // String() after Resolve
		chk  func(t *testing.T, c Config)
	}{
		{"defaults", Default(), "mqtt://localhost:1883", nil},
		{"mosquitto -L with topic", Config{URL: "mqtt://u:p@example.test:1884/a/b"}, "mqtt://example.test:1884", func(t *testing.T, c Config) {
			if c.Topic != "a/b" || c.Username != "u" || c.Password != "p" {
				t.Errorf("topic/credentials from URL: %+v", c)
			}
		}},
		{"flags beat URL", Config{URL: "mqtt://u:p@example.test:1884", Host: "other", Username: "me"}, "mqtt://other:1884", func(t *testing.T, c Config) {
			if c.Username != "me" || c.Password != "p" {
				t.Errorf("credentials: %+v", c)
			}
		}},
		{"mqtts default port", Config{URL: "mqtts://h"}, "mqtts://h:8883", func(t *testing.T, c Config) {
			if !c.TLS.Enabled {
				t.Error("TLS must be on")
			}
		}},
		{"ssl and tls schemes", Config{URL: "ssl://h"}, "mqtts://h:8883", nil},
		{"cafile implies tls", Config{TLS: TLS{CAFile: "ca.pem"}}, "mqtts://localhost:8883", nil},
		{"ws path", Config{URL: "ws://h/custom"}, "ws://h:80/custom", nil},
		{"wss default", Config{URL: "wss://h"}, "wss://h:443/mqtt", nil},
		{"ws with cafile becomes wss", Config{URL: "ws://h:9001", TLS: TLS{CAFile: "x"}}, "wss://h:9001/mqtt", nil},
		{"unix", Config{URL: "unix:///tmp/m.sock"}, "unix:///tmp/m.sock", nil},
		{"ipv6", Config{URL: "mqtt://[::1]:1999"}, "mqtt://[::1]:1999", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.in
			if err := cfg.Resolve(); err != nil {
				t.Fatal(err)
			}
			if got := cfg.String(); got != c.want {
				t.Errorf("got %s want %s", got, c.want)
			}
			if c.chk != nil {
				c.chk(t, cfg)
			}
		})
	}
}

func TestResolveRejects(t *testing.T) {
	d := time.Minute
	never := time.Duration(math.MaxUint32) * time.Second
	for name, c := range map[string]Config{
		"scheme":                              {URL: "http://h"},
		"no scheme":                           {URL: "localhost:1883"},
		"port":                                {Port: 70000},
		"cert alone":                          {TLS: TLS{CertFile: "c.pem"}},
		"tls version":                         {TLS: TLS{MinVersion: "1.0"}},
		"will no topic":                       {Will: &Will{Payload: []byte("x")}},
		"expiry on 311":                       {Version: V311, SessionExpiry: &d},
		"no-clean no id":                      {Version: V311, NoClean: true},
		"unix no path":                        {URL: "unix://"},
		"ip:port no scheme":                   {URL: "127.0.0.1:1883"},
		"v5 no-clean random id never expires": {NoClean: true},
		"v5 no-clean prefix never expires":    {NoClean: true, IDPrefix: "x-"},
		"v5 no-clean infinite expiry":         {NoClean: true, SessionExpiry: &never},
	} {
		cfg := c
		if err := cfg.Resolve(); clierr.KindOf(err) != clierr.KindUsage {
			t.Errorf("%s: want usage error, got %v", name, err)
		}
	}
	// The fix each message names is accepted.
	for name, c := range map[string]Config{
		"v5 no-clean with id":            {NoClean: true, ClientID: "me"},
		"v5 no-clean with finite expiry": {NoClean: true, SessionExpiry: &d},
		"url with scheme":                {URL: "mqtt://127.0.0.1:1883"},
	} {
		cfg := c
		if err := cfg.Resolve(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg := Config{URL: "localhost:1883"}
	if err := cfg.Resolve(); err == nil || !strings.Contains(fmt.Sprint(clierr.HintsOf(err)), "mqtt://localhost:1883") {
		t.Errorf("host:port URL: %v, hints %v", err, clierr.HintsOf(err))
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{"5": V5, "mqttv5": V5, "311": V311, "3.1.1": V311, "mqttv311": V311, "31": V31, "3.1": V31, "mqttv31": V31, "auto": VAuto} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	if _, err := ParseVersion("6"); clierr.KindOf(err) != clierr.KindUsage {
		t.Errorf("6: %v", err)
	}
}
