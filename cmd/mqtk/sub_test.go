package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/sub"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// parseSub runs `sub ARGS` with a runF that captures the Options.
func parseSub(t *testing.T, args ...string) (*sub.Options, error) {
	t.Helper()
	streams, _, _ := ui.Test(nil)
	a := &app{io: streams, getenv: func(string) string { return "" }}
	var got *sub.Options
	root := &cobra.Command{Use: "mqtk", SilenceErrors: true, SilenceUsage: true}
	root.PersistentFlags().Bool("help", false, "help")
	root.AddCommand(newSubCmd(a, func(o *sub.Options) error { got = o; return nil }))
	root.SetArgs(withProperties(root, append([]string{"sub"}, args...)))
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
	o, err = parseSub(t, "-L", "mqtt://127.0.0.1:1884/from/url", "--retained-only", "--remove-retained", "--dry-run", "--output", "jsonl")
	if err != nil || fmt.Sprint(o.Topics) != "[from/url]" || !o.RetainedOnly || !o.RemoveRetained || !o.DryRun || o.Output != "jsonl" {
		t.Errorf("-L topic and the rest: %v %+v", err, o)
	}
	if o, err = parseSub(t, "-t", "a", "-E", "-c", "-i", "x"); err != nil || !o.ExitAfterSuback {
		t.Errorf("-E: %v %+v", err, o)
	}
	if o, err = parseSub(t, "-t", "a", "--output", "styled", "-v", "-N"); err != nil || o.Output != "styled" {
		t.Errorf("--output styled: %v %+v", err, o)
	}
}

