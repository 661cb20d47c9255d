package sub

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/charmbracelet/lipgloss"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

func ptr[T any](v T) *T { return &v }

func TestFormat(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6007008, time.UTC)
	m := &mqttconn.Message{Topic: "a/b", Payload: []byte("hi"), QoS: 1, Retain: true, PacketID: 7,
		ContentType: "text/plain", ResponseTopic: "resp/x", CorrelationData: []byte("cd"),
		PayloadFormat: ptr[byte](1), MessageExpiry: ptr[uint32](30), SubscriptionIDs: []int{4},
		UserProperties: []mqttconn.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}
	cases := []struct{ format, want string }{
		{"%t %p", "a/b hi"},
		{"%x %X %l %q %r %m", "6869 6869 2 1 1 7"},
		{"[%5t][%-5t][%.1t][%05l][%-05l]", "[  a/b][a/b  ][a][00002][2    ]"},
		{"%C|%D|%E|%F|%P|%R|%S|%A", "text/plain|cd|30|1|k:v k:w|resp/x|4|"},
		{"%I|%U", "2026-01-02T03:04:05+0000|1767323045.006007008"},
		{"@Y-@m-@d @H:@M:@S.@N @@ 100%%", "2026-01-02 03:04:05.006007008 @ 100%"},
		{`\t\\\e\0\n`, "\t\\\x1b\x00\n"},
		{"%3.2R|%8.2p|%5r", " re|      hi|1"},
		{"%j", `{"tst":"2026-01-02T03:04:05.006007Z+0000","topic":"a/b","qos":1,"retain":1,"payloadlen":2,"mid":7,"properties":{"user-properties":{"k":"v","k":"w"},"content-type":"text/plain","correlation-data":"cd","response-topic":"resp/x","payload-format-indicator":1,"message-expiry-interval":30,"subscription-identifier":4},"payload":"hi"}`},
	}
	for _, c := range cases {
		f, err := CompileFormat(c.format)
		if err != nil {
			t.Fatalf("CompileFormat(%q): %v", c.format, err)
		}
		if got := string(f.Append(nil, m, now, FormatEnv{})); got != c.want {
			t.Errorf("format %q:\n got %q\nwant %q", c.format, got, c.want)
		}
	}
	for _, bad := range []string{"%z", "abc%", `\q`, `x\`, "@", "@Q", "%5"} {
		if _, err := CompileFormat(bad); err == nil {
			t.Errorf("CompileFormat(%q) accepted a bad format", bad)
		}
	}
}

// The @ conversions glibc's strftime has and mosquitto_sub passes on,
// at dates where week numbers and ISO years turn over. The expected
// values are what glibc writes in the C locale (LC_ALL=C date +FORMAT).
func TestStrftimeLikeGlibc(t *testing.T) {
	const format = "@C|@g|@G|@h|@U|@V|@W|@x|@X|@l|@k|@I|@c"
	f, err := CompileFormat(format)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2021, 1, 1, 0, 30, 0, 0, time.UTC), "20|20|2020|Jan|00|53|00|01/01/21|00:30:00|12| 0|12|Fri Jan  1 00:30:00 2021"},
		{time.Date(2024, 12, 30, 13, 5, 9, 0, time.UTC), "20|25|2025|Dec|52|01|53|12/30/24|13:05:09| 1|13|01|Mon Dec 30 13:05:09 2024"},
		{time.Date(2023, 1, 1, 12, 0, 0, 0, time.UTC), "20|22|2022|Jan|01|52|00|01/01/23|12:00:00|12|12|12|Sun Jan  1 12:00:00 2023"},
		{time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), "19|99|1999|Dec|52|52|52|12/31/99|23:59:59|11|23|11|Fri Dec 31 23:59:59 1999"},
	} {
		if got := string(f.Append(nil, &mqttconn.Message{}, c.at, FormatEnv{})); got != c.want {
			t.Errorf("%s at %s:\n got %q\nwant %q", format, c.at, got, c.want)
		}
	}
}

func TestFormatJSONPayload(t *testing.T) {
	f, err := CompileFormat("%J")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0).UTC()
	got := string(f.Append(nil, &mqttconn.Message{Topic: "t", Payload: []byte(`{"a":1}`)}, now, FormatEnv{}))
	if !strings.HasSuffix(got, `"payloadlen":7,"payload":{"a":1}}`) {
		t.Errorf("%%J with JSON payload: %s", got)
	}
	var warned string
	got = string(f.Append(nil, &mqttconn.Message{Topic: "t", Payload: []byte(`nope`)}, now, FormatEnv{Warn: func(s string) { warned = s }}))
	if got != "" || !strings.Contains(warned, "not valid JSON on topic t") {
		t.Errorf("%%J with a non-JSON payload printed %q and warned %q", got, warned)
	}

	// json.Valid accepts invalid UTF-8 and C1 controls inside strings. Piped,
	// %J keeps the payload's bytes, as mosquitto_sub does; on a terminal
	// they become \u00XX escapes and the line stays valid JSON. %j escapes
	// C1 controls (and DEL) on a terminal only.
	evil := &mqttconn.Message{Topic: "t\u009b", Payload: []byte("{\"a\":\"\xff\xfe\",\"b\":\"\u009b2J\",\"c\":\"\x7f\"}")}
	got = string(f.Append(nil, evil, now, FormatEnv{}))
	if !strings.HasSuffix(got, `"payload":`+string(evil.Payload)+`}`) {
		t.Errorf("piped %%J changed the payload: %q", got)
	}
	got = string(f.Append(nil, evil, now, FormatEnv{Escape: true}))
	if !strings.HasSuffix(got, `"payload":{"a":"\u00ff\u00fe","b":"\u009b2J","c":"\u007f"}}`) || !json.Valid([]byte(got)) ||
		strings.ContainsAny(got, "\u009b\x7f") || !utf8.ValidString(got) {
		t.Errorf("%%J on a terminal: %q", got)
	}
	fj, _ := CompileFormat("%j")
	got = string(fj.Append(nil, evil, now, FormatEnv{}))
	if !strings.Contains(got, `"topic":"t`+"\u009b"+`"`) || !strings.Contains(got, `"payload":"{\"a\":\"\u00ff\u00fe\",\"b\":\"`+"\u009b") {
		t.Errorf("piped %%j: %q", got)
	}
	got = string(fj.Append(nil, evil, now, FormatEnv{Escape: true}))
	if strings.ContainsAny(got, "\u009b\x7f") || !strings.Contains(got, `"topic":"t\u009b"`) || !json.Valid([]byte(got)) {
		t.Errorf("%%j on a terminal: %q", got)
	}
	// The other text verbs escape on a terminal too.
	fp, _ := CompileFormat("%C|%P|%R")
	m := &mqttconn.Message{Topic: "t", ContentType: "a\x1b[2J", ResponseTopic: "r\u009b",
		UserProperties: []mqttconn.UserProperty{{Key: "k\x07", Value: "v"}}}
	if got := string(fp.Append(nil, m, now, FormatEnv{Escape: true})); got != `a\x1b[2J|k\x07:v|r\xc2\x9b` {
		t.Errorf("%%C|%%P|%%R on a terminal: %q", got)
	}
	if got := string(fp.Append(nil, m, now, FormatEnv{})); got != "a\x1b[2J|k\x07:v|r\u009b" {
		t.Errorf("%%C|%%P|%%R piped: %q", got)
	}
}

