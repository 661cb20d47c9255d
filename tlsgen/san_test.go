package tlsgen

import (
	"strings"
	"testing"

	"github.com/mqtk/mqtk/internal/clierr"
)

func TestClassifyName(t *testing.T) {
	tests := []struct {
		in    string
		kind  SANKind
		value string
		warn  bool
	}{
		{"localhost", SANDNS, "localhost", false},
		{"Broker.LAN.", SANDNS, "broker.lan", false},
		{"mqtt_broker.local", SANDNS, "mqtt_broker.local", false},
		{"127.0.0.1", SANIP, "127.0.0.1", false},
		{"::1", SANIP, "::1", false},
		{"[fe80::1]", SANIP, "fe80::1", false},
		{"::ffff:10.0.0.1", SANIP, "10.0.0.1", false},
		{"2001:db8::42", SANIP, "2001:db8::42", false},
		{"*.iot.example.com", SANWildcard, "*.iot.example.com", true},
		{"*.lan", SANWildcard, "*.lan", true},
		{"spiffe://example.org/broker", SANURI, "spiffe://example.org/broker", false},
		{"https://broker.example.com/mqtt", SANURI, "https://broker.example.com/mqtt", false},
		{"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", SANURI, "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", false},
		{"ops@example.com", SANEmail, "ops@example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ClassifyName(tt.in)
			if err != nil {
				t.Fatalf("ClassifyName(%q): %v", tt.in, err)
			}
			if got.Kind != tt.kind || got.Value != tt.value {
				t.Errorf("ClassifyName(%q) = %s %q, want %s %q", tt.in, got.Kind, got.Value, tt.kind, tt.value)
			}
			if (got.Warn != "") != tt.warn {
				t.Errorf("ClassifyName(%q) warning %q, want warning: %v", tt.in, got.Warn, tt.warn)
			}
		})
	}
}

func TestClassifyNameRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"   ",
		"broker:1883",    // a port
		"[::1]:8883",     // a port on an IPv6 address
		"10.0.0.0/8",     // a range
		"a.*.example",    // wildcard not left-most
		"*",              // bare wildcard
		"*.*.example",    // double wildcard
		"foo..bar",       // empty label
		"-foo.example",   // leading hyphen
		"bücher.example", // needs punycode
		"has space",
		"not an@email@x",
		"Name <a@b.c>", // display name
		"spiffe://",    // URI without a host
		"urn:",         // URN without anything
		"host:name",    // stray colon
	} {
		t.Run(in, func(t *testing.T) {
			got, err := ClassifyName(in)
			if err == nil {
				t.Fatalf("ClassifyName(%q) = %+v, want an error", in, got)
			}
			if clierr.KindOf(err) != clierr.KindUsage {
				t.Errorf("ClassifyName(%q): kind %v, want usage", in, clierr.KindOf(err))
			}
		})
	}
	// The offending character is quoted: a bare space was invisible.
	if _, err := ClassifyName("bad name!"); err == nil || !strings.Contains(err.Error(), "the character ' '") {
		t.Errorf("ClassifyName(%q): %v; want the space quoted", "bad name!", err)
	}
}

func TestClassifyAllDropsDuplicates(t *testing.T) {
	sans, err := classifyAll([]string{"localhost", "LOCALHOST", "127.0.0.1", "::ffff:127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sans) != 2 {
		t.Errorf("got %d SANs %+v, want 2", len(sans), sans)
	}
}

func TestParseKeyType(t *testing.T) {
	for in, want := range map[string]KeyType{
		"": ECDSAP256, "ecdsa-p256": ECDSAP256, "P-384": ECDSAP384, "rsa": RSA2048,
		"rsa-3072": RSA3072, "RSA4096": RSA4096, "ed25519": Ed25519,
	} {
		got, err := ParseKeyType(in)
		if err != nil || got != want {
			t.Errorf("ParseKeyType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseKeyType("dsa"); clierr.KindOf(err) != clierr.KindUsage {
		t.Errorf("ParseKeyType(dsa): %v, want a usage error", err)
	}
}
