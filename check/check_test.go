package check

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/testpki"
	"github.com/mqtk/mqtk/internal/ui"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testPayloadBound keeps the size bisection short: 64 KiB is more than
// the limits configured below and well under the brokers' defaults.
const testPayloadBound = 64 << 10

// probe runs a whole check against url with the probes at version v.
func probe(t *testing.T, url string, v mqttconn.Version, prefix string) *Report {
	t.Helper()
	cfg := mqttconn.Default()
	cfg.URL, cfg.Version = url, v
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	io, _, _ := ui.Test(strings.NewReader(""))
	o := &Options{Conn: cfg, Prefix: prefix, Timeout: time.Minute, MaxPayload: testPayloadBound, IO: io}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Probe(ctx, o, cfg, prefix)
	if err != nil {
		t.Fatalf("check %s: %v", url, err)
	}
	return r
}

// assertRows checks rows against expectations, as --expect would.
func assertRows(t *testing.T, r *Report, want map[string]string) {
	t.Helper()
	for id, w := range want {
		if ok, got := meets(r.Row(id), w); !ok {
			t.Errorf("%s: want %s, got %s", id, w, got)
		}
	}
	for _, row := range r.Rows {
		if row.Verdict == Failed || row.Verdict == Skipped {
			t.Errorf("%s: %s: %s", row.ID, row.Verdict, row.Note)
		}
	}
	if t.Failed() {
		var b bytes.Buffer
		_ = WriteTable(&b, r, nil)
		t.Logf("report:\n%s", b.String())
	}
}

// assertValues checks that each row's value holds the text given for it.
func assertValues(t *testing.T, r *Report, values map[string]string) {
	t.Helper()
	for id, want := range values {
		if row := r.Row(id); row == nil || !strings.Contains(row.Value, want) {
			t.Errorf("%s: %+v, want a value with %q", id, row, want)
		}
	}
}

// maxPacket checks that the largest accepted payload, as a whole
// PUBLISH, is at the configured limit: within the 1 to 4 bytes of
// remaining-length field that brokers count differently (mosquitto
// leaves it out).
func maxPacket(t *testing.T, r *Report, v packet.Version, limit int) {
	t.Helper()
	row := r.Row("max_payload")
	if row == nil || row.Number == nil {
		t.Fatalf("max_payload: no number in %+v", row)
	}
	n := int(*row.Number)
	size := (&packet.Publish{Topic: strings.Repeat("x", topicLen(row)), QoS: 1, PacketID: 1, Payload: make([]byte, n)}).Size(v)
	if size > limit+2 || size < limit-4 {
		t.Errorf("max_payload: largest payload %d makes a %d-byte PUBLISH; the broker's limit is %d", n, size, limit)
	}
}

func topicLen(r *Row) int {
	var a, b, c int
	if _, err := fmt.Sscanf(r.Value, "%d bytes (a %d-byte PUBLISH at QoS 1 with a %d-byte topic)", &a, &b, &c); err != nil {
		return 0
	}
	return c
}

// The verdicts every default mosquitto 2.0 gives at MQTT 5.
var mosquittoDefaults = map[string]string{
	"protocol.3.1": "yes", "protocol.3.1.1": "yes", "protocol.5": "yes",
	"connack.receive_maximum":                    "20",
	"connack.maximum_qos":                        "2",
	"connack.retain_available":                   "yes",
	"connack.maximum_packet_size":                "0",
	"connack.topic_alias_maximum":                "10",
	"connack.wildcard_subscription_available":    "yes",
	"connack.shared_subscription_available":      "yes",
	"connack.subscription_identifiers_available": "yes",
	"connack.assigned_client_id":                 "yes",
	"retained":                                   "yes",
	"wildcards":                                  "yes",
	"max_payload":                                fmt.Sprint(testPayloadBound),
	"receive_maximum_enforced":                   "yes",
	"receive_maximum_disconnect":                 "no",
	"inflight_window":                            "20",
	"shared_subscriptions":                       "yes",
	"subscription_identifiers":                   "yes",
	"no_local":                                   "yes",
	"retain_handling":                            "yes",
	"will":                                       "yes",
	"will_delay":                                 "yes",
	"session_resumption":                         "yes",
	"message_expiry":                             "yes",
	"topic_alias_to_broker":                      "yes",
	"topic_alias_from_broker":                    "no",
	"sys":                                        "yes",
	"tls":                                        "n/a",
}