func TestRecordTimeHasNineDigits(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 120000000, time.FixedZone("X", 3600))
	rec := mqttconn.NewRecord(&mqttconn.Message{Topic: "t", Received: at})
	if rec.Time != "2026-03-04T04:06:07.120000000Z" {
		t.Errorf("record time %q, want nine fraction digits in UTC", rec.Time)
	}
	line, _ := json.Marshal(rec)
	m, err := mqttconn.ParseRecord(line)
	if err != nil || !m.Received.Equal(at) {
		t.Errorf("ParseRecord(%s) = %v, %v", line, m, err)
	}
	// Records written before, with time.RFC3339Nano's trimmed fraction,
	// still read back.
	m, err = mqttconn.ParseRecord([]byte(`{"time":"2026-03-04T04:06:07.12Z","topic":"t","payload":"","payload_encoding":"utf8"}`))
	if err != nil || !m.Received.Equal(at) {
		t.Errorf("trimmed time: %v, %v", m, err)
	}
	// Fixed width sorts as text in time order, where trimming does not.
	a := mqttconn.NewRecord(&mqttconn.Message{Topic: "t", Received: time.Date(2026, 1, 1, 0, 0, 0, 100000000, time.UTC)}).Time
	b := mqttconn.NewRecord(&mqttconn.Message{Topic: "t", Received: time.Date(2026, 1, 1, 0, 0, 0, 120000000, time.UTC)}).Time
	c := mqttconn.NewRecord(&mqttconn.Message{Topic: "t", Received: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)}).Time
	if !(a < b && b < c) {
		t.Errorf("times do not sort as text: %q %q %q", a, b, c)
	}
}

