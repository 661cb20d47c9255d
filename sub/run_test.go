package sub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/testpki"
	"github.com/mqtk/mqtk/internal/ui"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lockedBuffer lets the test read stdout while Run writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// subscribedClient tells the test when Run's SUBSCRIBE was acknowledged,
// so that live messages are published only once they can be delivered.
type subscribedClient struct {
	mqttconn.Client
	once *sync.Once
	ch   chan struct{}
}

func (c subscribedClient) Subscribe(ctx context.Context, s []mqttconn.Subscription) ([]byte, error) {
	codes, err := c.Client.Subscribe(ctx, s)
	c.once.Do(func() { close(c.ch) })
	return codes, err
}

type subRun struct {
	out, errb *lockedBuffer
	subbed    chan struct{}
	done      chan error
}

// startSub runs Run in the background against port with the given version.
func startSub(t *testing.T, ctx context.Context, port int, v mqttconn.Version, o *Options) *subRun {
	t.Helper()
	r := &subRun{out: &lockedBuffer{}, errb: &lockedBuffer{}, subbed: make(chan struct{}), done: make(chan error, 1)}
	env := func(string) string { return "" }
	o.IO = &ui.Streams{In: strings.NewReader(""), Out: ui.NewStream(r.out, false, ui.ColorNever, env),
		Err: ui.NewStream(r.errb, false, ui.ColorNever, env), Getenv: env}
	if o.Conn.Version == 0 {
		o.Conn = mqttconn.Default()
		o.Conn.Host, o.Conn.Port, o.Conn.Version = "127.0.0.1", port, v
	}
	if err := o.Conn.Resolve(); err != nil {
		t.Fatal(err)
	}
	once := &sync.Once{}
	o.Dial = func(ctx context.Context, c mqttconn.Config) (mqttconn.Client, error) {
		cl, err := mqttconn.Dial(ctx, c)
		if err != nil {
			return nil, err
		}
		return subscribedClient{Client: cl, once: once, ch: r.subbed}, nil
	}
	go func() { r.done <- Run(ctx, o) }()
	return r
}

func (r *subRun) waitSubscribed(t *testing.T) {
	t.Helper()
	select {
	case <-r.subbed:
	case err := <-r.done:
		t.Fatalf("sub ended before subscribing: %v\nstderr: %s", err, r.errb.String())
	case <-time.After(15 * time.Second):
		t.Fatal("sub did not subscribe within 15s")
	}
}

// waitOutput waits, boundedly, until stdout holds want.
func (r *subRun) waitOutput(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if strings.Contains(r.out.String(), want) {
			return
		}
		select {
		case err := <-r.done:
			t.Fatalf("sub ended before printing %q: %v\nstdout: %s\nstderr: %s", want, err, r.out.String(), r.errb.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("stdout lacks %q after 15s:\n%s\nstderr:\n%s", want, r.out.String(), r.errb.String())
}

func (r *subRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("sub did not end within 30s; stdout so far:\n%s\nstderr:\n%s", r.out.String(), r.errb.String())
	}
	return nil
}

// mpub runs mosquitto_pub against port.
func mpub(t *testing.T, port int, args ...string) {
	t.Helper()
	pub, _ := mosquittotest.RequireClients(t)
	cmd := exec.Command(pub, append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(port)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
	}
}

var versions = []struct {
	name string
	v    mqttconn.Version
	flag string
}{{"v5", mqttconn.V5, "mqttv5"}, {"v311", mqttconn.V311, "mqttv311"}}

func TestCountVerboseAndLiveOutput(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{"cnt/" + ver.name + "/#"}, Count: 3, Verbose: true, QoS: []byte{1}})
			r.waitSubscribed(t)
			for i := 1; i <= 4; i++ {
				mpub(t, b.Port(), "-q", "1", "-t", fmt.Sprintf("cnt/%s/%d", ver.name, i), "-m", fmt.Sprintf("msg %d", i))
			}
			if err := r.wait(t); err != nil {
				t.Fatalf("Run: %v\nstderr: %s", err, r.errb.String())
			}
			want := fmt.Sprintf("cnt/%[1]s/1 msg 1\ncnt/%[1]s/2 msg 2\ncnt/%[1]s/3 msg 3\n", ver.name)
			if got := r.out.String(); got != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestTimeoutIsKindTimeout(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"nothing/here"}, Count: 1, Timeout: 300 * time.Millisecond})
	err := r.wait(t)
	if mqttconn.KindOf(err) != mqttconn.KindTimeout {
		t.Fatalf("want a timeout (exit 27), got %v (kind %d)", err, mqttconn.KindOf(err))
	}
	if !strings.Contains(err.Error(), "0 of 1 messages") {
		t.Errorf("timeout message does not say how far it got: %v", err)
	}
}

