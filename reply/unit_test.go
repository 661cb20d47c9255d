package reply

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/ui"
)

// The environment an --exec command sees: the request's fields, our
// variables from the parent removed, user property keys made names.
func TestRequestEnv(t *testing.T) {
	base := []string{"PATH=/bin", "MQTK_TOPIC=stale", "MQTK_USER_PROPERTY_OLD=x", "MQTK_URL=mqtt://b", "HOME=/h"}
	m := &mqttconn.Message{Topic: "svc/a", QoS: 1, CorrelationData: []byte("c-1"), ContentType: "text/plain",
		UserProperties: []mqttconn.UserProperty{{Key: "trace-id", Value: "t1"}, {Key: "Trace.ID", Value: "t2"},
			{Key: "n", Value: "bad\x00value"}, {Key: "ü", Value: "u"}}}
	got := requestEnv(base, m, 7, "svc/a/reply")
	want := []string{"PATH=/bin", "MQTK_URL=mqtt://b", "HOME=/h",
		"MQTK_TOPIC=svc/a", "MQTK_RESPONSE_TOPIC=svc/a/reply", "MQTK_QOS=1", "MQTK_SEQ=7",
		"MQTK_CORRELATION_DATA_HEX=632d31", "MQTK_CORRELATION_DATA=c-1", "MQTK_CONTENT_TYPE=text/plain",
		"MQTK_USER_PROPERTY_TRACE_ID=t1,t2", "MQTK_USER_PROPERTY___=u"}
	if !slices.Equal(got, want) {
		t.Errorf("env:\n got %q\nwant %q", got, want)
	}

	// Binary correlation data is there in hex only; none, not at all.
	got = requestEnv(nil, &mqttconn.Message{Topic: "b", CorrelationData: []byte{0, 0xff}}, 1, "r")
	if !slices.Contains(got, "MQTK_CORRELATION_DATA_HEX=00ff") || slices.ContainsFunc(got, func(s string) bool {
		return strings.HasPrefix(s, "MQTK_CORRELATION_DATA=")
	}) {
		t.Errorf("binary correlation data: %q", got)
	}
	got = requestEnv(nil, &mqttconn.Message{Topic: "b"}, 1, "r")
	if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "MQTK_CORRELATION") }) {
		t.Errorf("no correlation data: %q", got)
	}
}

// stdout is cut at the limit with a failed write (the command then meets
// EPIPE); stderr keeps its last bytes and never fails.
func TestCapped(t *testing.T) {
	out := &capped{max: 5}
	if n, err := out.Write([]byte("abc")); n != 3 || err != nil {
		t.Fatalf("first write: %d %v", n, err)
	}
	if _, err := out.Write([]byte("def")); err == nil || !out.over || out.b.String() != "abc" {
		t.Fatalf("over the limit: err %v, over %v, kept %q", err, out.over, out.b.String())
	}
	tail := &capped{max: 4, tail: true}
	for _, s := range []string{"12", "345", "6789"} {
		if n, err := tail.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("tail write %q: %d %v", s, n, err)
		}
	}
	if tail.b.String() != "6789" {
		t.Errorf("tail kept %q, want the last 4 bytes", tail.b.String())
	}
	if got := lastLine([]byte("first\nsecond line\n\n")); got != "second line" {
		t.Errorf("lastLine: %q", got)
	}
}

// The summary counts every outcome and gives the quantiles of the
// handling times recorded, clamped to the histogram's range.
func TestSummary(t *testing.T) {
	s := newStats()
	if got := s.summary(); got != "served 0, failed 0, skipped 0, rejected 0" {
		t.Errorf("empty: %q", got)
	}
	for range 98 {
		s.handled(2 * time.Millisecond)
	}
	s.handled(40 * time.Millisecond)
	s.handled(time.Hour) // clamped to 10 minutes, still counted
	for _, n := range []*int{&s.served, &s.served, &s.failed, &s.skipped, &s.rejected, &s.rejected, &s.rejected} {
		s.add(n)
	}
	got := s.summary()
	want := "served 2, failed 1, skipped 1, rejected 3; handling time p50 2.001 ms, p99 40.010 ms"
	if got != want {
		t.Errorf("summary:\n got %q\nwant %q", got, want)
	}
	if s.hist.TotalCount() != 100 {
		t.Errorf("recorded %d times, want 100", s.hist.TotalCount())
	}
}

