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
// counted, which mochi handles before acknowledging), the JSON API, health
// and pprof.
func TestHTTPEndpoint(t *testing.T) {
	leakCheck(t)
	pub, sub := mosquittotest.RequireClients(t)
	m := newMetricsHook()
	srv, addr, _ := startMochi(t, m)
	ha, stopHTTP, err := serveHTTP(context.Background(), "127.0.0.1:0", srv, m, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stopHTTP(context.Background()) })
	base := "http://" + ha.String()

	mosq(t, pub, addr, "-q", "1", "-r", "-t", "m/a", "-m", "hello")  // 5 bytes
	mosq(t, pub, addr, "-q", "2", "-r", "-t", "m/b", "-m", "world!") // 6 bytes
	mosq(t, sub, addr, "-q", "2", "-t", "m/#", "-C", "2", "-W", "10")
	mosq(t, sub, addr, "-c", "-i", "watcher", "-q", "1", "-t", "w/#", "-E")
	m.authFailed()
	m.authFailed()

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
	var clients []apiClient
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
	var subs []apiSubscription
	if err := json.Unmarshal([]byte(body), &subs); err != nil {
		t.Fatalf("/api/subscriptions: %v\n%s", err, body)
	}
	if !containsSub(subs, apiSubscription{Client: "watcher", Filter: "w/#", Qos: 1}) {
		t.Errorf("/api/subscriptions lacks watcher w/# qos 1:\n%s", body)
	}

	if code, body = httpGet(t, base+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ = %d", code)
	}
	if code, _ = httpGet(t, base+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}

	if err := stopHTTP(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if _, err := c.Get(base + "/healthz"); err == nil {
		t.Error("endpoint still answers after shutdown")
	}
}

func containsSub(subs []apiSubscription, want apiSubscription) bool {
	for _, s := range subs {
		if s == want {
			return true
		}
	}
	return false
}

// TestHTTPWithoutPprofAndStartContext: profiles are not served unless asked
// for, and the start-up context ending does not stop the endpoint (the
// broker passes Start's short-lived context); the shutdown function does.
func TestHTTPWithoutPprofAndStartContext(t *testing.T) {
	leakCheck(t)
	srv, _, _ := startMochi(t)
	ctx, cancel := context.WithCancel(context.Background())
	ha, stop, err := serveHTTP(ctx, "127.0.0.1:0", srv, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://%s", ha)
	cancel()
	if code, _ := httpGet(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without pprof = %d, want 404", code)
	}
	if code, body := httpGet(t, base+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics with nil hook = %d", code)
	} else {
		parseProm(t, body)
	}
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The port is free again once stop returns.
	_, stop2, err := serveHTTP(context.Background(), ha.String(), srv, nil, false)
	if err != nil {
		t.Fatalf("address not released after stop: %v", err)
	}
	if err := stop2(context.Background()); err != nil {
		t.Fatal(err)
	}
}