func with(base map[string]string, changes ...string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(changes); i += 2 {
		m[changes[i]] = changes[i+1]
	}
	return m
}

// TestMosquittoConfigurations checks Debian's mosquitto started with and
// without the settings that change what it supports, and asserts that
// each row says what the configuration says.
func TestMosquittoConfigurations(t *testing.T) {
	mosquittotest.Require(t)
	v311 := map[string]string{
		"protocol.3.1": "yes", "protocol.3.1.1": "yes", "protocol.5": "yes",
		"connack.properties": "n/a", "retained": "yes", "wildcards": "yes",
		"max_payload": fmt.Sprint(testPayloadBound), "inflight_window": "20",
		"shared_subscriptions": "yes", "will": "yes", "session_resumption": "yes", "sys": "yes",
		"receive_maximum_enforced": "n/a", "receive_maximum_disconnect": "n/a", "subscription_identifiers": "n/a", "no_local": "n/a",
		"retain_handling": "n/a", "will_delay": "n/a", "message_expiry": "n/a",
		"topic_alias_to_broker": "n/a", "topic_alias_from_broker": "n/a",
	}
	for _, tc := range []struct {
		name   string
		global string
		v      mqttconn.Version
		want   map[string]string
		packet int // max_packet_size, when set
		// values holds, by row id, text the row's value must contain.
		values map[string]string
	}{
		// mosquitto announces max_inflight_messages as its Receive
		// Maximum (20 by default) and answers a QoS 2 PUBLISH over it
		// with PUBREC 0x97, staying connected; 2.0.11 takes the next one.
		{name: "defaults", v: mqttconn.V5, want: mosquittoDefaults, values: map[string]string{
			"receive_maximum_disconnect": "stayed connected over its Receive Maximum of 20: PUBLISH 21 refused with PUBREC quota exceeded (0x97)"}},
		{name: "defaults-311", v: mqttconn.V311, want: v311},
		{name: "defaults-31", v: mqttconn.V31, want: v311},
		{name: "max_packet_size", global: "max_packet_size 2000", v: mqttconn.V5, packet: 2000,
			want: with(mosquittoDefaults, "connack.maximum_packet_size", "2000", "max_payload", "< 2000")},
		{name: "max_packet_size-311", global: "max_packet_size 2000", v: mqttconn.V311, packet: 2000,
			want: with(v311, "max_payload", "< 2000")},
		{name: "max_inflight_messages", global: "max_inflight_messages 5", v: mqttconn.V5,
			want:   with(mosquittoDefaults, "connack.receive_maximum", "5", "inflight_window", "5"),
			values: map[string]string{"receive_maximum_disconnect": "over its Receive Maximum of 5: PUBLISH 6 refused with PUBREC quota exceeded (0x97)"}},
		{name: "max_inflight_messages-311", global: "max_inflight_messages 5", v: mqttconn.V311,
			want: with(v311, "inflight_window", "5")},
		// Without retained messages $SYS is only published every
		// sys_interval (10 s), after the probe has stopped listening.
		{name: "retain_available", global: "retain_available false", v: mqttconn.V5,
			want: with(mosquittoDefaults, "connack.retain_available", "no", "retained", "no", "retain_handling", "n/a", "sys", "no")},
		{name: "allow_zero_length_clientid", global: "allow_zero_length_clientid false", v: mqttconn.V5,
			want: with(mosquittoDefaults, "connack.assigned_client_id", "no")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := mosquittotest.Start(t, mosquittotest.Options{Global: tc.global})
			r := probe(t, fmt.Sprintf("mqtt://%s", b.Addr(0)), tc.v, "mqtk-check/"+tc.name)
			assertRows(t, r, tc.want)
			assertValues(t, r, tc.values)
			if tc.packet != 0 {
				maxPacket(t, r, packet.Version(tc.v), tc.packet)
			}
			assertClean(t, fmt.Sprintf("mqtt://%s", b.Addr(0)), "mqtk-check/"+tc.name)
		})
	}
}

