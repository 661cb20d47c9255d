package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/sub"
)

var updateSubGolden = flag.Bool("update-sub-golden", false, "rewrite testdata/sub_format.golden")

// parseSub runs `sub ARGS` with a runF that captures the Options.
func parseSub(t *testing.T, args ...string) (*sub.Options, error) {
	t.Helper()
	streams, _, _ := ui.Test(nil)
	a := &app{io: streams, getenv: func(string) string { return "" }}
	var got *sub.Options
	root := &cobra.Command{Use: "mqtk", SilenceErrors: true, SilenceUsage: true}
	root.PersistentFlags().Bool("help", false, "help")
	root.AddCommand(newSubCmd(a, func(o *sub.Options) error { got = o; return nil }))
	root.SetArgs(append([]string{"sub"}, args...))
	err := root.Execute()
	return got, err
}

func TestSubFlagsFillOptions(t *testing.T) {
	o, err := parseSub(t, "-h", "127.0.0.1", "-p", "1999", "-t", "a/+", "-t", "$share/g/b/#", "-q", "1", "-q", "2",
		"-T", "a/x", "-R", "--no-local", "--retain-as-published", "--retain-handling", "1", "--subscription-id", "5",
		"-U", "old/#", "-C", "3", "-W", "10", "--idle", "2s", "--match", `jq:.ok`, "-v", "-N", "-F", "%t %p",
		"--dump", "d", "--stats", "--no-reconnect")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(o.Topics) != "[a/+ $share/g/b/#]" || fmt.Sprint(o.QoS) != "[1 2]" || fmt.Sprint(o.FilterOut) != "[a/x]" ||
		!o.NoRetained || !o.NoLocal || !o.RetainAsPublished || o.RetainHandling != 1 || o.SubscriptionID != 5 ||
		fmt.Sprint(o.Unsubscribe) != "[old/#]" || o.Count != 3 || o.Timeout != 10*time.Second || o.Idle != 2*time.Second ||
		o.Match == nil || !o.Verbose || !o.NoEOL || o.Format == nil || o.DumpDir != "d" || !o.Stats || o.Reconnect ||
		o.Conn.Port != 1999 || o.Dial == nil {
		t.Errorf("options: %+v", o)
	}
	// mosquitto_sub takes whole seconds; a fraction is accepted too.
	o, err = parseSub(t, "-t", "a", "-W", "0.25", "--idle", "1.5")
	if err != nil || o.Timeout != 250*time.Millisecond || o.Idle != 1500*time.Millisecond {
		t.Errorf("-W 0.25 --idle 1.5: %v, timeout %v, idle %v", err, o.Timeout, o.Idle)
	}
	o, err = parseSub(t, "-L", "mqtt://127.0.0.1:1884/from/url", "-E", "--retained-only", "--remove-retained", "--dry-run", "--output", "jsonl")
	if err != nil || fmt.Sprint(o.Topics) != "[from/url]" || !o.ExitAfterSuback || !o.RetainedOnly || !o.RemoveRetained || !o.DryRun || o.Output != "jsonl" {
		t.Errorf("-L topic and the rest: %v %+v", err, o)
	}
}

func TestSubUsageErrorsExit2(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "no topic"},
		{[]string{"-t", "a/#/b"}, "# must stand alone"},
		{[]string{"-t", "a", "-q", "3"}, "use 0, 1 or 2"},
		{[]string{"-t", "a", "-t", "b", "-q", "1", "-q", "1", "-q", "1"}, "3 -q values for 2 topics"},
		{[]string{"-t", "a", "-V", "311", "--no-local"}, "--no-local needs MQTT 5"},
		{[]string{"-t", "a", "--retain-handling", "3"}, "out of range"},
		{[]string{"-t", "a", "--match", "status"}, "start it with re:"},
		{[]string{"-t", "a", "--match", "jq:.["}, "jq:"},
		{[]string{"-t", "a", "-F", "%z"}, "invalid format specifier 'z'"},
		{[]string{"-t", "a", "-F", "%t", "--output", "jsonl"}, "exclude each other"},
		{[]string{"-t", "a", "--output", "xml"}, "--output \"xml\""},
		{[]string{"-t", "a", "-W", "soon"}, "--timeout"},
		{[]string{"-t", "a", "-W", "99999999999999"}, "--timeout 99999999999999 is too long"},
		{[]string{"-t", "a", "--idle", "1e300"}, "--idle 1e300 is too long"},
		{[]string{"-t", "a", "-W", "0.0000000001"}, "more than zero"},
		{[]string{"-t", "a", "-C", "0"}, "at least 1"},
		{[]string{"-t", "a", "-R", "--retained-only"}, "exclude each other"},
		{[]string{"-t", "a", "--dry-run"}, "only applies to --remove-retained"},
		{[]string{"-t", "a", "--watch"}, "--watch needs a terminal"},
	}
	for _, c := range cases {
		streams, out, errb := ui.Test(nil)
		code := execute(context.Background(), streams, append([]string{"sub", "-p", "1"}, c.args...), func(string) string { return "" })
		if code != 2 || !strings.Contains(errb.String(), c.want) || out.Len() != 0 {
			t.Errorf("sub %v: exit %d, stderr %q; want exit 2 mentioning %q", c.args, code, errb.String(), c.want)
		}
	}
}

