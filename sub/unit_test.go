package sub

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"

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

func TestFilterMatches(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"+/+", "a/", true},
		{"a/b", "a/c", false},
		{"$share/g/a/+", "a/b", true},
	}
	for _, c := range cases {
		if got := FilterMatches(c.filter, c.topic); got != c.want {
			t.Errorf("FilterMatches(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a#", "a/b+", "$share/g", "$share//a", "$share/g+/a"} {
		if ValidFilter(bad) == nil {
			t.Errorf("ValidFilter(%q) accepted a bad filter", bad)
		}
	}
	for _, good := range []string{"#", "a/+/c", "$share/g/a/#", "+"} {
		if err := ValidFilter(good); err != nil {
			t.Errorf("ValidFilter(%q): %v", good, err)
		}
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
	if !strings.Contains(got, `\xff`) || !strings.Contains(got, "a/busy") || !strings.Contains(got, "2.0") {
		t.Errorf("--watch frame lacks the rows (escaped payload, topic, rate): %q", got)
	}
}
