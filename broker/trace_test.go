package broker

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/muesli/termenv"
)

// traceSession runs one MQTT 5 publish with properties and a binary payload
// through a broker with the trace hook and returns what the hook wrote.
func traceSession(t *testing.T, jsonLines, color bool) string {
	t.Helper()
	pub, _ := mosquittotest.RequireClients(t)
	var out syncBuf
	_, addr, stop := startMochi(t, newTraceHook(&out, jsonLines, color))
	payload := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(payload, []byte("line1\n\x00\xff\"q\""), 0o600); err != nil {
		t.Fatal(err)
	}
	mosq(t, pub, addr, "-V", "5", "-i", "tracer", "-u", "alice", "-P", "s3cret",
		"-q", "1", "-r", "-t", "trace/x", "-f", payload,
		"-D", "publish", "user-property", "site", "lab",
		"-D", "publish", "content-type", "application/octet-stream")
	// mosquitto_pub exits as soon as its DISCONNECT is written; wait
	// (bounded) until the broker has read it before stopping the broker.
	for i := 0; i < 1000 && !strings.Contains(out.String(), "DISCONNECT"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	return out.String()
}

func TestTraceJSONLines(t *testing.T) {
	leakCheck(t)
	out := traceSession(t, true, false)
	if strings.Contains(out, "s3cret") {
		t.Fatalf("trace leaks the password:\n%s", out)
	}
	var got []traceRecord
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r traceRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		got = append(got, r)
	}
	var seq []string
	for _, r := range got {
		seq = append(seq, r.Direction+" "+r.Type)
	}
	want := "in CONNECT,out CONNACK,in PUBLISH,out PUBACK,in DISCONNECT"
	if strings.Join(seq, ",") != want {
		t.Fatalf("packets = %s, want %s", strings.Join(seq, ","), want)
	}
	c := got[0]
	if c.Client != "tracer" || c.Username != "alice" || c.ProtocolVersion != 5 || c.Clean == nil || !*c.Clean {
		t.Errorf("CONNECT record = %+v", c)
	}
	p := got[2]
	if p.Client != "tracer" || p.Topic != "trace/x" || p.Qos == nil || *p.Qos != 1 || !p.Retain || p.Dup {
		t.Errorf("PUBLISH record = %+v", p)
	}
	if p.Payload == nil || *p.Payload != `line1\n\x00\xff\"q\"` || p.PayloadSize == nil || *p.PayloadSize != 11 || p.Truncated {
		t.Errorf("PUBLISH payload preview = %v size %v", p.Payload, p.PayloadSize)
	}
	if p.Properties["content_type"] != "application/octet-stream" {
		t.Errorf("content_type property = %v", p.Properties)
	}
	if u, _ := p.Properties["user"].([]any); len(u) != 1 || u[0] != "site=lab" {
		t.Errorf("user property = %v", p.Properties["user"])
	}
	if got[1].ReasonCode == nil || *got[1].ReasonCode != 0 {
		t.Errorf("CONNACK reason = %v", got[1].ReasonCode)
	}
}

func TestTraceText(t *testing.T) {
	leakCheck(t)
	plain := traceSession(t, false, false)
	if strings.Contains(plain, "\x1b[") {
		t.Fatalf("plain trace contains escape sequences:\n%q", plain)
	}
	for _, want := range []string{
		"tracer -> CONNECT v=5 clean=true",
		"tracer <- CONNACK",
		`tracer -> PUBLISH trace/x qos=1 id=`,
		` retain {content_type=application/octet-stream user=[site=lab]} "line1\n\x00\xff\"q\"" (11 bytes)`,
		"tracer <- PUBACK id=",
		"tracer -> DISCONNECT",
	} {
		if !strings.Contains(plain, want) {
			t.Errorf("plain trace lacks %q:\n%s", want, plain)
		}
	}
	t.Logf("trace:\n%s", plain)
	if colored := traceSession(t, false, true); !strings.Contains(colored, "\x1b[") {
		t.Errorf("coloured trace has no escape sequences:\n%q", colored)
	}
}

func TestPayloadPreview(t *testing.T) {
	for _, tc := range []struct {
		in        string
		limit     int
		want      string
		truncated bool
	}{
		{"hello", 64, "hello", false},
		{"", 64, "", false},
		{"a\tb\r\n", 64, `a\tb\r\n`, false},
		{"\x1b[31mred", 64, `\x1b[31mred`, false},
		{"héllo wörld", 64, "héllo wörld", false},
		{"\xc3\x28", 64, `\xc3(`, false},
		{"abcdef", 3, "abc", true},
		{"aé", 2, "a", true}, // never cut a character in half
		{`back\slash "q"`, 64, `back\\slash \"q\"`, false},
		{"\u0085next-line", 64, `\x85next-line`, false},
	} {
		got, tr := payloadPreview([]byte(tc.in), tc.limit)
		if got != tc.want || tr != tc.truncated {
			t.Errorf("payloadPreview(%q, %d) = %q, %v; want %q, %v", tc.in, tc.limit, got, tr, tc.want, tc.truncated)
		}
	}
}

// The trace colours text with sequences taken from lipgloss once; they must
// match what lipgloss itself renders, with colour and without.
func TestPaintMatchesLipgloss(t *testing.T) {
	for _, profile := range []termenv.Profile{termenv.ANSI256, termenv.Ascii} {
		r := lipgloss.NewRenderer(io.Discard)
		r.SetColorProfile(profile)
		for _, st := range []lipgloss.Style{
			r.NewStyle().Faint(true),
			r.NewStyle().Foreground(lipgloss.Color("2")).Bold(true),
			r.NewStyle(),
		} {
			for _, text := range []string{"PUBLISH", "a/b/#", `"x y"`, ""} {
				if got, want := newPaint(st).Render(text), st.Render(text); got != want {
					t.Errorf("profile %v, %q: paint %q, lipgloss %q", profile, text, got, want)
				}
			}
		}
	}
}