func TestLiveRateAtHighRates(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	const perSec = 6000
	// steady is a topic that received perSec messages a second from t0 on,
	// until the given time.
	steady := func(until time.Duration) *topicStats {
		ts := &topicStats{first: t0}
		for i := 0; time.Duration(i)*time.Second/perSec < until; i++ {
			ts.arrived(t0.Add(time.Duration(i) * time.Second / perSec))
		}
		return ts
	}
	for _, c := range []struct {
		until, at time.Duration
		want      float64
	}{
		{10 * time.Second, 10 * time.Second, 6000},               // the last 4 whole seconds, none yet in the 11th
		{9500 * time.Millisecond, 9500 * time.Millisecond, 6000}, // 4 whole seconds and half of the 10th
		{1500 * time.Millisecond, 1500 * time.Millisecond, 6000}, // a new topic: over the 1.5 s it has existed
		{10 * time.Second, 12 * time.Second, 3000},               // 2 busy seconds of the last 4
		{10 * time.Second, 20 * time.Second, 0},                  // all of it too old
	} {
		if got := steady(c.until).rate(t0.Add(c.at)); got != c.want {
			t.Errorf("%s of %d msg/s, rate at %s = %v, want %v", c.until, perSec, c.at, got, c.want)
		}
	}
}

func TestEscapeBinary(t *testing.T) {
	cases := map[string]string{
		"plain text\n":       "plain text\n",
		"héllo":              "héllo",
		"\xff\x00ok":         `\xff\x00ok`,
		"\x1b[31mred":        `\x1b[31mred`,
		"tab\tand\u0085next": `tab` + "\t" + `and\xc2\x85next`,
	}
	for in, want := range cases {
		if got := string(escapeBinary([]byte(in))); got != want {
			t.Errorf("escapeBinary(%q) = %q, want %q", in, got, want)
		}
	}
}

// Filters are checked before connecting, with topic's wording; a filter
// that is not UTF-8 used to reach the client library and hang mqtk sub.
func TestValidateFilters(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Topics: []string{"a/#/b"}}, `topic filter "a/#/b": # must be the last level (a/#)`},
		{Options{Topics: []string{"a/\xff"}}, `topic filter "a/\xff": not valid UTF-8`},
		{Options{Topics: []string{"a\x00"}}, "U+0000"},
		{Options{Topics: []string{"$share/g"}}, "write $share/GROUP/FILTER"},
		{Options{Topics: []string{"a"}, FilterOut: []string{"a/b+"}}, `-T/--filter-out: topic filter "a/b+": + must stand alone`},
		{Options{Unsubscribe: []string{"\xc3"}}, `-U/--unsubscribe: topic filter "\xc3": not valid UTF-8`},
	} {
		tc.o.Dial = func(context.Context, mqttconn.Config) (mqttconn.Client, error) { panic("Validate must not dial") }
		err := tc.o.Validate()
		if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q) = %v, want a usage error containing %q", tc.o.Topics, err, tc.want)
		}
	}
	o := Options{Topics: []string{"#", "a/+/c", "$share/g/a/#", "a//b"}, FilterOut: []string{"a/x"}, Dial: func(context.Context, mqttconn.Config) (mqttconn.Client, error) { return nil, nil }}
	if err := o.Validate(); err != nil {
		t.Errorf("Validate(%q) = %v", o.Topics, err)
	}
}