func TestMatch(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := CompileMatch(`jq:.status == "ok"`)
	if err != nil {
		t.Fatal(err)
	}
	r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"dev/+/state"}, Count: 1, Timeout: 20 * time.Second, Match: m})
	r.waitSubscribed(t)
	mpub(t, b.Port(), "-t", "dev/1/state", "-m", `{"status":"booting"}`)
	mpub(t, b.Port(), "-t", "dev/1/state", "-m", `not json`)
	mpub(t, b.Port(), "-t", "dev/2/state", "-m", `{"status":"ok","n":2}`)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := r.out.String(); got != "{\"status\":\"ok\",\"n\":2}\n" {
		t.Errorf("stdout %q: want only the matching payload", got)
	}

	// No match before the timeout: KindUnmet (exit 7), not a plain timeout.
	re, _ := CompileMatch("re:^never$")
	r = startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"dev/+/state"}, Count: 1, Timeout: 500 * time.Millisecond, Match: re})
	r.waitSubscribed(t)
	mpub(t, b.Port(), "-t", "dev/3/state", "-m", `other`)
	err = r.wait(t)
	if mqttconn.KindOf(err) != mqttconn.KindUnmet {
		t.Fatalf("want KindUnmet, got %v", err)
	}
	if r.out.String() != "" {
		t.Errorf("non-matching message printed: %q", r.out.String())
	}
}

func TestIdleEnds(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"idle/#"}, Idle: 500 * time.Millisecond})
	r.waitSubscribed(t)
	mpub(t, b.Port(), "-t", "idle/a", "-m", "one")
	if err := r.wait(t); err != nil {
		t.Fatalf("--idle should end with success, got %v", err)
	}
	if r.out.String() != "one\n" {
		t.Errorf("stdout %q", r.out.String())
	}
}

func TestRetainedSelection(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	for _, tp := range []string{"ret/a/1", "ret/a/2", "ret/b/1"} {
		mpub(t, b.Port(), "-r", "-t", tp, "-m", "v-"+tp)
	}
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// --retained-only ends by itself once the retained messages are in.
			r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{"ret/#"}, RetainedOnly: true, Verbose: true, FilterOut: []string{"ret/b/#"}})
			if err := r.wait(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got, want := r.out.String(), "ret/a/1 v-ret/a/1\nret/a/2 v-ret/a/2\n"; got != want {
				t.Errorf("--retained-only -T ret/b/#:\n%s\nwant:\n%s", got, want)
			}

			// -R skips the retained ones and shows the live one.
			r = startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{"ret/#"}, NoRetained: true, Count: 1})
			r.waitSubscribed(t)
			mpub(t, b.Port(), "-t", "ret/live", "-m", "live")
			if err := r.wait(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if r.out.String() != "live\n" {
				t.Errorf("-R printed %q, want only the live message", r.out.String())
			}
		})
	}
}

func TestRemoveRetained(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	mpub(t, b.Port(), "-r", "-t", "rm/1", "-m", "x")
	mpub(t, b.Port(), "-r", "-t", "rm/2", "-m", "yy")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(o *Options) *subRun {
		r := startSub(t, ctx, b.Port(), mqttconn.V5, o)
		if err := r.wait(t); err != nil {
			t.Fatalf("Run: %v\n%s", err, r.errb.String())
		}
		return r
	}
	r := run(&Options{Topics: []string{"rm/#"}, RetainedOnly: true, RemoveRetained: true, DryRun: true})
	if e := r.errb.String(); !strings.Contains(e, "would clear the retained message on rm/1") || !strings.Contains(e, "rm/2") {
		t.Errorf("--dry-run did not list both topics:\n%s", e)
	}
	if r := run(&Options{Topics: []string{"rm/#"}, RetainedOnly: true}); r.out.String() != "x\nyy\n" {
		t.Fatalf("--dry-run cleared something: %q", r.out.String())
	}
	run(&Options{Topics: []string{"rm/#"}, RetainedOnly: true, RemoveRetained: true})
	if r := run(&Options{Topics: []string{"rm/#"}, RetainedOnly: true}); r.out.String() != "" {
		t.Errorf("retained messages still there after --remove-retained: %q", r.out.String())
	}
}

