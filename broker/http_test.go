package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/packet"
)

var (
	promName   = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	promSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})? (\S+)$`)
)

// parseProm checks text against the Prometheus text exposition format (every
// family has exactly one HELP and one TYPE line before its samples, counters
// are named *_total, sample lines are well formed, a family's samples are
// contiguous) and returns the samples keyed by `name{labels}`.
func parseProm(t *testing.T, text string) map[string]float64 {
	t.Helper()
	if !strings.HasSuffix(text, "\n") {
		t.Fatalf("exposition does not end with a newline")
	}
	samples := map[string]float64{}
	help, typ := map[string]bool{}, map[string]string{}
	done := map[string]bool{} // families whose samples ended
	current := ""
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(why string) { t.Fatalf("line %d %q: %s", i+1, line, why) }
		if f, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, text, _ := strings.Cut(f, " ")
			if !promName.MatchString(name) || text == "" || help[name] {
				fail("bad or repeated HELP")
			}
			help[name] = true
			continue
		}
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(f, " ")
			if _, dup := typ[name]; dup || !help[name] {
				fail("TYPE repeated or before HELP")
			}
			switch kind {
			case "counter":
				if !strings.HasSuffix(name, "_total") {
					fail("counter not named *_total")
				}
			case "gauge":
			default:
				fail("unexpected type " + kind)
			}
			typ[name] = kind
			continue
		}
		m := promSample.FindStringSubmatch(line)
		if m == nil {
			fail("not a sample line")
		}
		name := m[1]
		if _, ok := typ[name]; !ok {
			fail("sample without HELP/TYPE")
		}
		if name != current {
			if done[name] {
				fail("family samples not contiguous")
			}
			done[current] = true
			current = name
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			fail("bad value")
		}
		key := name
		if m[3] != "" {
			key += "{" + m[3] + "}"
		}
		if _, dup := samples[key]; dup {
			fail("duplicate sample")
		}
		samples[key] = v
	}
	return samples
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestHTTPEndpoint drives a broker with real clients and checks /metrics
// values (deterministic: only QoS 1/2 publishes and retained deliveries are
// counted, which the broker handles before acknowledging), the JSON API,
// health and pprof.
func TestHTTPEndpoint(t *testing.T) {
	leakCheck(t)
	pub, sub := mosquittotest.RequireClients(t)
	passwd := writeFile(t, "passwd", "")
	if err := SetPassword(passwd, "alice", []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, Options{
		HTTPAddr: "127.0.0.1:0", Pprof: true,
		PasswordFile: passwd, AllowAnonymous: true, Limits: Limits{AuthFailDelay: time.Millisecond},
	})
	addr := b.tcpAddr(t)
	base := "http://" + b.HTTPAddr()

	mosq(t, pub, addr, "-q", "1", "-r", "-t", "m/a", "-m", "hello")  // 5 bytes
	mosq(t, pub, addr, "-q", "2", "-r", "-t", "m/b", "-m", "world!") // 6 bytes
	mosq(t, sub, addr, "-q", "2", "-t", "m/#", "-C", "2", "-W", "10")
	mosq(t, sub, addr, "-c", "-i", "watcher", "-q", "1", "-t", "w/#", "-E")
	// Two logins refused for a wrong password.
	for i := range 2 {
		c := dialRaw(t, addr, packet.V5)
		pk := connectPacket(fmt.Sprint("intruder-", i), true, 30)
		pk.HasUsername, pk.Username = true, "alice"
		pk.HasPassword, pk.Password = true, []byte("wrong")
		c.send(pk)
		if ack := c.recv(); typeOf(ack) != packet.TypeConnack || reasonOf(ack) != packet.BadUserNameOrPassword {
			t.Fatalf("wrong password: got %s, want CONNACK 0x86", c.describe(ack))
		}
	}
	want := map[string]float64{
		`mqtk_broker_messages_received_total{qos="0"}`:            0,
		`mqtk_broker_messages_received_total{qos="1"}`:            1,
		`mqtk_broker_messages_received_total{qos="2"}`:            1,
		`mqtk_broker_payload_bytes_received_total{qos="1"}`:       5,
		`mqtk_broker_payload_bytes_received_total{qos="2"}`:       6,
		`mqtk_broker_messages_sent_total{qos="1"}`:                1,
		`mqtk_broker_messages_sent_total{qos="2"}`:                1,
		`mqtk_broker_payload_bytes_sent_total{qos="1"}`:           5,
		`mqtk_broker_payload_bytes_sent_total{qos="2"}`:           6,
		`mqtk_broker_retained_messages`:                           2,
		`mqtk_broker_auth_failures_total`:                         2,
		`mqtk_broker_messages_dropped_total{reason="queue_full"}`: 0,
		`mqtk_broker_connections_total`:                           4,
	}
	// A subscriber may exit before the broker's write of its last message
	// returns (and is counted), so scrape until the counts settle (bounded).
	var got map[string]float64
	var mismatch []string
	for i := 0; i < 100; i++ {
		code, body := httpGet(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics status %d", code)
		}
		got = parseProm(t, body)
		mismatch = mismatch[:0]
		for key, w := range want {
			if v, ok := got[key]; !ok || v != w {
				mismatch = append(mismatch, fmt.Sprintf("%s = %v (present %v), want %v", key, v, ok, w))
			}
		}
		if len(mismatch) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range mismatch {
		t.Error(m)
	}
	for _, key := range []string{"mqtk_broker_clients_connected", "mqtk_broker_subscriptions", "mqtk_broker_sessions",
		"mqtk_broker_bytes_received_total", "mqtk_broker_bytes_sent_total", "mqtk_broker_uptime_seconds",
		"mqtk_broker_connections_total", "mqtk_broker_inflight_messages", "mqtk_broker_subscribe_denied_total"} {
		if _, ok := got[key]; !ok {
			t.Errorf("/metrics lacks %s", key)
		}
	}
	if got["mqtk_broker_bytes_received_total"] <= 0 {
		t.Errorf("bytes_received_total = %v, want > 0", got["mqtk_broker_bytes_received_total"])
	}

	code, body := httpGet(t, base+"/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}

	_, body = httpGet(t, base+"/api/clients")
	var clients []clientInfo
	if err := json.Unmarshal([]byte(body), &clients); err != nil {
		t.Fatalf("/api/clients: %v\n%s", err, body)
	}
	found := false
	for _, c := range clients {
		if c.ID == "watcher" {
			found = true
			if c.Clean || c.ProtocolVersion != 4 || c.Subscriptions != 1 {
				t.Errorf("watcher = %+v", c)
			}
		}
	}
	if !found {
		t.Errorf("/api/clients lacks the persistent session watcher:\n%s", body)
	}

	_, body = httpGet(t, base+"/api/subscriptions")
	var subs []subscriptionInfo
	if err := json.Unmarshal([]byte(body), &subs); err != nil {
		t.Fatalf("/api/subscriptions: %v\n%s", err, body)
	}
	if !containsSub(subs, subscriptionInfo{Client: "watcher", Filter: "w/#", Qos: 1}) {
		t.Errorf("/api/subscriptions lacks watcher w/# qos 1:\n%s", body)
	}

	if code, body = httpGet(t, base+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ = %d", code)
	}
	if code, _ = httpGet(t, base+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}

	stopBroker(t, b)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if _, err := c.Get(base + "/healthz"); err == nil {
		t.Error("endpoint still answers after the broker closed")
	}
}

// subscriptionInfo is one entry of /api/subscriptions.
type subscriptionInfo struct {
	Client string `json:"client"`
	Filter string `json:"filter"`
	Qos    byte   `json:"qos"`
}

func containsSub(subs []subscriptionInfo, want subscriptionInfo) bool {
	for _, s := range subs {
		if s == want {
			return true
		}
	}
	return false
}

// TestHTTPWithoutPprofAndStartContext: profiles are not served unless asked
// for, and the end of the context given to Start does not stop the
// endpoint; Close does, and frees its port.
func TestHTTPWithoutPprofAndStartContext(t *testing.T) {
	leakCheck(t)
	b, err := New(Options{Listeners: []string{"tcp://127.0.0.1:0"}, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = b.Start(ctx)
	cancel()
	t.Cleanup(func() { stopBroker(t, b) })
	if err != nil {
		t.Fatal(err)
	}
	haddr := b.HTTPAddr()
	base := "http://" + haddr
	if code, _ := httpGet(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without pprof = %d, want 404", code)
	}
	if code, body := httpGet(t, base+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics after the start context ended = %d", code)
	} else {
		parseProm(t, body)
	}
	stopBroker(t, b)
	// The port is free again once Close returns.
	startBroker(t, Options{HTTPAddr: haddr})
}