func TestSubUsageErrorsExit2(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "no topic"},
		{[]string{"-t", "a/#/b"}, "# must be the last level (a/#)"},
		{[]string{"-t", "a/\xff"}, "not valid UTF-8"},
		{[]string{"-t", "a", "-q", "3"}, "-q \"3\" is not a QoS\nhint: use 0, 1 or 2"},
		{[]string{"-t", "a", "-t", "b", "-q", "1", "-q", "1", "-q", "1"}, "3 -q values for 2 topics"},
		{[]string{"-t", "a", "-V", "311", "--no-local"}, "--no-local needs MQTT 5"},
		{[]string{"-t", "a", "--retain-handling", "3"}, "unknown --retain-handling \"3\"\nhint: use always (0, send retained messages), new (1"},
		{[]string{"-t", "a", "--retain-handling", "sometimes"}, "--retain-handling \"sometimes\""},
		{[]string{"-t", "a", "--random-filter", "0"}, "--random-filter 0 out of range\nhint: give a percentage from 0.1 to 100"},
		{[]string{"-t", "a", "--random-filter", "101"}, "from 0.1 to 100"},
		{[]string{"-t", "a", "--random-filter", "50", "--remove-retained"}, "would clear only the messages it happens to pick\nhint: drop one of them"},
		{[]string{"-t", "a", "--message-rate", "-v"}, "--message-rate prints only how many messages arrive each second, so --verbose does not apply\nhint: drop one of them"},
		{[]string{"-t", "a", "--message-rate", "-F", "%t"}, "so --format does not apply"},
		{[]string{"-t", "a", "--message-rate", "-C", "3"}, "so --count does not apply"},
		{[]string{"-t", "a", "-F", "%.0:x"}, "needs a group size N of at least 1"},
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
		{[]string{"-t", "a", "--match", ""}, "--match is empty\nhint: give re:REGEX or jq:EXPR"},
		{[]string{"-t", "a", "--match", "re:("}, "hint: re: takes Go (RE2) syntax: escape ( )"},
		{[]string{"-t", "a", "--match", "jq:.["}, "hint: jq: takes one jq expression"},
		{[]string{"-t", "a", "-E", "--match", "re:x"}, "so --match never applies"},
		{[]string{"-t", "a", "-E", "--retained-only"}, "so --retained-only never applies"},
		{[]string{"-t", "a", "-E", "--idle", "5"}, "so --idle never applies"},
		{[]string{"-t", "a", "--output", "jsonl", "-v"}, "-v has no effect with --output jsonl\nhint: drop -v"},
		{[]string{"-t", "a", "--output", "json", "-v"}, "-v has no effect with --output json"},
		{[]string{"-t", "a", "--output", "raw", "-v"}, "-v has no effect with --output raw"},
		{[]string{"-t", "a", "--output", "jsonl", "-N"}, "-N has no effect with --output jsonl"},
		{[]string{"-t", "a", "-C", "abc"}, "flag: not a whole number\nhint: give a whole number of messages, such as -C 10"},
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
	for _, want := range []string{"-C/--count N", "exit 27", "exit 7", "--idle", "--retained-only", "exits 6", "re:REGEX", "jq:EXPR",
		"or styled (the terminal view, forced even into a", "-C, --count N"} {
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
		{"-t", "fmt/c", "-m", "tab\there", "-q", "2", "-D", "publish", "message-expiry-interval", "86400"},
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
// in the same run, that mosquitto_sub prints the same bytes for it, with
// mosquitto and with mqtk's own broker in between.
func TestSubFormatGolden(t *testing.T) {
	_, msub := mosquittotest.RequireClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type brokerUnderTest struct {
		name string
		port int
	}
	mb := mosquittotest.Start(t, mosquittotest.Options{})
	brokers := []brokerUnderTest{{"mosquitto", mb.Port()}, {"mqtk broker", startOwnBroker(t, ctx, "")}}
	// id sets the same subscription identifier in both clients, for %S.
	id := []string{"-D", "subscribe", "subscription-identifier", "7"}
	formats := []struct {
		f          string
		mosq, mqtk []string
	}{
		{`%t|%p|%l|%q|%r`, nil, nil},
		{`%x %X`, nil, nil},
		{`[%20t][%-20t][%4.4t][%010l][%-6l|][%8p]`, nil, nil},
		{`%C|%D|%F|%P|%R`, nil, nil},
		{`[%12C][%-12R][%3.3C]`, nil, nil},
		{`%t\t%p\e[0m\\ 100%%`, nil, nil},
		{`%t\0%p`, nil, nil},
		{`%j`, nil, nil},
		{`%J`, nil, nil},
		// Message ids, alias, subscription ids and every time conversion;
		// what depends on the clock or on the message's age is between
		// < and >, where only its shape is compared (see maskTime).
		{`%t|{%m}[{%-6m}][{%05m}]|%A[%3A]|%S[%-3S]|<%I>|<%U>|<%E><%-8E>|<@Y-@m-@dT@H:@M:@S.@N @z @s @a @b @j @u @w @y @H@I@p @D @F @T @R @r>@@ @%`,
			id, []string{"--subscription-id", "7"}},
	}
	for _, bt := range brokers {
		t.Run(bt.name, func(t *testing.T) {
			n := formatMessages(t, bt.port)
			var golden bytes.Buffer
			for _, f := range formats {
				args := append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(bt.port), "-V", "mqttv5", "-q", "2",
					"-t", "fmt/#", "-C", fmt.Sprint(n), "-F", f.f}, f.mosq...)
				cmd := exec.CommandContext(ctx, msub, args...)
				var mstderr bytes.Buffer
				cmd.Stderr = &mstderr
				want, err := cmd.Output()
				if err != nil {
					t.Fatalf("mosquitto_sub -F %q: %v\n%s", f.f, err, mstderr.String())
				}
				code, got, stderr := runSubCmd(ctx, append([]string{"sub", "-h", "127.0.0.1", "-p", fmt.Sprint(bt.port), "-q", "2", "-t", "fmt/#",
					"-C", fmt.Sprint(n), "-F", f.f}, f.mqtk...)...)
				if code != 0 {
					t.Fatalf("mqtk sub -F %q: exit %d\n%s", f.f, code, stderr)
				}
				// Delivery order of retained messages differs between clients (the
				// broker queues QoS 2 ones differently), and %j keeps properties in
				// wire order, which mqtk does not keep: compare lines as sets, and
				// JSON lines as JSON.
				w := sortedLines(maskTime(string(want)))
				g := sortedLines(maskTime(got))
				if bt.name != "mosquitto" {
					w, g = maskMid(w), maskMid(g)
				}
				if strings.Contains(f.f, "%j") || strings.Contains(f.f, "%J") {
					if !sameJSONLines(t, w, g) {
						t.Errorf("-F %q differs from mosquitto_sub:\nmosquitto_sub: %q\nmqtk sub:      %q", f.f, w, g)
					}
				} else if w != g {
					t.Errorf("-F %q differs from mosquitto_sub:\nmosquitto_sub: %q\nmqtk sub:      %q", f.f, w, g)
				}
				if f.f == `%J` && strings.Count(stderr, "not valid JSON") != strings.Count(mstderr.String(), "not valid JSON") {
					t.Errorf("%%J warnings differ: mqtk %q, mosquitto_sub %q", stderr, mstderr.String())
				}
				fmt.Fprintf(&golden, "== -F %s\n%s\n", f.f, g)
			}
			path := filepath.Join("testdata", "sub_format.golden")
			if *update && bt.name == "mosquitto" {
				if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if bt.name != "mosquitto" {
				want = []byte(maskMid(string(want)))
			}
			if !bytes.Equal(want, golden.Bytes()) {
				t.Errorf("-F output through %s differs from %s (run with -update if the change is intended):\n%s", bt.name, path, golden.String())
			}
		})
	}
}