// TestOwnBroker checks mqtk's in-process broker at both versions, with
// its defaults and with a small packet limit.
func TestOwnBroker(t *testing.T) {
	defaults := with(mosquittoDefaults,
		"connack.receive_maximum", "65535",
		"connack.maximum_packet_size", fmt.Sprint(broker.DefaultLimits().MaxPacketSize),
		"inflight_window", "no limit below 30 (all sent without waiting)",
		"topic_alias_from_broker", "yes",
		// 65535, not announced: too many to exceed.
		"receive_maximum_disconnect", "n/a")
	for _, tc := range []struct {
		name   string
		limits broker.Limits
		v      mqttconn.Version
		want   map[string]string
		packet int
		values map[string]string
	}{
		{name: "defaults", v: mqttconn.V5, want: defaults},
		{name: "defaults-311", v: mqttconn.V311, want: map[string]string{
			"protocol.3.1": "yes", "protocol.3.1.1": "yes", "protocol.5": "yes", "retained": "yes",
			"wildcards": "yes", "shared_subscriptions": "yes", "will": "yes", "session_resumption": "yes",
			"sys": "yes", "will_delay": "n/a", "max_payload": fmt.Sprint(testPayloadBound),
		}},
		{name: "max-packet-size", limits: broker.Limits{MaxPacketSize: 3000}, v: mqttconn.V5, packet: 3000,
			want: with(defaults, "connack.maximum_packet_size", "3000", "max_payload", "< 3000")},
		// Its Receive Maximum is announced and enforced as MQTT 5 says:
		// DISCONNECT 0x93 at the first QoS 2 PUBLISH over it.
		{name: "receive-maximum", limits: broker.Limits{ReceiveMaximum: 5}, v: mqttconn.V5,
			want:   with(defaults, "connack.receive_maximum", "5", "receive_maximum_disconnect", "yes"),
			values: map[string]string{"receive_maximum_disconnect": "DISCONNECT receive maximum exceeded (0x93) at unreleased QoS 2 PUBLISH 6 (Receive Maximum 5)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := startOwnBroker(t, tc.limits)
			r := probe(t, url, tc.v, "mqtk-check/"+tc.name)
			assertRows(t, r, tc.want)
			assertValues(t, r, tc.values)
			if tc.packet != 0 {
				maxPacket(t, r, packet.Version(tc.v), tc.packet)
			}
			assertClean(t, url, "mqtk-check/"+tc.name)
		})
	}
}

func startOwnBroker(t *testing.T, limits broker.Limits) string {
	t.Helper()
	b := brokertest.Own(t, broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}, AllowAnonymous: true, Limits: limits})
	return b.Listeners()[0].URL()
}

// assertClean checks that the check left no retained message under its
// prefix, by subscribing to it afresh.
func assertClean(t *testing.T, url, prefix string) {
	t.Helper()
	cfg := mqttconn.Default()
	cfg.URL = url
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	p := &prober{cfg: cfg, dial: mqttconn.DialConn, v: packet.V5, prefix: prefix, wait: 5 * time.Second, quiet: 300 * time.Millisecond, idBase: "clean"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := p.open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.disconnect(nil)
	if _, err := c.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: prefix + "/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := p.beforeMarker(ctx, c, prefix+"/clean")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got {
		t.Errorf("left behind: %s %q (retain %v)", m.Topic, m.Payload, m.Retain)
	}
}

// TestGoldenMosquitto: against mosquitto with a fixed configuration the
// table is the same, row by row, once timings and random values are
// masked.
func TestGoldenMosquitto(t *testing.T) {
	mosquittotest.Require(t)
	t.Parallel()
	b := mosquittotest.Start(t, mosquittotest.Options{Global: "max_packet_size 4000\nmax_inflight_messages 8\nmax_keepalive 30"})
	r := probe(t, fmt.Sprintf("mqtt://%s", b.Addr(0)), mqttconn.V5, "mqtk-check/golden")
	r.Mask()
	r.Broker = "mqtt://127.0.0.1:PORT"
	var got bytes.Buffer
	if err := WriteTable(&got, r, nil); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "mosquitto.golden")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("line %d:\n got  %q\n want %q", i+1, g, w)
		}
	}
}