func TestJSONLRecordAndDump(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dump := t.TempDir()
	r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"rec/#"}, Count: 2, Output: OutputJSONL, DumpDir: dump, SubscriptionID: 9, QoS: []byte{1}})
	r.waitSubscribed(t)
	mpub(t, b.Port(), "-V", "mqttv5", "-q", "1", "-t", "rec/text", "-m", "héllo",
		"-D", "publish", "user-property", "k", "v", "-D", "publish", "content-type", "text/plain",
		"-D", "publish", "response-topic", "rec/reply", "-D", "publish", "correlation-data", "abc",
		"-D", "publish", "payload-format-indicator", "1")
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte{0xff, 0x00, 0x01}, 0o644); err != nil {
		t.Fatal(err)
	}
	mpub(t, b.Port(), "-t", "rec/bin", "-f", bin)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(r.out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 jsonl lines, got %q", r.out.String())
	}
	var r1, r2 mqttconn.Record
	if err := json.Unmarshal([]byte(lines[0]), &r1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &r2); err != nil {
		t.Fatal(err)
	}
	p := r1.Properties
	if r1.Topic != "rec/text" || r1.Payload != "héllo" || r1.PayloadEncoding != "utf8" || r1.QoS != 1 || r1.PacketID == 0 || p == nil ||
		p.ContentType != "text/plain" || p.ResponseTopic != "rec/reply" || p.CorrelationData != "YWJj" ||
		len(p.UserProperties) != 1 || p.UserProperties[0] != (mqttconn.UserProperty{Key: "k", Value: "v"}) ||
		p.PayloadFormat == nil || *p.PayloadFormat != 1 || len(p.SubscriptionIDs) != 1 || p.SubscriptionIDs[0] != 9 {
		t.Errorf("text record lost something: %s", lines[0])
	}
	if _, err := time.Parse(time.RFC3339Nano, r1.Time); err != nil {
		t.Errorf("time %q: %v", r1.Time, err)
	}
	if r2.Payload != "/wAB" || r2.PayloadEncoding != "base64" {
		t.Errorf("binary record: %s", lines[1])
	}

	ents, err := os.ReadDir(dump)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 {
		t.Fatalf("--dump wrote %d files, want 2 payloads and 2 sidecars", len(ents))
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), "rec_bin") {
			b, _ := os.ReadFile(filepath.Join(dump, e.Name()))
			if !bytes.Equal(b, []byte{0xff, 0x00, 0x01}) {
				t.Errorf("dumped payload %x", b)
			}
			var meta map[string]any
			side, _ := os.ReadFile(filepath.Join(dump, e.Name()+".json"))
			if err := json.Unmarshal(side, &meta); err != nil || meta["topic"] != "rec/bin" || meta["payload_bytes"] != float64(3) {
				t.Errorf("sidecar %s: %v", side, err)
			}
		}
	}
}

func TestReconnectsAfterBrokerRestart(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"rc/#"}, Count: 2, Reconnect: true})
	r.waitSubscribed(t)
	mpub(t, b.Port(), "-t", "rc/before", "-m", "before")
	// QoS 0: a restart before mosquitto has written it to us would lose
	// it, legitimately, and the test would then count two "after"s.
	r.waitOutput(t, "before\n")
	b.Restart()
	// The subscriber needs a moment to notice and redial: publish until it
	// has the second message, a bounded number of times.
	for i := 0; i < 100; i++ {
		mpub(t, b.Port(), "-t", "rc/after", "-m", "after")
		select {
		case err := <-r.done:
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, r.errb.String())
			}
			if got := r.out.String(); got != "before\nafter\n" {
				t.Errorf("stdout %q", got)
			}
			if !strings.Contains(r.errb.String(), "connection lost") || !strings.Contains(r.errb.String(), "reconnected") {
				t.Errorf("stderr does not tell about the reconnect:\n%s", r.errb.String())
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("no message after the restart; stderr:\n%s", r.errb.String())
}

func TestCancelStopsCleanly(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"x"}, Stats: true})
	r.waitSubscribed(t)
	cancel()
	if err := r.wait(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if !strings.Contains(r.errb.String(), "0 messages on 0 topics") {
		t.Errorf("--stats report missing at exit:\n%s", r.errb.String())
	}
}