// maskTime keeps the shape of what depends on the clock and hides its
// value: the tst of %j, the remaining message expiry in %j, and, between
// < and >, every digit (as 0), letter (as x) and zone offset sign (as ~).
func maskTime(s string) string {
	s = regexp.MustCompile(`"tst":"[^"]*"`).ReplaceAllString(s, `"tst":"T"`)
	s = regexp.MustCompile(`"message-expiry-interval":\d+`).ReplaceAllString(s, `"message-expiry-interval":0`)
	return regexp.MustCompile(`<[^<>\n]*>`).ReplaceAllStringFunc(s, func(m string) string {
		// The zone offset's sign depends on where the test runs.
		m = regexp.MustCompile(`[+-](\d{4})`).ReplaceAllString(m, "~$1")
		return strings.Map(func(r rune) rune {
			switch {
			case r >= '0' && r <= '9':
				return '0'
			case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
				return 'x'
			}
			return r
		}, m)
	})
}

// maskMid hides packet ids (%m between { and }, and the mid of %j): a
// broker numbers its PUBLISHes in the order it sends them, and the order
// of retained messages on different topics is the broker's choice. mqtk's
// broker, unlike mosquitto, does not keep one order from one subscriber to
// the next, so the ids of its QoS 1 and 2 messages differ between clients.
func maskMid(s string) string {
	s = regexp.MustCompile(`"mid":\d+`).ReplaceAllString(s, `"mid":0`)
	return regexp.MustCompile(`\{[ 0-9]*\}`).ReplaceAllStringFunc(s, func(m string) string {
		return regexp.MustCompile(`[0-9]`).ReplaceAllString(m, "M")
	})
}

