package broker

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/muesli/termenv"
)

// traceSession runs one MQTT 5 publish with properties and a binary payload
// and one subscription with every MQTT 5 option through a broker with
// --trace and returns what the trace wrote.
func traceSession(t *testing.T, jsonLines, color bool) string {
	t.Helper()
	pub, _ := mosquittotest.RequireClients(t)
	var out ui.SyncBuffer
	format := "text"
	if jsonLines {
		format = "json"
	}
	b, err := New(Options{Listeners: []string{"tcp://127.0.0.1:0"}, Trace: true, LogFormat: format,
		Color: color, Log: &out, AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	addr := b.tcpAddr(t)
	payload := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(payload, []byte("line1\n\x00\xff\"q\""), 0o600); err != nil {
		t.Fatal(err)
	}
	mosq(t, pub, addr, "-V", "5", "-i", "tracer", "-u", "alice", "-P", "s3cret",
		"-q", "1", "-r", "-t", "trace/x", "-f", payload,
		"-D", "publish", "user-property", "site", "lab",
		"-D", "publish", "user-property", "site", "lab2",
		"-D", "publish", "correlation-data", "req-1",
		"-D", "publish", "content-type", "application/octet-stream")
	// Debian's mosquitto_sub 2.0.11 cannot set subscription options, so
	// this client speaks through the codec.
	subscribeWithOptions(t, addr)
	// mosquitto's clients exit as soon as their DISCONNECT is written;
	// wait (bounded) until the broker has read both before stopping it.
	for i := 0; i < 1000 && strings.Count(out.String(), "DISCONNECT") < 2; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// subscribeWithOptions subscribes as client "tracesub" with every MQTT 5
// subscription option and a subscription identifier, takes the retained
// message, acknowledges it and disconnects.
func subscribeWithOptions(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	send := func(p packet.Packet) {
		b, err := packet.Encode(p, packet.V5)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	rd := packet.NewReader(conn, 0)
	recv := func(want packet.Type) packet.Packet {
		p, err := rd.ReadPacket(packet.V5)
		if err != nil || p.Type() != want {
			t.Fatalf("read %v (%v), want %s", p, err, want)
		}
		return p
	}
	send(&packet.Connect{ClientID: "tracesub", CleanStart: true, KeepAlive: 60})
	recv(packet.TypeConnack)
	sub := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: "trace/x", QoS: 2, NoLocal: true, RetainAsPublished: true}}}
	sub.Properties.SubscriptionIDs = []uint32{7}
	send(sub)
	recv(packet.TypeSuback)
	pub := recv(packet.TypePublish).(*packet.Publish)
	send(&packet.Ack{Kind: packet.TypePuback, PacketID: pub.PacketID})
	send(&packet.Disconnect{})
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
		if r.Direction == "" {
			continue // commentary, not a packet
		}
		got = append(got, r)
	}
	var seq []string
	for _, r := range got {
		seq = append(seq, r.Client+" "+r.Direction+" "+r.Type)
	}
	want := "tracer in CONNECT,tracer out CONNACK,tracer in PUBLISH,tracer out PUBACK,tracer in DISCONNECT," +
		"tracesub in CONNECT,tracesub out CONNACK,tracesub in SUBSCRIBE,tracesub out SUBACK,tracesub out PUBLISH," +
		"tracesub in PUBACK,tracesub in DISCONNECT"
	if strings.Join(seq, ",") != want {
		t.Fatalf("packets = %s\nwant       %s", strings.Join(seq, ","), want)
	}
	c := got[0]
	if c.Client != "tracer" || c.Username != "alice" || c.ProtocolVersion != 5 || c.Clean == nil || !*c.Clean ||
		c.PasswordSize == nil || *c.PasswordSize != 6 {
		t.Errorf("CONNECT record = %+v", c)
	}
	p := got[2]
	if p.Client != "tracer" || p.Topic != "trace/x" || p.Qos == nil || *p.Qos != 1 || !p.Retain || p.Dup {
		t.Errorf("PUBLISH record = %+v", p)
	}
	if p.Payload == nil || *p.Payload != `line1\n\x00\xff\"q\"` || p.PayloadSize == nil || *p.PayloadSize != 11 || p.Truncated {
		t.Errorf("PUBLISH payload preview = %v size %v", p.Payload, p.PayloadSize)
	}
	if p.Properties["content_type"] != "application/octet-stream" || p.Properties["correlation_data"] != "req-1" {
		t.Errorf("PUBLISH properties = %v", p.Properties)
	}
	if u, _ := p.Properties["user"].([]any); len(u) != 2 || u[0] != "site=lab" || u[1] != "site=lab2" {
		t.Errorf("user properties = %v, want both, in order", p.Properties["user"])
	}
	if got[1].ReasonCode == nil || *got[1].ReasonCode != 0 {
		t.Errorf("CONNACK reason = %v", got[1].ReasonCode)
	}
	s := got[7]
	if len(s.Filters) != 1 || s.Filters[0] != (packet.Filter{Filter: "trace/x", Qos: 2, NoLocal: true, RetainAsPublished: true}) {
		t.Errorf("SUBSCRIBE filters = %+v", s.Filters)
	}
	if ids, _ := s.Properties["subscription_identifier"].([]any); len(ids) != 1 || ids[0] != float64(7) {
		t.Errorf("SUBSCRIBE properties = %v", s.Properties)
	}
}

func TestTraceText(t *testing.T) {
	leakCheck(t)
	plain := traceSession(t, false, false)
	if strings.Contains(plain, "\x1b[") {
		t.Fatalf("plain trace contains escape sequences:\n%q", plain)
	}
	if strings.Contains(plain, "s3cret") {
		t.Fatalf("trace leaks the password:\n%s", plain)
	}
	for _, want := range []string{
		`tracer -> CONNECT protocol=MQTT level=5 id="tracer" clean=true keepalive=60 receive-maximum=20 username="alice" password=(6 bytes) from=127.0.0.1:`,
		"tracer <- CONNACK session-present=false reason=0x00 (success)",
		`tracer -> PUBLISH topic=trace/x qos=1 id=1 retain content-type="application/octet-stream" correlation-data="req-1" user-property=site:lab user-property=site:lab2 len=11 payload="line1\n\x00\xff\"q\""`,
		"tracer <- PUBACK id=1 reason=0x00 (success)",
		"tracer -> DISCONNECT reason=0x00 (normal disconnection)",
		"tracesub -> SUBSCRIBE id=1 subscription-identifier=7 filter=trace/x(qos=2,no-local,retain-as-published,retain-handling=0)",
		"tracesub <- SUBACK id=1 codes=0x02",
		"tracesub <- PUBLISH topic=trace/x qos=1 id=1 retain",
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