func TestTLSAndWebSocketTransports(t *testing.T) {
	mosquittotest.RequireClients(t)
	pki := testpki.New(t)
	ca := pki.CAFile
	cert, key := pki.Server(t, "server", "127.0.0.1", "localhost")
	tlsL := &mosquittotest.TLS{CAFile: ca, CertFile: cert, KeyFile: key}
	b := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{}, {TLS: tlsL}, {WebSockets: true}, {WebSockets: true, TLS: tlsL}}})
	urls := map[string]string{
		"mqtts": fmt.Sprintf("mqtts://127.0.0.1:%d", b.Ports[1]),
		"ws":    fmt.Sprintf("ws://127.0.0.1:%d/mqtt", b.Ports[2]),
		"wss":   fmt.Sprintf("wss://127.0.0.1:%d/mqtt", b.Ports[3]),
	}
	for _, name := range []string{"mqtts", "ws", "wss"} {
		for _, ver := range versions {
			t.Run(name+"/"+ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c := mqttconn.Default()
				c.URL, c.Version = urls[name], ver.v
				if name != "ws" {
					c.TLS.CAFile = ca
				}
				topic := "tr/" + name + "/" + ver.name
				r := startSub(t, ctx, 0, ver.v, &Options{Conn: c, Topics: []string{topic}, Count: 1, Verbose: true})
				r.waitSubscribed(t)
				mpub(t, b.Port(), "-t", topic, "-m", "over "+name)
				if err := r.wait(t); err != nil {
					t.Fatalf("Run: %v\n%s", err, r.errb.String())
				}
				if got := r.out.String(); got != topic+" over "+name+"\n" {
					t.Errorf("stdout %q", got)
				}
			})
		}
	}
}

func TestStyledTerminalView(t *testing.T) {
	var out bytes.Buffer
	env := func(string) string { return "" }
	o := &Options{IO: &ui.Streams{Out: ui.NewStream(&out, true, ui.ColorAlways, env), Err: ui.NewStream(io.Discard, false, ui.ColorNever, env)}}
	p := newPrinter(o, nil)
	if p.mode != OutputStyled {
		t.Fatalf("a terminal should get the styled view, got %q", p.mode)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p.print(&mqttconn.Message{Topic: "home/kitchen/temp", QoS: 1, Retain: true, Payload: []byte(`{"t":21.5,"ok":true,"s":"x"}`)}, now)
	p.print(&mqttconn.Message{Topic: "bin", Payload: []byte{0xff, 0x1b, 'a'}}, now)
	// de ad is valid UTF-8 by accident; the whole payload is still binary.
	p.print(&mqttconn.Message{Topic: "bin2", Payload: []byte{0xde, 0xad, 0xbe, 0xef, 0x00}}, now)
	p.print(&mqttconn.Message{Topic: "ctl", Payload: []byte("a\x1b[2Jb")}, now)
	p.print(&mqttconn.Message{Topic: "evil\x1b]0;title\x07", Payload: []byte("x")}, now)
	if err := p.flush(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(got, "")
	for _, want := range []string{"03:04:05.000 home/kitchen/temp  q1   retained \n", `  "t": 21.5,`, "bin binary, 3 bytes: ff 1b 61\n",
		"bin2 binary, 5 bytes: de ad be ef 00\n", `ctl escaped: a\x1b[2Jb`} {
		if !strings.Contains(plain, want) {
			t.Errorf("styled view lacks %q:\n%s", want, plain)
		}
	}
	if !strings.Contains(got, "\x1b[") {
		t.Error("styled view has no colour on a colour terminal")
	}
	if !strings.Contains(plain, `evil\x1b]0;title\x07`) {
		t.Errorf("a topic with control characters was not escaped:\n%q", plain)
	}
	if strings.Contains(got, "\xff") || strings.Contains(plain, "\x1ba") || strings.Contains(got, "\x1b]0") {
		t.Error("raw binary bytes reached the terminal")
	}

	// Piped: plain payloads, nothing added.
	out.Reset()
	o.IO.Out = ui.NewStream(&out, false, ui.ColorAuto, env)
	p = newPrinter(o, nil)
	p.print(&mqttconn.Message{Topic: "a", Payload: []byte(`{"t":1}`)}, now)
	_ = p.flush()
	if out.String() != "{\"t\":1}\n" {
		t.Errorf("piped output %q", out.String())
	}
}

// With -c the broker keeps the session across the reconnect: messages
// published while the subscriber was away are delivered when it is back.
func TestReconnectKeepsPersistentSession(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{Persistence: true})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := mqttconn.Default()
			c.Host, c.Port, c.Version, c.NoClean, c.ClientID = "127.0.0.1", b.Port(), ver.v, true, "sub-session-"+ver.name
			topic := "sess/" + ver.name
			r := startSub(t, ctx, 0, ver.v, &Options{Conn: c, Topics: []string{topic}, QoS: []byte{1}, Count: 2, Reconnect: true})
			r.waitSubscribed(t)
			mpub(t, b.Port(), "-q", "1", "-t", topic, "-m", "before")
			// Wait for "before" so that it is not still in flight at the restart.
			for i := 0; i < 200 && r.out.String() == ""; i++ {
				time.Sleep(20 * time.Millisecond)
			}
			b.Restart()
			mpub(t, b.Port(), "-q", "1", "-t", topic, "-m", "while away")
			if err := r.wait(t); err != nil {
				t.Fatalf("Run: %v\n%s", err, r.errb.String())
			}
			if got := r.out.String(); got != "before\nwhile away\n" {
				t.Errorf("stdout %q", got)
			}
			if !strings.Contains(r.errb.String(), "reconnected") {
				t.Errorf("stderr: %s", r.errb.String())
			}
		})
	}
}