// startOwnBroker starts mqtk's broker on a free loopback port, with an ACL
// file when acl is not empty, and returns the port.
func startOwnBroker(t *testing.T, _ context.Context, acl string) int {
	t.Helper()
	o := broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}, AllowAnonymous: true}
	if acl != "" {
		o.ACLFile = filepath.Join(t.TempDir(), "acl")
		if err := os.WriteFile(o.ACLFile, []byte(acl), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := brokertest.Own(t, o)
	_, port, err := net.SplitHostPort(b.Listeners()[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
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

// subStartRecorder runs `mqtk sub ARGS` in the background, with stdout in a
// buffer the test can watch.
func subStartRecorder(ctx context.Context, args ...string) (*ui.SyncBuffer, *ui.SyncBuffer, chan int) {
	out, errb := &ui.SyncBuffer{}, &ui.SyncBuffer{}
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

// The jsonl record through mqtk's own broker, both protocol versions, with
// messages from mosquitto_pub (MQTT 5 properties, binary) and mqtk pub.
func TestSubRecordsThroughOwnBroker(t *testing.T) {
	pubBin, _ := mosquittotest.RequireClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := startOwnBroker(t, ctx, "")
	url := fmt.Sprintf("mqtt://127.0.0.1:%d", port)
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte{0xff, 0x00, 0x01}, 0o644); err != nil {
		t.Fatal(err)
	}
	mpub := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, pubBin, append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(port)}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
		}
	}
	for _, v := range []string{"5", "311"} {
		t.Run("v"+v, func(t *testing.T) {
			prefix := "orec/" + v + "/"
			// A retained marker tells when the recorder is subscribed.
			mpub("-r", "-t", prefix+"ready", "-m", "ready")
			args := []string{"sub", "-L", url, "-V", v, "-t", prefix + "#", "-q", "1", "--output", "jsonl", "-C", "4", "-W", "30"}
			if v == "5" {
				args = append(args, "--subscription-id", "9")
			}
			out, errb, done := subStartRecorder(ctx, args...)
			subWaitFor(t, "the recorder to subscribe", func() bool { return strings.Contains(out.String(), prefix+"ready") })
			mpub("-V", "mqttv5", "-q", "1", "-t", prefix+"text", "-m", "héllo",
				"-D", "publish", "user-property", "k", "v", "-D", "publish", "content-type", "text/plain",
				"-D", "publish", "response-topic", "rec/reply", "-D", "publish", "correlation-data", "abc",
				"-D", "publish", "payload-format-indicator", "1")
			mpub("-q", "1", "-t", prefix+"bin", "-f", bin)
			if code, _, stderr := runSubCmd(ctx, "pub", "-L", url, "-q", "1", "-t", prefix+"mqtk", "-m", "from mqtk pub"); code != 0 {
				t.Fatalf("mqtk pub: exit %d: %s", code, stderr)
			}
			if code := <-done; code != 0 {
				t.Fatalf("recorder: exit %d: %s", code, errb.String())
			}
			recs := map[string]mqttconn.Record{}
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var r mqttconn.Record
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("bad record %q: %v", line, err)
				}
				if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$`).MatchString(r.Time) {
					t.Errorf("time %q: want nine fraction digits", r.Time)
				}
				recs[strings.TrimPrefix(r.Topic, prefix)] = r
			}
			text, binr, mq := recs["text"], recs["bin"], recs["mqtk"]
			if text.Payload != "héllo" || text.PayloadEncoding != "utf8" || text.QoS != 1 || text.PacketID == 0 {
				t.Errorf("text record: %+v", text)
			}
			if binr.Payload != "/wAB" || binr.PayloadEncoding != "base64" {
				t.Errorf("binary record: %+v", binr)
			}
			if mq.Payload != "from mqtk pub" || mq.QoS != 1 {
				t.Errorf("record of mqtk pub's message: %+v", mq)
			}
			p := text.Properties
			if v != "5" {
				if p != nil {
					t.Errorf("MQTT 3.1.1 has no properties, the record shows some: %+v", p)
				}
				return
			}
			if p == nil || p.ContentType != "text/plain" || p.ResponseTopic != "rec/reply" || p.CorrelationData != "YWJj" ||
				p.PayloadFormat == nil || *p.PayloadFormat != 1 {
				t.Errorf("text record lost a property: %s", out.String())
			}
			// These two are what a broker most easily drops: user
			// properties must be forwarded unchanged [MQTT-3.3.2-17], and a
			// subscription identifier must come with every message its
			// subscription matched [MQTT-3.3.4-3].
			if p == nil || len(p.UserProperties) != 1 || p.UserProperties[0] != (mqttconn.UserProperty{Key: "k", Value: "v"}) {
				t.Errorf("user property k=v missing through mqtk's broker: %s", out.String())
			}
			for name, r := range recs {
				if r.Properties == nil || fmt.Sprint(r.Properties.SubscriptionIDs) != "[9]" {
					t.Errorf("record of %s has no subscription id 9 through mqtk's broker: %+v", name, r.Properties)
				}
			}
		})
	}
}

// --retained-only against mqtk's own broker with an ACL that keeps mqtk
// from its sync topic: it still ends, saying why, on both versions.
func TestSubRetainedOnlyWithoutRightsOnOwnBroker(t *testing.T) {
	for _, acl := range []struct{ name, text, says string }{
		{"no rights", "topic readwrite open/#\n", "refused mqtk's sync subscription"},
		{"read only", "topic readwrite open/#\ntopic read mqtk/retained-sync/#\n", "--retained-only: mqtk's sync message"},
	} {
		t.Run(acl.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			url := fmt.Sprintf("mqtt://127.0.0.1:%d", startOwnBroker(t, ctx, acl.text))
			if code, _, stderr := runSubCmd(ctx, "pub", "-L", url, "-r", "-q", "1", "-t", "open/x", "-m", "kept"); code != 0 {
				t.Fatalf("pub: exit %d: %s", code, stderr)
			}
			for _, v := range []string{"5", "311"} {
				code, out, stderr := runSubCmd(ctx, "sub", "-L", url, "-V", v, "-t", "open/#", "--retained-only", "-v")
				if code != 0 || out != "open/x kept\n" || !strings.Contains(stderr, acl.says) {
					t.Errorf("-V %s: exit %d, stdout %q, stderr:\n%s\nwant exit 0, the retained message, and a line saying %q", v, code, out, stderr, acl.says)
				}
			}
		})
	}
}

// Piped, -F %J writes a JSON payload's bytes as they came, invalid UTF-8
// and C1 controls included, as mosquitto_sub does (it is a pipe: a program
// reads it, not a terminal).
func TestSubFormatJSONPipedKeepsBytes(t *testing.T) {
	_, msub := mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	payload := []byte("{\"a\":\"\xff\xfe\",\"b\":\"\u009b2J\"}")
	file := filepath.Join(t.TempDir(), "p")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	pubBin, _ := mosquittotest.RequireClients(t)
	if out, err := exec.CommandContext(ctx, pubBin, "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-r", "-t", "evil", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	want, err := exec.CommandContext(ctx, msub, "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-t", "evil", "-C", "1", "-F", "%J").Output()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	code, got, stderr := runSubCmd(ctx, "sub", "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-t", "evil", "-C", "1", "-F", "%J")
	if code != 0 {
		t.Fatalf("mqtk sub: exit %d: %s", code, stderr)
	}
	if !strings.HasSuffix(got, `"payload":`+string(payload)+"}\n") {
		t.Errorf("piped %%J changed the payload's bytes: %q", got)
	}
	if !bytes.Contains(want, []byte("\xff\xfe")) || !bytes.Contains(want, []byte("\u009b")) {
		t.Errorf("mosquitto_sub no longer passes the bytes through (%q): revisit what mqtk does when piped", want)
	}
	if w, g := maskTime(string(want)), maskTime(got); !sameJSONLines(t, w, g) {
		t.Errorf("-F %%J differs from mosquitto_sub:\nmosquitto_sub: %q\nmqtk sub:      %q", w, g)
	}
}

// An empty payload prints as mosquitto_sub prints it: nothing at all (not
// an empty line), "TOPIC (null)" with -v, nothing with -v -N, and JSON
// null in %j and %J, without a warning. Each client collects the same
// three messages, queued in a persistent session made before publishing,
// so the comparison needs no timing.
func TestSubEmptyPayloadLikeMosquittoSub(t *testing.T) {
	pubBin, msub := mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	port := fmt.Sprint(b.Port())
	for i, flags := range [][]string{nil, {"-v"}, {"-v", "-N"}, {"-N"}, {"-F", "%j"}, {"-F", "%J"}, {"-F", "[%p|%l|%x]"}} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			filter := fmt.Sprintf("empty/%d/#", i)
			conn := []string{"-h", "127.0.0.1", "-p", port, "-q", "1", "-t", filter, "-c"}
			mosqID, mqtkID := fmt.Sprintf("empty-mosq-%d", i), fmt.Sprintf("empty-mqtk-%d", i)
			if out, err := exec.CommandContext(ctx, msub, append(conn, "-i", mosqID, "-E")...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_sub -E: %v\n%s", err, out)
			}
			if code, _, stderr := runSubCmd(ctx, append([]string{"sub", "-i", mqtkID, "-E"}, conn...)...); code != 0 {
				t.Fatalf("mqtk sub -E: exit %d\n%s", code, stderr)
			}
			for j, payload := range []string{"one", "", `{"n":3}`} {
				args := []string{"-h", "127.0.0.1", "-p", port, "-q", "1", "-t", fmt.Sprintf("empty/%d/%d", i, j)}
				if payload == "" {
					args = append(args, "-n")
				} else {
					args = append(args, "-m", payload)
				}
				if out, err := exec.CommandContext(ctx, pubBin, args...).CombinedOutput(); err != nil {
					t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
				}
			}
			cmd := exec.CommandContext(ctx, msub, append(append(conn, "-i", mosqID, "-C", "3", "-W", "20"), flags...)...)
			var mstderr bytes.Buffer
			cmd.Stderr = &mstderr
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("mosquitto_sub %v: %v\n%s", flags, err, mstderr.String())
			}
			code, got, stderr := runSubCmd(ctx, append(append([]string{"sub", "-i", mqtkID, "-C", "3", "-W", "20"}, conn...), flags...)...)
			if code != 0 {
				t.Fatalf("mqtk sub %v: exit %d\n%s", flags, code, stderr)
			}
			if w, g := maskMid(maskTime(string(want))), maskMid(maskTime(got)); w != g {
				t.Errorf("mqtk sub %v differs from mosquitto_sub:\nmosquitto_sub: %q\nmqtk sub:      %q", flags, w, g)
			}
			// %J complains about "one", which is not JSON, in both; about
			// the empty payload in neither.
			complaints := func(s string) string {
				var topics []string
				for _, m := range regexp.MustCompile(`not valid JSON on topic (\S+?)\.?\n`).FindAllStringSubmatch(s, -1) {
					topics = append(topics, m[1])
				}
				return strings.Join(topics, " ")
			}
			if c, mc := complaints(stderr), complaints(mstderr.String()); c != mc || strings.Contains(c, fmt.Sprintf("empty/%d/1", i)) {
				t.Errorf("stderr: mqtk %q, mosquitto_sub %q; want the same complaints, none about the empty payload", stderr, mstderr.String())
			}
		})
	}
}

// waitSubscribed waits until the client id holds a subscription on b.
func waitSubscribed(t *testing.T, b *broker.Broker, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, c := range b.Engine().Clients() {
			if c.ID == id && c.Connected && c.Subscriptions > 0 {
				return
			}
		}
	}
	t.Fatalf("%s did not subscribe", id)
}

// mosquitto_sub's options that mqtk sub lacked, each on the wire against
// mqtk's broker.
func TestSubMosquittoOptionsOnTheWire(t *testing.T) {
	b, own := ownBroker(t, broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}})
	port := portOf(own["tcp"])
	conn := []string{"-h", "127.0.0.1", "-p", port}
	run := func(stdin string, args ...string) (int, string, string) {
		return runMqtk(t, stdin, append(append([]string{}, args[:1]...), append(conn, args[1:]...)...)...)
	}
	if code, _, errb := run("", "pub", "-t", "rh/a", "-m", "kept", "-r", "-q", "1"); code != 0 {
		t.Fatalf("pub: %d\n%s", code, errb)
	}
	t.Run("retain-handling", func(t *testing.T) {
		if code, out, errb := run("", "sub", "-t", "rh/a", "--retain-handling", "never", "-W", "0.5"); code != 27 || out != "" {
			t.Errorf("never: exit %d, stdout %q\n%s", code, out, errb)
		}
		if code, out, errb := run("", "sub", "-t", "rh/a", "--retain-handling", "always", "-C", "1", "-W", "5"); code != 0 || out != "kept\n" {
			t.Errorf("always: exit %d, stdout %q\n%s", code, out, errb)
		}
		// new: retained messages for a new subscription only; the same
		// subscription again in a kept session gets none.
		for i, want := range []string{"kept\n", ""} {
			code, out, _ := run("", "sub", "-t", "rh/a", "--retain-handling", "new", "-c", "-i", "rh-new", "-x", "60", "-C", "1", "-W", "0.5")
			if out != want || (want == "" && code != 27) {
				t.Errorf("new, run %d: exit %d, stdout %q, want %q", i+1, code, out, want)
			}
		}
	})
	t.Run("E-with-C-and-W", func(t *testing.T) {
		// mosquitto_sub exits 0 at SUBACK; -C and -W never apply.
		if code, out, errb := run("", "sub", "-t", "rh/a", "-E", "-C", "1", "-W", "5", "-c", "-i", "e-only"); code != 0 || out != "" {
			t.Errorf("-E -C -W: exit %d, stdout %q\n%s", code, out, errb)
		}
	})
	t.Run("quiet", func(t *testing.T) {
		_, _, loud := run("", "sub", "-t", "rh/#", "--retained-only", "--remove-retained", "--dry-run")
		code, out, quiet := run("", "sub", "-t", "rh/#", "--retained-only", "--remove-retained", "--dry-run", "--quiet")
		if !strings.Contains(loud, "would clear the retained message on rh/a") || code != 0 || out != "kept\n" || quiet != "" {
			t.Errorf("--quiet: exit %d, stdout %q, stderr %q; without it %q", code, out, quiet, loud)
		}
	})
	t.Run("random-filter", func(t *testing.T) {
		var lines strings.Builder
		for i := 0; i < 200; i++ {
			fmt.Fprintf(&lines, "rf/%d\tv%d\n", i, i)
		}
		if code, _, errb := run(lines.String(), "pub", "-l", "--topic-from-line", "-r", "-q", "1"); code != 0 {
			t.Fatalf("pub: %d\n%s", code, errb)
		}
		code, out, errb := run("", "sub", "-t", "rf/#", "--retained-only", "-q", "1")
		if code != 0 || strings.Count(out, "\n") != 200 {
			t.Fatalf("all: exit %d, %d lines\n%s", code, strings.Count(out, "\n"), errb)
		}
		// Half of 200 on average: none or all would happen with a
		// chance of 2^-199 each.
		code, out, errb = run("", "sub", "-t", "rf/#", "--retained-only", "-q", "1", "--random-filter", "50")
		if n := strings.Count(out, "\n"); code != 0 || n == 0 || n == 200 {
			t.Errorf("--random-filter 50: exit %d, %d of 200 printed\n%s", code, n, errb)
		}
	})
	t.Run("message-rate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		type result struct {
			code int
			out  string
		}
		done := make(chan result, 1)
		go func() {
			code, out, _ := runSubCmd(ctx, append(append([]string{"sub"}, conn...), "-t", "mr/#", "-i", "rate", "--message-rate", "-W", "3.5")...)
			done <- result{code, out}
		}()
		waitSubscribed(t, b, "rate")
		if code, _, errb := run(strings.Repeat("x\n", 50), "pub", "-t", "mr/x", "-l", "-q", "1"); code != 0 {
			t.Fatalf("pub: %d\n%s", code, errb)
		}
		r := <-done
		sum := 0
		for _, l := range strings.Fields(r.out) {
			n, err := strconv.Atoi(l)
			if err != nil {
				t.Fatalf("--message-rate printed %q, not a count", l)
			}
			sum += n
		}
		if r.code != 27 || sum != 50 || strings.Count(r.out, "\n") < 2 {
			t.Errorf("--message-rate: exit %d, stdout %q: want one count a second adding up to 50", r.code, r.out)
		}
	})
	t.Run("w-is-watch", func(t *testing.T) {
		if code, _, errb := run("", "sub", "-t", "x", "-w"); code != 2 || !strings.Contains(errb, "--watch needs a terminal") {
			t.Errorf("-w: exit %d\n%s", code, errb)
		}
	})
}

// --pretty prints %j and %J byte for byte as mosquitto_sub --pretty does
// (times masked).
func TestSubPrettyMatchesMosquitto(t *testing.T) {
	_, msub := mosquittotest.RequireClients(t)
	mpub, _ := mosquittotest.RequireClients(t)
	mosq := mosquittotest.Start(t, mosquittotest.Options{})
	port := strconv.Itoa(mosq.Port())
	out, err := exec.Command(mpub, "-p", port, "-V", "5", "-t", "pp/a", "-r", "-q", "1", "-m", `{"a":1,"b":[1,{"c":null}],"d":{},"e":[]}`,
		"-D", "publish", "user-property", "k", "v", "-D", "publish", "content-type", "application/json").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	for _, f := range []string{"%j", "%J", "%t %j|"} {
		want, err := exec.Command(msub, "-p", port, "-V", "5", "-t", "pp/a", "-C", "1", "-F", f, "--pretty").Output()
		if err != nil {
			t.Fatalf("mosquitto_sub: %v", err)
		}
		code, got, errb := runMqtk(t, "", "sub", "-p", port, "-t", "pp/a", "-C", "1", "-F", f, "--pretty")
		if code != 0 {
			t.Fatalf("mqtk sub -F %s --pretty: exit %d\n%s", f, code, errb)
		}
		mask := func(s string) string {
			return regexp.MustCompile(`"tst":\t"[^"]*"`).ReplaceAllString(s, `"tst":"T"`)
		}
		if mask(got) != mask(string(want)) {
			t.Errorf("-F %s --pretty:\nmqtk:\n%s\nmosquitto_sub:\n%s", f, got, want)
		}
	}
}