// TestExpectations covers the --expect grammar on a fixed report.
func TestExpectations(t *testing.T) {
	r := &Report{Broker: "b", Rows: []Row{
		{ID: "protocol.5", Verdict: Yes, Value: "accepted"},
		{ID: "connack.maximum_qos", Verdict: Info, Value: "1", Number: num(1)},
		{ID: "max_payload", Verdict: Info, Value: "970 bytes", Number: num(970)},
		{ID: "sys", Verdict: No, Value: "nothing"},
	}}
	for _, tc := range []struct {
		id, want string
		ok       bool
	}{
		{"protocol.5", "yes", true}, {"protocol.5", "no", false}, {"protocol.5", "accepted", true},
		{"connack.maximum_qos", "2", false}, {"connack.maximum_qos", "1", true}, {"connack.maximum_qos", ">= 1", true},
		{"max_payload", ">= 65536", false}, {"max_payload", "< 1000", true}, {"max_payload", "<=970", true},
		{"sys", "yes", false}, {"missing", "yes", false}, {"protocol.5", ">= 1", false},
	} {
		if ok, got := meets(r.Row(tc.id), tc.want); ok != tc.ok {
			t.Errorf("%s %q: ok %v, want %v (got %s)", tc.id, tc.want, ok, tc.ok, got)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "e.yaml")
	if err := os.WriteFile(file, []byte("protocol.5: yes\nconnack.maximum_qos: 1\nmax_payload: \">= 512\"\nsys: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	exp, err := loadExpectations(file)
	if err != nil {
		t.Fatal(err)
	}
	io, _, errb := ui.Test(strings.NewReader(""))
	if err := exp.check(io, []*Report{r}); err != nil {
		t.Fatalf("met expectations failed: %v\n%s", err, errb)
	}
	if err := os.WriteFile(file, []byte(`{"protocol.5": "no", "max_payload": ">= 65536"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if exp, err = loadExpectations(file); err != nil {
		t.Fatal(err)
	}
	err = exp.check(io, []*Report{r})
	if clierr.KindOf(err) != clierr.KindUnmet {
		t.Fatalf("unmet expectations: got %v, want a KindUnmet error", err)
	}
	for _, s := range []string{"max_payload: want >= 65536, got info: 970 bytes", "protocol.5: want no, got yes: accepted"} {
		if !strings.Contains(errb.String(), s) {
			t.Errorf("stderr lacks %q:\n%s", s, errb)
		}
	}
}

// TestJSONReport checks that -F json carries every row with its id.
func TestJSONReport(t *testing.T) {
	io, out, _ := ui.Test(strings.NewReader(""))
	r := &Report{Broker: "mqtt://x:1883", Version: "5", Rows: []Row{{ID: "protocol.5", Group: "protocol", Name: "MQTT 5", Verdict: Yes, Value: "accepted"}}}
	if err := render(&Options{JSON: true, IO: io}, []*Report{r}); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(back.Rows) != 1 || back.Rows[0].ID != "protocol.5" || back.Rows[0].Verdict != Yes {
		t.Errorf("round trip: %+v", back)
	}
}

// TestTLS checks a mosquitto TLS listener: the versions it takes (all
// Go offers from 1.2, or only 1.3 when told so), verification against
// the CA, the chain and the names; and that a CA that does not sign the
// broker's certificate fails the run as a TLS error (exit 4).
func TestTLS(t *testing.T) {
	mosquittotest.Require(t)
	t.Parallel()
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "localhost", "127.0.0.1")
	for _, tc := range []struct {
		extra, versions string
	}{{"", "TLS 1.2, TLS 1.3"}, {"tls_version tlsv1.3", "TLS 1.3"}} {
		b := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{{
			TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}, Extra: tc.extra}}})
		cfg := mqttconn.Default()
		cfg.URL, cfg.TLS.CAFile = "mqtts://"+b.Addr(0), pki.CAFile
		if err := cfg.Resolve(); err != nil {
			t.Fatal(err)
		}
		io, _, _ := ui.Test(strings.NewReader(""))
		o := &Options{Conn: cfg, Prefix: "mqtk-check/tls", Timeout: time.Minute, MaxPayload: 1024, IO: io}
		p := newProber(o, cfg, o.Prefix, mqttconn.V5)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := p.probeTLS(ctx); err != nil {
			t.Fatal(err)
		}
		r := &Report{Rows: p.rows}
		assertRows(t, r, map[string]string{"tls.versions": tc.versions, "tls.verified": "yes", "tls.names": "localhost, 127.0.0.1"})
		if row := r.Row("tls.chain.0"); row == nil || !strings.Contains(row.Value, "CN=server") || !strings.Contains(row.Value, "CN=mqtk test CA") {
			t.Errorf("tls.chain.0: %+v", row)
		}
		// The probes run over TLS as over TCP.
		if err := p.probeRetained(ctx); err != nil {
			t.Fatal(err)
		}
		assertRows(t, &Report{Rows: p.rows}, map[string]string{"retained": "yes"})

		other := testpki.New(t)
		bad := cfg
		bad.TLS.CAFile = other.CAFile
		_, err := Probe(ctx, o, bad, o.Prefix)
		cancel()
		if clierr.KindOf(err) != clierr.KindTLS {
			t.Errorf("wrong CA: got %v, want a TLS error", err)
		}
	}
}

// TestWebSocket checks mosquitto over its WebSocket listeners: the whole
// check over ws:// says what it says over TCP, and over wss:// the TLS
// rows describe the listener's TLS.
func TestWebSocket(t *testing.T) {
	mosquittotest.Require(t)
	t.Parallel()
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "localhost", "127.0.0.1")
	// Debian's mosquitto (2.0.11) starts no listener when every one is
	// a WebSocket listener: a TCP one comes first.
	b := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{}, {WebSockets: true}, {WebSockets: true, TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}}}})

	ws := fmt.Sprintf("ws://127.0.0.1:%d/mqtt", b.Ports[1])
	r := probe(t, ws, mqttconn.V5, "mqtk-check/ws")
	assertRows(t, r, mosquittoDefaults)
	assertClean(t, ws, "mqtk-check/ws")

	cfg := mqttconn.Default()
	cfg.URL, cfg.TLS.CAFile = fmt.Sprintf("wss://localhost:%d/mqtt", b.Ports[2]), pki.CAFile
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	io, _, _ := ui.Test(strings.NewReader(""))
	o := &Options{Conn: cfg, Prefix: "mqtk-check/wss", Timeout: time.Minute, MaxPayload: 1024, IO: io}
	p := newProber(o, cfg, o.Prefix, mqttconn.V5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.probeTLS(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.probeRetained(ctx); err != nil {
		t.Fatal(err)
	}
	assertRows(t, &Report{Rows: p.rows}, map[string]string{
		"tls.versions": "TLS 1.2, TLS 1.3", "tls.verified": "yes", "tls.names": "localhost, 127.0.0.1", "retained": "yes"})
	if row := p.rowOf("tls.alpn"); row == nil || !strings.Contains(row.Value, "http/1.1") {
		t.Errorf("tls.alpn: %+v, want HTTP/1.1 offered on a wss:// listener", row)
	}
}

// TestTimeLimit: a run cut short by --timeout still prints every row,
// the ones not reached marked skipped, and succeeds.
func TestTimeLimit(t *testing.T) {
	t.Parallel()
	url := startOwnBroker(t, broker.Limits{})
	cfg := mqttconn.Default()
	cfg.URL = url
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	io, out, _ := ui.Test(strings.NewReader(""))
	o := &Options{Conn: cfg, Prefix: "mqtk-check/limit", Timeout: 1500 * time.Millisecond, MaxPayload: testPayloadBound, IO: io, JSON: true}
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if row := r.Row("protocol.5"); row == nil || row.Verdict != Yes {
		t.Errorf("protocol.5: %+v", row)
	}
	skipped := 0
	for _, row := range r.Rows {
		if row.Verdict == Skipped {
			skipped++
		}
	}
	// The session probe alone waits 2 s for a message to expire.
	if row := r.Row("message_expiry"); row == nil || row.Verdict != Skipped {
		t.Errorf("message_expiry: %+v, want skipped (%d rows skipped)", row, skipped)
	}
	assertClean(t, url, "mqtk-check/limit")
}