func TestMatcher(t *testing.T) {
	cases := []struct {
		expr, payload string
		want          bool
	}{
		{`jq:.status == "ok"`, `{"status":"ok"}`, true},
		{`jq:.status == "ok"`, `{"status":"bad"}`, false},
		{`jq:.status == "ok"`, `not json`, false},
		{`jq:.n > 3`, `{"n":4}`, true},
		{`jq:.n`, `{"n":4}`, false}, // not a boolean true
		{`jq:.a.b`, `[1]`, false},   // runtime error is no match
		{`re:^temp=\d+$`, `temp=21`, true},
		{`re:^temp=\d+$`, `temp=x`, false},
	}
	for _, c := range cases {
		m, err := CompileMatch(c.expr)
		if err != nil {
			t.Fatalf("CompileMatch(%q): %v", c.expr, err)
		}
		if got := m.Match([]byte(c.payload)); got != c.want {
			t.Errorf("%s on %q = %v, want %v", c.expr, c.payload, got, c.want)
		}
	}
	for _, bad := range []string{"status", "xx:y", "re:(", "jq:.[", "jq:foo(1)"} {
		if _, err := CompileMatch(bad); err == nil {
			t.Errorf("CompileMatch(%q) accepted a bad expression", bad)
		}
	}
}

func TestDumpName(t *testing.T) {
	got := dumpName(time.Date(2026, 11, 25, 6, 1, 42, 57435123, time.UTC), 3, "sensors/room 1/temp")
	want := "20261125T060142.057435123Z-000003-sensors_room%201_temp"
	if got != want {
		t.Errorf("dumpName = %q, want %q", got, want)
	}
}

func TestStatsReportAndWatchFrame(t *testing.T) {
	s := newStatsTable()
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	s.start = t0
	for i := 0; i < 10; i++ {
		s.add(&mqttconn.Message{Topic: "a/busy", Payload: []byte("0123456789"), Received: t0.Add(time.Duration(i) * 100 * time.Millisecond)})
	}
	s.add(&mqttconn.Message{Topic: "b/quiet", Payload: []byte{0xff}, Retain: true, Received: t0.Add(time.Second)})
	var report strings.Builder
	st := newStyles(lipgloss.NewRenderer(io.Discard))
	s.render(&report, t0.Add(2*time.Second), &st, false)
	want := "TOPIC                                      MESSAGES      MSG/S        BYTES\n" +
		"a/busy                                           10        5.0          100\n" +
		"b/quiet                                           1        0.5            1\n" +
		"11 messages on 2 topics in 2s\n"
	if report.String() != want {
		t.Errorf("--stats report:\n%s\nwant:\n%s", report.String(), want)
	}

	var frame strings.Builder
	s.render(&frame, t0.Add(3*time.Second), &st, true)
	s.render(&frame, t0.Add(3*time.Second), &st, true)
	got := frame.String()
	if !strings.Contains(got, "\x1b[3A") {
		t.Errorf("second --watch frame does not move back over the first: %q", got)
	}
	// a/busy: 10 messages since t0, 3 s ago.
	if !strings.Contains(got, `\xff`) || !strings.Contains(got, "a/busy") || !strings.Contains(got, "3.3") {
		t.Errorf("--watch frame lacks the rows (escaped payload, topic, rate): %q", got)
	}
}
