package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/check"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/ui"
)

// TestCheckFlags checks flag → Options through the runF seam, and the
// usage errors (exit 2).
func TestCheckFlags(t *testing.T) {
	run := func(args ...string) (*check.Options, error) {
		streams, _, _ := ui.Test(nil)
		var got *check.Options
		root := &cobra.Command{Use: "mqtk", SilenceErrors: true, SilenceUsage: true}
		root.PersistentFlags().Bool("help", false, "help") // -h is the host, as on the real root
		root.AddCommand(newCheckCmd(&app{io: streams, getenv: func(string) string { return "" }}, func(o *check.Options) error { got = o; return nil }))
		root.SetArgs(append([]string{"check"}, args...))
		err := root.Execute()
		return got, err
	}
	o, err := run("-L", "mqtt://example:1884")
	if err != nil || o == nil {
		t.Fatalf("defaults: %v", err)
	}
	if !strings.HasPrefix(o.Prefix, "mqtk-check/") || o.Timeout != 30*time.Second || o.MaxPayload != check.DefaultMaxPayload || o.JSON || o.Compare != nil {
		t.Errorf("defaults: %+v", o)
	}
	if o.Conn.Addr() != "example:1884" {
		t.Errorf("address %s", o.Conn.Addr())
	}
	if o.Dial == nil || o.DialConn == nil {
		t.Errorf("the probes must reach the broker through the shared layer: Dial %v, DialConn %v", o.Dial != nil, o.DialConn != nil)
	}
	o, err = run("-h", "b1", "-p", "1999", "--prefix", "ci/probe", "-W", "2m", "--max-payload", "64KiB", "-F", "json",
		"--compare", "mqtt://b2:1883", "--expect", "need.yaml", "-V", "311")
	if err != nil {
		t.Fatal(err)
	}
	if o.Prefix != "ci/probe" || o.Timeout != 2*time.Minute || o.MaxPayload != 65536 || !o.JSON || o.Expect != "need.yaml" ||
		o.Compare == nil || o.Compare.Addr() != "b2:1883" || o.Conn.Addr() != "b1:1999" || o.Conn.Version != mqttconn.V311 {
		t.Errorf("flags: %+v compare %+v", o, o.Compare)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-F", "csv"}, "formats are text and json"},
		{[]string{"--max-payload", "0"}, "give a size"},
		{[]string{"--max-payload", "1GiB"}, "give a size"},
		{[]string{"--prefix", "a/#"}, "wildcard"},
		{[]string{"--prefix", ""}, "--prefix is empty"},
		{[]string{"-W", "0"}, "--timeout must be more than zero"},
		{[]string{"extra"}, "unknown command"},
	} {
		code, _, stderr := runMqtk(t, "", append([]string{"check", "-L", "mqtt://127.0.0.1:1"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// TestCheckCommand runs the whole command against mqtk's broker: JSON
// output, an expectations file met (exit 0) and not met (exit 7), and a
// broker out of reach (exit 3).
func TestCheckCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := startOwnBroker(t, ctx, "")
	url := fmt.Sprintf("mqtt://127.0.0.1:%d", port)
	code, out, stderr := runMqtk(t, "", "check", "-L", url, "-F", "json", "--max-payload", "4KiB", "--prefix", "cmdtest")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var r check.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for id, want := range map[string]string{"protocol.5": "yes", "retained": "yes", "wildcards": "yes", "topic_alias_from_broker": "yes"} {
		if row := r.Row(id); row == nil || row.Verdict != want {
			t.Errorf("%s: %+v, want %s", id, row, want)
		}
	}
	if row := r.Row("max_payload"); row == nil || row.Number == nil || *row.Number != 4096 {
		t.Errorf("max_payload: %+v, want the 4096-byte bound", row)
	}

	dir := t.TempDir()
	met := filepath.Join(dir, "met.yaml")
	unmet := filepath.Join(dir, "unmet.json")
	if err := os.WriteFile(met, []byte("protocol.5: yes\nretained: yes\nconnack.maximum_qos: 2\nmax_payload: \">= 1024\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unmet, []byte(`{"topic_alias_from_broker": "no", "connack.maximum_packet_size": "<= 1000"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runMqtk(t, "", "check", "-L", url, "--max-payload", "1KiB", "--expect", met); code != 0 {
		t.Errorf("--expect met: exit %d\n%s", code, stderr)
	}
	code, out, stderr = runMqtk(t, "", "check", "-L", url, "--max-payload", "1KiB", "--expect", unmet)
	if code != 7 {
		t.Errorf("--expect unmet: exit %d, want 7\n%s", code, stderr)
	}
	for _, s := range []string{"topic_alias_from_broker: want no, got yes", "connack.maximum_packet_size: want <= 1000", "2 of 2 expectations not met"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
	if !strings.Contains(out, "MQTT 5") || !strings.Contains(out, "largest payload accepted") {
		t.Errorf("the table is printed before the verdict on expectations:\n%s", out)
	}

	closed := mosquittotest.FreePort(t)
	if code, _, stderr := runMqtk(t, "", "check", "-L", fmt.Sprintf("mqtt://127.0.0.1:%d", closed), "--connect-timeout", "2s"); code != 3 {
		t.Errorf("nothing listening: exit %d, want 3\n%s", code, stderr)
	}
}

// TestCheckCompare prints mosquitto and mqtk's broker side by side and
// marks the rows where they differ.
func TestCheckCompare(t *testing.T) {
	mosquittotest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	own := fmt.Sprintf("mqtt://127.0.0.1:%d", startOwnBroker(t, ctx, ""))
	mb := mosquittotest.Start(t, mosquittotest.Options{})
	mosq := "mqtt://" + mb.Addr(0)
	code, out, stderr := runMqtk(t, "", "check", "-L", mosq, "--compare", own, "--max-payload", "1KiB")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], mosq) || !strings.Contains(lines[0], own) {
		t.Errorf("header %q lacks the two URLs", lines[0])
	}
	var differs, same bool
	for _, l := range lines {
		if strings.Contains(l, "broker to client") {
			differs = strings.HasPrefix(l, "≠") && strings.Contains(l, "no ") && strings.Contains(l, "yes ")
		}
		if strings.Contains(l, "retained messages") {
			same = strings.HasPrefix(l, " ")
		}
	}
	if !differs || !same {
		t.Errorf("topic aliases should differ (mosquitto sends none) and retained messages agree:\n%s", out)
	}
}

// TestCheckWebSocketThroughProxy: the probes reach the broker as every
// command does, here over WebSocket through an HTTP CONNECT proxy, whose
// log shows that every connection of the check went through it.
func TestCheckWebSocketThroughProxy(t *testing.T) {
	_, own := ownBroker(t, broker.Options{Listeners: []string{"ws://127.0.0.1:0/mqtt"}})
	p := startTestProxy(t, "http", "", "")
	url := "ws://localhost:" + portOf(own["ws"]) + "/mqtt"
	code, out, stderr := runMqtk(t, "", "check", "-L", url, "--proxy", p.URL, "-F", "json", "--max-payload", "1KiB", "--prefix", "mqtk-check/wsproxy")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var r check.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for id, want := range map[string]string{"protocol.5": "yes", "retained": "yes", "wildcards": "yes", "will": "yes", "session_resumption": "yes", "tls": "n/a"} {
		if row := r.Row(id); row == nil || row.Verdict != want {
			t.Errorf("%s: %+v, want %s", id, row, want)
		}
	}
	for _, row := range r.Rows {
		if row.Verdict == check.Failed || row.Verdict == check.Skipped {
			t.Errorf("%s: %s: %s", row.ID, row.Verdict, row.Note)
		}
	}
	// One tunnel per connection: the first through the shared client,
	// then every probe's own.
	tunnels := p.Targets()
	if len(tunnels) < 2 {
		t.Errorf("the proxy carried %d connections, want the first and the probes'", len(tunnels))
	}
	for _, tg := range tunnels {
		if tg != "localhost:"+portOf(own["ws"]) {
			t.Errorf("a tunnel to %s, want every one to the broker", tg)
		}
	}
}