func TestSubHelpListsEndingsAndExitCodes(t *testing.T) {
	streams, out, _ := ui.Test(nil)
	if code := execute(context.Background(), streams, []string{"sub", "--help"}, func(string) string { return "" }); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"-C/--count N", "exit 27", "exit 7", "--idle", "--retained-only", "exits 6", "re:REGEX", "jq:EXPR"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

// runSubCmd runs the command tree in-process and returns exit code, stdout, stderr.
func runSubCmd(ctx context.Context, args ...string) (int, string, string) {
	streams, out, errb := ui.Test(nil)
	code := execute(ctx, streams, args, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func TestSubAgainstOwnBrokerAndSubackRefusedExit6(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte("topic readwrite open/#\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}, AllowAnonymous: true, ACLFile: acl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	url := b.Listeners()[0].URL()
	// What the ACL allows works against mqtk's own broker, both versions.
	if code, _, stderr := runSubCmd(ctx, "pub", "-L", url, "-r", "-q", "1", "-t", "open/x", "-m", "allowed"); code != 0 {
		t.Fatalf("pub: exit %d: %s", code, stderr)
	}
	for _, v := range []string{"5", "311"} {
		code, out, stderr := runSubCmd(ctx, "sub", "-L", url, "-V", v, "-t", "open/#", "-C", "1", "-W", "10", "-v")
		if code != 0 || out != "open/x allowed\n" {
			t.Errorf("-V %s against mqtk broker: exit %d, stdout %q, stderr %s", v, code, out, stderr)
		}
	}
	for _, v := range []string{"5", "311"} {
		code, _, stderr := runSubCmd(ctx, "sub", "-L", url, "-V", v, "-t", "open/x", "-t", "secret/#", "-W", "5")
		if code != 6 || !strings.Contains(stderr, `subscribe to "secret/#"`) || !strings.Contains(stderr, "refused by the broker") {
			t.Errorf("-V %s: exit %d, stderr:\n%s\nwant exit 6 naming secret/# and the reason", v, code, stderr)
		}
	}
}

// formatMessages publishes a fixed set of retained messages, with MQTT 5
// properties where they can be shown without depending on the clock.
func formatMessages(t *testing.T, port int) int {
	t.Helper()
	pub, _ := mosquittotest.RequireClients(t)
	msgs := [][]string{
		{"-t", "fmt/a", "-m", "hello world"},
		{"-t", "fmt/b/deep/topic", "-m", `{"temp":21.5,"ok":true}`, "-q", "1",
			"-D", "publish", "content-type", "application/json", "-D", "publish", "user-property", "unit", "C",
			"-D", "publish", "user-property", "src", "lab 1", "-D", "publish", "response-topic", "fmt/reply",
			"-D", "publish", "correlation-data", "c0rr", "-D", "publish", "payload-format-indicator", "1"},
		{"-t", "fmt/c", "-m", "tab\there", "-q", "2"},
		{"-t", "fmt/long/topic/name/that/is/wide", "-m", "x"},
		{"-t", "fmt/e", "-m", "  spaced  out  "},
		{"-t", "fmt/ü", "-m", "ünïcödé"},
	}
	for _, m := range msgs {
		args := append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(port), "-V", "mqttv5", "-r"}, m...)
		if out, err := exec.Command(pub, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
		}
	}
	return len(msgs)
}

// TestSubFormatGolden pins -F output for a fixed message set and checks,
// in the same run, that mosquitto_sub prints the same bytes for it.
func TestSubFormatGolden(t *testing.T) {
	_, msub := mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	n := formatMessages(t, b.Port())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	formats := []string{
		`%t|%p|%l|%q|%r`,
		`%x %X`,
		`[%20t][%-20t][%4.4t][%010l][%-6l|][%8p]`,
		`%C|%D|%F|%P|%R`,
		`[%12C][%-12R][%3.3C]`,
		`%t\t%p\e[0m\\ 100%%`,
		`%t\0%p`,
		`%j`,
		`%J`,
	}
	// The tst field of %j carries the receive time: mask it on both sides.
	tst := regexp.MustCompile(`"tst":"[^"]*"`)
	var golden bytes.Buffer
	for _, f := range formats {
		cmd := exec.CommandContext(ctx, msub, "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-V", "mqttv5", "-q", "2",
			"-t", "fmt/#", "-C", fmt.Sprint(n), "-F", f)
		var mstderr bytes.Buffer
		cmd.Stderr = &mstderr
		want, err := cmd.Output()
		if err != nil {
			t.Fatalf("mosquitto_sub -F %q: %v\n%s", f, err, mstderr.String())
		}
		code, got, stderr := runSubCmd(ctx, "sub", "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-q", "2", "-t", "fmt/#", "-C", fmt.Sprint(n), "-F", f)
		if code != 0 {
			t.Fatalf("mqtk sub -F %q: exit %d\n%s", f, code, stderr)
		}
		// Delivery order of retained messages differs between clients (the
		// broker queues QoS 2 ones differently), and %j keeps properties in
		// wire order, which mqtk does not keep: compare lines as sets, and
		// JSON lines as JSON.
		w := sortedLines(tst.ReplaceAllString(string(want), `"tst":"T"`))
		g := sortedLines(tst.ReplaceAllString(got, `"tst":"T"`))
		if strings.Contains(f, "%j") || strings.Contains(f, "%J") {
			if !sameJSONLines(t, w, g) {
				t.Errorf("-F %q differs from mosquitto_sub:\nmosquitto_sub: %q\nmqtk sub:      %q", f, w, g)
			}
		} else if w != g {
			t.Errorf("-F %q differs from mosquitto_sub:\nmosquitto_sub: %q\nmqtk sub:      %q", f, w, g)
		}
		if f == `%J` && strings.Count(stderr, "not valid JSON") != strings.Count(mstderr.String(), "not valid JSON") {
			t.Errorf("%%J warnings differ: mqtk %q, mosquitto_sub %q", stderr, mstderr.String())
		}
		fmt.Fprintf(&golden, "== -F %s\n%s\n", f, g)
	}
	path := filepath.Join("testdata", "sub_format.golden")
	if *updateSubGolden {
		if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-sub-golden to create it)", err)
	}
	if !bytes.Equal(want, golden.Bytes()) {
		t.Errorf("-F output differs from %s (run with -update-sub-golden if the change is intended):\n%s", path, golden.String())
	}
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func sameJSONLines(t *testing.T, a, b string) bool {
	t.Helper()
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(al) != len(bl) {
		return false
	}
	for i := range al {
		if al[i] == bl[i] {
			continue
		}
		var av, bv any
		if json.Unmarshal([]byte(al[i]), &av) != nil || json.Unmarshal([]byte(bl[i]), &bv) != nil || !reflect.DeepEqual(av, bv) {
			return false
		}
	}
	return true
}

// subSyncBuffer is a bytes.Buffer safe to read while another goroutine writes.
type subSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *subSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *subSyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// subStartRecorder runs `mqtk sub ARGS` in the background, with stdout in a
// buffer the test can watch.
func subStartRecorder(ctx context.Context, args ...string) (*subSyncBuffer, *subSyncBuffer, chan int) {
	out, errb := &subSyncBuffer{}, &subSyncBuffer{}
	env := func(string) string { return "" }
	streams := &ui.Streams{In: strings.NewReader(""), Out: ui.NewStream(out, false, ui.ColorNever, env),
		Err: ui.NewStream(errb, false, ui.ColorNever, env), Getenv: env}
	done := make(chan int, 1)
	go func() { done <- execute(ctx, streams, args, env) }()
	return out, errb, done
}

func subWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// subNormalizeRecords drops the receive time and packet id (both assigned
// per delivery), drops the readiness markers, and sorts by topic.
func subNormalizeRecords(t *testing.T, jsonl string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		var r mqttconn.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad record %q: %v", line, err)
		}
		if strings.HasPrefix(r.Topic, "rt/ready") {
			continue
		}
		r.Time, r.PacketID = "", 0
		b, _ := json.Marshal(r)
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out
}

// TestSubJSONLRoundTrip records 1,000 mixed messages with --output jsonl,
// replays them with `mqtk pub --replay` into a second broker, records
// again, and compares the two recordings.
func TestSubJSONLRoundTrip(t *testing.T) {
	mosquittotest.RequireClients(t)
	a := mosquittotest.Start(t, mosquittotest.Options{})
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const n = 1000
	recArgs := func(port, count int) []string {
		return []string{"sub", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-t", "rt/#", "-q", "2", "--retain-as-published",
			"--subscription-id", "7", "--output", "jsonl", "-C", fmt.Sprint(count), "-W", "100s"}
	}
	ready := func(port int, name string) {
		if out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-r", "-t", "rt/ready/"+name, "-m", "ready").CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}

	// Recording 1: a retained marker tells us the recorder is subscribed.
	ready(a.Port(), "a")
	out1, err1, done1 := subStartRecorder(ctx, recArgs(a.Port(), n+1)...)
	subWaitFor(t, "recorder 1 to subscribe", func() bool { return strings.Contains(out1.String(), "rt/ready/a") })
	cfg := mqttconn.Default()
	cfg.Host, cfg.Port = "127.0.0.1", a.Port()
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	c, err := mqttconn.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		m := &mqttconn.Message{Topic: fmt.Sprintf("rt/%d/%04d", i%17, i), QoS: byte(i % 3), Retain: i%10 == 0}
		switch i % 4 {
		case 0:
			m.Payload = []byte(fmt.Sprintf(`{"i":%d,"ok":true}`, i))
			m.ContentType = "application/json"
			pf := byte(1)
			m.PayloadFormat = &pf
		case 1:
			m.Payload = []byte{byte(i), 0xff, 0xfe, 0x00, byte(i >> 8)}
			m.CorrelationData = []byte{0x00, byte(i), 0xff}
			m.ResponseTopic = fmt.Sprintf("rt-reply/%d", i)
		case 2:
			m.Payload = []byte(fmt.Sprintf("text %d with ünïcode", i))
			m.UserProperties = []mqttconn.UserProperty{{Key: "i", Value: fmt.Sprint(i)}, {Key: "i", Value: "dup"}, {Key: "k", Value: "v"}}
		case 3:
			m.Payload = nil
		}
		if err := c.Publish(ctx, m); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	_ = c.Disconnect(ctx)
	if code := <-done1; code != 0 {
		t.Fatalf("recorder 1 exit %d: %s", code, err1.String())
	}
	file := filepath.Join(t.TempDir(), "rec.jsonl")
	if err := os.WriteFile(file, []byte(out1.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// Recording 2, from the replay into broker b.
	ready(b.Port(), "b")
	out2, err2, done2 := subStartRecorder(ctx, recArgs(b.Port(), n+2)...)
	subWaitFor(t, "recorder 2 to subscribe", func() bool { return strings.Contains(out2.String(), "rt/ready/b") })
	if code, _, stderr := runSubCmd(ctx, "pub", "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "--replay", file, "--speed", "max"); code != 0 {
		t.Fatalf("pub --replay exit %d: %s", code, stderr)
	}
	if code := <-done2; code != 0 {
		t.Fatalf("recorder 2 exit %d: %s", code, err2.String())
	}
	r1, r2 := subNormalizeRecords(t, out1.String()), subNormalizeRecords(t, out2.String())
	if len(r1) != n || len(r2) != n {
		t.Fatalf("recorded %d and %d messages, want %d each", len(r1), len(r2), n)
	}
	diffs := 0
	for i := range r1 {
		if r1[i] != r2[i] {
			if diffs < 5 {
				t.Errorf("record differs after replay:\nfirst:  %s\nsecond: %s", r1[i], r2[i])
			}
			diffs++
		}
	}
	if diffs > 0 {
		t.Errorf("%d of %d records differ", diffs, n)
	}
}