// recordingClient keeps the subscriptions Run asked for.
type recordingClient struct {
	mqttconn.Client
	mu   *sync.Mutex
	subs *[]mqttconn.Subscription
}

func (c recordingClient) Subscribe(ctx context.Context, s []mqttconn.Subscription) ([]byte, error) {
	c.mu.Lock()
	*c.subs = append(*c.subs, s...)
	c.mu.Unlock()
	return c.Client.Subscribe(ctx, s)
}

func TestSubscribeOptionsV5(t *testing.T) {
	mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	for _, rap := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		o := &Options{Topics: []string{"opt/a", "opt/b"}, QoS: []byte{1, 2}, Count: 1, Output: OutputJSONL,
			RetainAsPublished: rap, NoLocal: true, RetainHandling: 1, SubscriptionID: 42}
		r := startSub(t, ctx, b.Port(), mqttconn.V5, o)
		r.waitSubscribed(t)
		// A retained message published while subscribed keeps its retain
		// flag only with retain-as-published [MQTT-3.3.1-12].
		mpub(t, b.Port(), "-r", "-t", "opt/a", "-m", "live")
		if err := r.wait(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		cancel()
		var rec mqttconn.Record
		if err := json.Unmarshal(bytes.TrimSpace([]byte(r.out.String())), &rec); err != nil {
			t.Fatalf("%q: %v", r.out.String(), err)
		}
		if rec.Retain != rap {
			t.Errorf("retain-as-published=%v: record retain=%v", rap, rec.Retain)
		}
		if rec.Properties == nil || fmt.Sprint(rec.Properties.SubscriptionIDs) != "[42]" {
			t.Errorf("subscription id missing from the record: %s", r.out.String())
		}
		mpub(t, b.Port(), "-r", "-t", "opt/a", "-n")
	}

	// The options reach the SUBSCRIBE as given, per topic QoS in order.
	var mu sync.Mutex
	var subs []mqttconn.Subscription
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := func(string) string { return "" }
	c := mqttconn.Default()
	c.Host, c.Port = "127.0.0.1", b.Port()
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	o := &Options{Conn: c, Topics: []string{"opt/a", "opt/b"}, QoS: []byte{1, 2}, ExitAfterSuback: true,
		NoLocal: true, RetainAsPublished: true, RetainHandling: 2, SubscriptionID: 42,
		IO: &ui.Streams{Out: ui.NewStream(io.Discard, false, ui.ColorNever, env), Err: ui.NewStream(io.Discard, false, ui.ColorNever, env)},
		Dial: func(ctx context.Context, c mqttconn.Config) (mqttconn.Client, error) {
			cl, err := mqttconn.Dial(ctx, c)
			if err != nil {
				return nil, err
			}
			return recordingClient{Client: cl, mu: &mu, subs: &subs}, nil
		}}
	if err := Run(ctx, o); err != nil {
		t.Fatal(err)
	}
	want := "[{opt/a 1 true true 2 42} {opt/b 2 true true 2 42}]"
	if got := fmt.Sprint(subs); got != want {
		t.Errorf("SUBSCRIBE carried %s, want %s", got, want)
	}
}

func TestNoReconnectEndsWithNetworkError(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"x"}, Reconnect: false})
	r.waitSubscribed(t)
	b.Kill()
	err := r.wait(t)
	if mqttconn.KindOf(err) != mqttconn.KindNetwork || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("want a network error (exit 3) naming the lost connection, got %v", err)
	}
}