func TestValidate(t *testing.T) {
	streams, _, _ := ui.Test(nil)
	dial := func(context.Context, mqttconn.Config) (mqttconn.Client, error) { return nil, nil }
	ok := func() *Options {
		return &Options{Dial: dial, IO: streams, Topics: []string{"svc/#"}, Message: "x", HasMessage: true}
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for _, tc := range []struct {
		change func(*Options)
		want   string
	}{
		{func(o *Options) { o.Topics = nil }, "no request topic given"},
		{func(o *Options) { o.Topics = []string{"a/#/b"} }, "-t: "},
		{func(o *Options) { o.Share = "g/h" }, "cannot contain /"},
		{func(o *Options) { o.Share = "g+" }, "wildcard"},
		{func(o *Options) { o.Share, o.Topics = "g", []string{"$share/h/a"} }, "already shared"},
		{func(o *Options) { o.Exec = []string{"cat"} }, "-m and --exec both"},
		{func(o *Options) { o.HasMessage = false }, "no response given"},
		{func(o *Options) { o.QoS = 3 }, "-q 3 out of range"},
		{func(o *Options) { o.ResponseTopic = "a/+" }, "-e: "},
		{func(o *Options) { o.ErrorTopic = "e/#" }, "--error-topic: "},
		{func(o *Options) { o.ResponseSuffix = "/#" }, "--response-suffix"},
		{func(o *Options) { o.Response.CorrelationData = []byte("x") }, "the request's to give"},
		{func(o *Options) { o.Timeout = -1 }, "--timeout must be positive"},
	} {
		o := ok()
		tc.change(o)
		err := o.Validate()
		if err == nil || clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want a usage error with %q", o, err, tc.want)
		}
	}
}

// A message on a response topic is not a request: a filter that covers
// the responses must not make the responder answer its own answers.
func TestIsResponseAndTarget(t *testing.T) {
	o := &Options{ResponseTopic: "fixed/r", ErrorTopic: "errs"}
	for name, want := range map[string]bool{"svc/a/reply": true, "svc/a": false, "fixed/r": true, "errs": true, "svc/replyx": false} {
		if got := o.isResponse(name); got != want {
			t.Errorf("isResponse(%q) = %v", name, got)
		}
	}
	r := &runner{o: &Options{ResponseSuffix: "/resp"}}
	if got := r.target(&mqttconn.Message{Topic: "t"}); got != "t/resp" {
		t.Errorf("3.1.1 target %q, want t/resp", got)
	}
	r.v5 = true
	if got := r.target(&mqttconn.Message{Topic: "t"}); got != "" {
		t.Errorf("MQTT 5 request without a response topic: target %q, want none", got)
	}
	if got := r.target(&mqttconn.Message{Topic: "t", ResponseTopic: "r/1"}); got != "r/1" {
		t.Errorf("MQTT 5 target %q, want r/1", got)
	}
	r.o.ResponseTopic = "fixed"
	if got := r.target(&mqttconn.Message{Topic: "t"}); got != "fixed" {
		t.Errorf("-e target %q, want fixed", got)
	}
}

// The -m template sees the request; a missing key fails that request
// rather than answering "<no value>".
func TestTemplate(t *testing.T) {
	tm, err := parseTemplate(`{{.Seq}} {{.Topic}} {{.Payload}} {{.CorrelationHex}} {{index .UserProperties "k"}} {{env "E"}} {{randInt 3 3}}`,
		func(k string) string { return "env-" + k })
	if err != nil {
		t.Fatal(err)
	}
	m := &mqttconn.Message{Topic: "q/1", Payload: []byte("hi"), CorrelationData: []byte{1, 2},
		UserProperties: []mqttconn.UserProperty{{Key: "k", Value: "v"}}}
	got, err := render(tm, newTmplData(4, time.Unix(0, 0), "h", "c", "q/1/reply", m))
	if err != nil || string(got) != "4 q/1 hi 0102 v env-E 3" {
		t.Errorf("render: %q %v", got, err)
	}
	tm, _ = parseTemplate(`{{.UserProperties.missing}}`, nil)
	if _, err := render(tm, newTmplData(1, time.Now(), "", "", "r", m)); err == nil {
		t.Error("a missing user property rendered without error")
	}
	if _, err := parseTemplate(`{{.Seq`, nil); err == nil || clierr.KindOf(err) != clierr.KindUsage {
		t.Errorf("bad template: %v", err)
	}
}
