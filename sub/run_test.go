package sub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/testpki"
	"github.com/mqtk/mqtk/internal/ui"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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
	out, errb *ui.SyncBuffer
	subbed    chan struct{}
	done      chan error
}

// startSub runs Run in the background against port with the given version.
func startSub(t *testing.T, ctx context.Context, port int, v mqttconn.Version, o *Options) *subRun {
	t.Helper()
	return startSubHook(t, ctx, port, v, o, nil)
}

// startSubHook is startSub with hook applied to the Config of every dial
// (to watch what the connection receives, say).
func startSubHook(t *testing.T, ctx context.Context, port int, v mqttconn.Version, o *Options, hook func(mqttconn.Config) mqttconn.Config) *subRun {
	t.Helper()
	r := &subRun{out: &ui.SyncBuffer{}, errb: &ui.SyncBuffer{}, subbed: make(chan struct{}), done: make(chan error, 1)}
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
		if hook != nil {
			c = hook(c)
		}
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

// publish sends msgs, in order, from a client of its own (MQTT 5, the
// connection layer's paho client) to the broker on port, and returns once
// the broker has handled them: it answers a SUBSCRIBE sent after them on
// the same connection only after routing the PUBLISH packets before it,
// as both brokers handle a connection's packets in order. A QoS 0 message
// is thus in place (retained, queued or delivered) on return, like one
// at QoS 1 or 2.
func publish(t *testing.T, port int, msgs ...mqttconn.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := mqttconn.Default()
	c.Host, c.Port = "127.0.0.1", port
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	cl, err := mqttconn.Dial(ctx, c)
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	defer func() { _ = cl.Disconnect(ctx) }()
	for i := range msgs {
		if err := cl.Publish(ctx, &msgs[i]); err != nil {
			t.Fatalf("publish to %s: %v", msgs[i].Topic, err)
		}
	}
	if _, err := cl.Subscribe(ctx, []mqttconn.Subscription{{Filter: "sub-test/fence"}}); err != nil {
		t.Fatalf("publisher's fence SUBSCRIBE: %v", err)
	}
}

var versions = []struct {
	name string
	v    mqttconn.Version
	flag string
}{{"v5", mqttconn.V5, "mqttv5"}, {"v311", mqttconn.V311, "mqttv311"}}

func TestCountVerboseAndLiveOutput(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{"cnt/" + ver.name + "/#"}, Count: 3, Verbose: true, QoS: []byte{1}})
				r.waitSubscribed(t)
				for i := 1; i <= 4; i++ {
					publish(t, b.Port(), mqttconn.Message{Topic: fmt.Sprintf("cnt/%s/%d", ver.name, i), Payload: []byte(fmt.Sprintf("msg %d", i)), QoS: 1})
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
	})
}

func TestTimeoutIsKindTimeout(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{"nothing/here"}, Count: 1, Timeout: 300 * time.Millisecond})
				err := r.wait(t)
				if clierr.KindOf(err) != clierr.KindTimeout {
					t.Fatalf("want a timeout (exit 27), got %v (kind %d)", err, clierr.KindOf(err))
				}
				if !strings.Contains(err.Error(), "0 of 1 messages") {
					t.Errorf("timeout message does not say how far it got: %v", err)
				}
			})
		}
	})
}

func TestMatch(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				filter := "dev/" + ver.name + "/+/state"
				topic := func(dev string) string { return "dev/" + ver.name + "/" + dev + "/state" }
				m, err := CompileMatch(`jq:.status == "ok"`)
				if err != nil {
					t.Fatal(err)
				}
				r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{filter}, Count: 1, Timeout: 20 * time.Second, Match: m})
				r.waitSubscribed(t)
				publish(t, b.Port(), mqttconn.Message{Topic: topic("1"), Payload: []byte(`{"status":"booting"}`)})
				publish(t, b.Port(), mqttconn.Message{Topic: topic("1"), Payload: []byte(`not json`)})
				publish(t, b.Port(), mqttconn.Message{Topic: topic("2"), Payload: []byte(`{"status":"ok","n":2}`)})
				if err := r.wait(t); err != nil {
					t.Fatalf("Run: %v", err)
				}
				if got := r.out.String(); got != "{\"status\":\"ok\",\"n\":2}\n" {
					t.Errorf("stdout %q: want only the matching payload", got)
				}

				// No match before the timeout: KindUnmet (exit 7), not a plain timeout.
				re, _ := CompileMatch("re:^never$")
				r = startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{filter}, Count: 1, Timeout: 500 * time.Millisecond, Match: re})
				r.waitSubscribed(t)
				publish(t, b.Port(), mqttconn.Message{Topic: topic("3"), Payload: []byte(`other`)})
				err = r.wait(t)
				if clierr.KindOf(err) != clierr.KindUnmet {
					t.Fatalf("want KindUnmet, got %v", err)
				}
				if r.out.String() != "" {
					t.Errorf("non-matching message printed: %q", r.out.String())
				}
			})
		}
	})
}

// --match with -W or --idle and no -C waits for any match: with matches
// the run ends with success, without any it is unmet (exit 7). With -C N,
// fewer than N matches is unmet whichever ends the run.
func TestMatchEndedByTimeoutOrIdle(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			// Retained, so that they arrive right after the SUBACK, long
			// before the run's -W or --idle ends it.
			prefix := "mt/" + ver.name + "/"
			publish(t, b.Port(), mqttconn.Message{Topic: prefix + "1", Payload: []byte("ok 1"), Retain: true})
			publish(t, b.Port(), mqttconn.Message{Topic: prefix + "2", Payload: []byte("no"), Retain: true})
			publish(t, b.Port(), mqttconn.Message{Topic: prefix + "3", Payload: []byte("ok 3"), Retain: true})
			for _, c := range []struct {
				name    string
				match   string
				count   int
				timeout time.Duration
				idle    time.Duration
				unmet   string // "" when the run must succeed
			}{
				{"W matched", "re:^ok", 0, 2 * time.Second, 0, ""},
				{"idle matched", "re:^ok", 0, 0, time.Second, ""},
				{"W none", "re:^never", 0, time.Second, 0, "0 of 1 matching messages before the 1s timeout"},
				{"idle none", "re:^never", 0, 0, time.Second, "0 of 1 matching messages before 1s without messages"},
				{"W too few", "re:^ok", 3, 5 * time.Second, 0, "2 of 3 matching messages before the 5s timeout"},
				{"idle too few", "re:^ok", 3, 0, time.Second, "2 of 3 matching messages before 1s without messages"},
			} {
				t.Run(ver.name+"/"+c.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					m, err := CompileMatch(c.match)
					if err != nil {
						t.Fatal(err)
					}
					r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{prefix + "#"}, Match: m, Count: c.count,
						Timeout: c.timeout, Idle: c.idle, Verbose: true})
					err = r.wait(t)
					if c.unmet == "" {
						if err != nil {
							t.Fatalf("want success, got %v", err)
						}
						if got := sortLines(r.out.String()); got != prefix+"1 ok 1\n"+prefix+"3 ok 3\n" {
							t.Errorf("stdout %q", got)
						}
						return
					}
					if clierr.KindOf(err) != clierr.KindUnmet || !strings.Contains(err.Error(), c.unmet) {
						t.Fatalf("want KindUnmet saying %q, got %v (kind %d)", c.unmet, err, clierr.KindOf(err))
					}
				})
			}
		}
	})
}

func sortLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	sort.Strings(lines)
	return strings.Join(lines, "")
}

func TestIdleEnds(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{"idle/" + ver.name + "/#"}, Idle: 500 * time.Millisecond})
				r.waitSubscribed(t)
				publish(t, b.Port(), mqttconn.Message{Topic: "idle/" + ver.name + "/a", Payload: []byte("one")})
				if err := r.wait(t); err != nil {
					t.Fatalf("--idle should end with success, got %v", err)
				}
				if r.out.String() != "one\n" {
					t.Errorf("stdout %q", r.out.String())
				}
			})
		}
	})
}

func TestRetainedSelection(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, tp := range []string{"ret/a/1", "ret/a/2", "ret/b/1"} {
			publish(t, b.Port(), mqttconn.Message{Topic: tp, Payload: []byte("v-" + tp), Retain: true})
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
				publish(t, b.Port(), mqttconn.Message{Topic: "ret/live", Payload: []byte("live")})
				if err := r.wait(t); err != nil {
					t.Fatalf("Run: %v", err)
				}
				if r.out.String() != "live\n" {
					t.Errorf("-R printed %q, want only the live message", r.out.String())
				}
			})
		}
	})
}

func TestRemoveRetained(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				filter := "rm/" + ver.name + "/#"
				publish(t, b.Port(), mqttconn.Message{Topic: "rm/" + ver.name + "/1", Payload: []byte("x"), Retain: true})
				publish(t, b.Port(), mqttconn.Message{Topic: "rm/" + ver.name + "/2", Payload: []byte("yy"), Retain: true})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				run := func(o *Options) *subRun {
					r := startSub(t, ctx, b.Port(), ver.v, o)
					if err := r.wait(t); err != nil {
						t.Fatalf("Run: %v\n%s", err, r.errb.String())
					}
					return r
				}
				// -T keeps what it filters out from being cleared, as
				// mosquitto_sub's man page says; --dry-run does not list it.
				keep := "rm/" + ver.name + "/keep/#"
				publish(t, b.Port(), mqttconn.Message{Topic: "rm/" + ver.name + "/keep/3", Payload: []byte("zzz"), Retain: true})
				r := run(&Options{Topics: []string{filter}, RetainedOnly: true, RemoveRetained: true, DryRun: true, FilterOut: []string{keep}})
				if e := r.errb.String(); !strings.Contains(e, "would clear the retained message on rm/"+ver.name+"/1") || !strings.Contains(e, "rm/"+ver.name+"/2") {
					t.Errorf("--dry-run did not list both topics:\n%s", e)
				}
				if e := r.errb.String(); strings.Contains(e, "/keep/3") {
					t.Errorf("--dry-run lists a topic excluded with -T:\n%s", e)
				}
				if r := run(&Options{Topics: []string{filter}, RetainedOnly: true}); sortLines(r.out.String()) != "x\nyy\nzzz\n" {
					t.Fatalf("--dry-run cleared something: %q", r.out.String())
				}
				run(&Options{Topics: []string{filter}, RetainedOnly: true, RemoveRetained: true, FilterOut: []string{keep}})
				if r := run(&Options{Topics: []string{filter}, RetainedOnly: true, Verbose: true}); r.out.String() != "rm/"+ver.name+"/keep/3 zzz\n" {
					t.Errorf("after --remove-retained -T %s, want only that topic's retained message left, got %q", keep, r.out.String())
				}
				run(&Options{Topics: []string{filter}, RetainedOnly: true, RemoveRetained: true})
				if r := run(&Options{Topics: []string{filter}, RetainedOnly: true}); r.out.String() != "" {
					t.Errorf("retained messages still there after --remove-retained: %q", r.out.String())
				}
			})
		}
	})
}

// With --remove-retained, the clearing PUBLISH goes out on the
// subscriber's own connection and matches its filter: the broker echoes
// it back unless the subscription has no-local [MQTT-3.8.3-3].
func TestNoLocalSuppressesOwnEcho(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, noLocal := range []bool{false, true} {
			t.Run(fmt.Sprintf("no-local=%v", noLocal), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				prefix := fmt.Sprintf("nl/%v/", noLocal)
				publish(t, b.Port(), mqttconn.Message{Topic: prefix + "kept", Payload: []byte("old"), Retain: true})
				var mu sync.Mutex
				echoes := 0 // empty, not retained, on the cleared topic: our own clearing PUBLISH
				record := func(c mqttconn.Config) mqttconn.Config {
					next := c.OnMessage
					c.OnMessage = func(m *mqttconn.Message) {
						if m.Topic == prefix+"kept" && !m.Retain && len(m.Payload) == 0 {
							mu.Lock()
							echoes++
							mu.Unlock()
						}
						next(m)
					}
					return c
				}
				r := startSubHook(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{prefix + "#"}, RemoveRetained: true,
					NoLocal: noLocal, Count: 2, Verbose: true}, record)
				// The clearing PUBLISH is written before the message is printed,
				// so the broker handles it before the live one published next,
				// and an echo would arrive before the live message.
				r.waitOutput(t, prefix+"kept old\n")
				publish(t, b.Port(), mqttconn.Message{Topic: prefix + "live", Payload: []byte("new")})
				if err := r.wait(t); err != nil {
					t.Fatalf("Run: %v\n%s", err, r.errb.String())
				}
				if got := r.out.String(); got != prefix+"kept old\n"+prefix+"live new\n" {
					t.Errorf("stdout %q: the echo of the clearing message must not be printed", got)
				}
				mu.Lock()
				defer mu.Unlock()
				if want := map[bool]int{false: 1, true: 0}[noLocal]; echoes != want {
					t.Errorf("--no-local=%v: the connection received its own clearing message %d times, want %d", noLocal, echoes, want)
				}
				// And the retained message is gone either way.
				r = startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{prefix + "#"}, RetainedOnly: true})
				if err := r.wait(t); err != nil || r.out.String() != "" {
					t.Errorf("after --remove-retained: %v, stdout %q", err, r.out.String())
				}
			})
		}
	})
}

func TestJSONLRecordAndDump(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				dump := t.TempDir()
				v5 := ver.v == mqttconn.V5
				prefix := "rec/" + ver.name + "/"
				o := &Options{Topics: []string{prefix + "#"}, Count: 2, Output: OutputJSONL, DumpDir: dump, QoS: []byte{1}}
				if v5 {
					o.SubscriptionID = 9
				}
				r := startSub(t, ctx, b.Port(), ver.v, o)
				r.waitSubscribed(t)
				utf8 := byte(1)
				publish(t, b.Port(), mqttconn.Message{Topic: prefix + "text", Payload: []byte("héllo"), QoS: 1,
					UserProperties: []mqttconn.UserProperty{{Key: "k", Value: "v"}}, ContentType: "text/plain",
					ResponseTopic: "rec/reply", CorrelationData: []byte("abc"), PayloadFormat: &utf8})
				publish(t, b.Port(), mqttconn.Message{Topic: prefix + "bin", Payload: []byte{0xff, 0x00, 0x01}})
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
				if r1.Topic != prefix+"text" || r1.Payload != "héllo" || r1.PayloadEncoding != "utf8" || r1.QoS != 1 || r1.PacketID == 0 {
					t.Errorf("text record: %s", lines[0])
				}
				if p := r1.Properties; v5 && (p == nil ||
					p.ContentType != "text/plain" || p.ResponseTopic != "rec/reply" || p.CorrelationData != "YWJj" ||
					len(p.UserProperties) != 1 || p.UserProperties[0] != (mqttconn.UserProperty{Key: "k", Value: "v"}) ||
					p.PayloadFormat == nil || *p.PayloadFormat != 1 || len(p.SubscriptionIDs) != 1 || p.SubscriptionIDs[0] != 9) {
					t.Errorf("text record lost a property: %s", lines[0])
				}
				if !v5 && r1.Properties != nil {
					t.Errorf("MQTT 3.1.1 has no properties, the record shows some: %s", lines[0])
				}
				if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$`).MatchString(r1.Time) {
					t.Errorf("time %q: want RFC 3339 UTC with nine fraction digits", r1.Time)
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
				found := 0
				for _, e := range ents {
					if strings.HasSuffix(e.Name(), "_bin") {
						found++
						b, _ := os.ReadFile(filepath.Join(dump, e.Name()))
						if !bytes.Equal(b, []byte{0xff, 0x00, 0x01}) {
							t.Errorf("dumped payload %x", b)
						}
						var meta map[string]any
						side, _ := os.ReadFile(filepath.Join(dump, e.Name()+".json"))
						if err := json.Unmarshal(side, &meta); err != nil || meta["topic"] != prefix+"bin" || meta["payload_bytes"] != float64(3) {
							t.Errorf("sidecar %s: %v", side, err)
						}
					}
				}
				if found != 1 {
					t.Errorf("--dump: %d payload files for %sbin, want 1: %v", found, prefix, ents)
				}
			})
		}
	})
}

// -U removes a subscription from a persistent session, on both versions.
func TestUnsubscribeFromSession(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				conn := func() mqttconn.Config {
					c := mqttconn.Default()
					c.Host, c.Port, c.Version, c.NoClean, c.ClientID = "127.0.0.1", b.Port(), ver.v, true, "sub-unsub-"+ver.name
					return c
				}
				a, k := "un/"+ver.name+"/a", "un/"+ver.name+"/b"
				run := func(o *Options) *subRun {
					r := startSub(t, ctx, 0, ver.v, o)
					if err := r.wait(t); err != nil {
						t.Fatalf("Run: %v\n%s", err, r.errb.String())
					}
					return r
				}
				run(&Options{Conn: conn(), Topics: []string{a, k}, QoS: []byte{1}, ExitAfterSuback: true})
				run(&Options{Conn: conn(), Unsubscribe: []string{a}})
				// Queued for the session while nobody is connected: only what
				// it is still subscribed to.
				publish(t, b.Port(), mqttconn.Message{Topic: a, Payload: []byte("dropped"), QoS: 1})
				publish(t, b.Port(), mqttconn.Message{Topic: k, Payload: []byte("kept"), QoS: 1})
				r := run(&Options{Conn: conn(), Topics: []string{k}, QoS: []byte{1}, Count: 1, Verbose: true})
				if got := r.out.String(); got != k+" kept\n" {
					t.Errorf("after -U %s: first queued message %q, want only %s's", a, got, k)
				}
			})
		}
	})
}

// Two subscribers in one $share group split the messages: each gets some,
// none gets one twice, together they get them all.
func TestSharedSubscriptionSplits(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				topic := "sh/" + ver.name + "/x"
				var runs []*subRun
				var cancels []context.CancelFunc
				for i := 0; i < 2; i++ {
					rctx, rcancel := context.WithCancel(ctx)
					cancels = append(cancels, rcancel)
					r := startSub(t, rctx, b.Port(), ver.v, &Options{Topics: []string{"$share/grp/sh/" + ver.name + "/#"}, QoS: []byte{1}})
					r.waitSubscribed(t)
					runs = append(runs, r)
				}
				const n = 40
				msgs := make([]mqttconn.Message, n)
				for i := range msgs {
					msgs[i] = mqttconn.Message{Topic: topic, QoS: 1, Payload: fmt.Appendf(nil, "m%02d", i)}
				}
				publish(t, b.Port(), msgs...)
				lines := func() []string {
					var all []string
					for _, r := range runs {
						all = append(all, strings.Fields(r.out.String())...)
					}
					return all
				}
				for i := 0; i < 600 && len(lines()) < n; i++ {
					time.Sleep(25 * time.Millisecond)
				}
				for i, r := range runs {
					cancels[i]()
					if err := r.wait(t); !errors.Is(err, context.Canceled) {
						t.Errorf("subscriber %d: %v\n%s", i, err, r.errb.String())
					}
				}
				got := lines()
				sort.Strings(got)
				if len(got) != n {
					t.Fatalf("the group received %d messages, want %d: %v", len(got), n, got)
				}
				for i, m := range got {
					if m != fmt.Sprintf("m%02d", i) {
						t.Fatalf("message %d is %q: duplicated or lost ones in %v", i, m, got)
					}
				}
				for i, r := range runs {
					if r.out.String() == "" {
						// Both brokers deliver round robin within a group.
						t.Errorf("subscriber %d received nothing: the group did not share", i)
					}
				}
			})
		}
	})
}

// --retain-handling 1 sends retained messages for a new subscription only:
// subscribing again in the same (persistent) session gets none.
func TestRetainHandlingOne(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		publish(t, b.Port(), mqttconn.Message{Topic: "rh/x", Payload: []byte("kept"), Retain: true})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		run := func(id string, rh byte) string {
			c := mqttconn.Default()
			c.Host, c.Port, c.NoClean, c.ClientID = "127.0.0.1", b.Port(), true, id
			r := startSub(t, ctx, 0, mqttconn.V5, &Options{Conn: c, Topics: []string{"rh/#"}, RetainHandling: rh, RetainedOnly: true, Verbose: true})
			if err := r.wait(t); err != nil {
				t.Fatalf("Run: %v\n%s", err, r.errb.String())
			}
			return r.out.String()
		}
		for _, c := range []struct {
			what, id string
			rh       byte
			want     string
		}{
			{"first subscription, handling 1", "rh-a", 1, "rh/x kept\n"},
			{"same session again, handling 1", "rh-a", 1, ""},
			{"same session again, handling 0", "rh-a", 0, "rh/x kept\n"},
			{"another session, handling 1", "rh-b", 1, "rh/x kept\n"},
			{"handling 2", "rh-c", 2, ""},
		} {
			if got := run(c.id, c.rh); got != c.want {
				t.Errorf("%s: stdout %q, want %q", c.what, got, c.want)
			}
		}
	})
}

// A persistent session can hold an earlier run's --retained-only sync
// message, sent again because that run's connection ended before the
// broker read its PUBACK. It is mqtk's own traffic: it neither ends the
// run (it has no retain flag) nor prints.
func TestRetainedOnlyIgnoresAnEarlierRunsSync(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := mqttconn.Default()
		c.Host, c.Port, c.NoClean, c.ClientID = "127.0.0.1", b.Port(), true, "stale-sync"
		if err := c.Resolve(); err != nil {
			t.Fatal(err)
		}
		old := sentinelPrefix + "0123456789abcdef"
		cl, err := mqttconn.Dial(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Subscribe(ctx, []mqttconn.Subscription{{Filter: old, QoS: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := cl.Disconnect(ctx); err != nil {
			t.Fatal(err)
		}
		publish(t, b.Port(), mqttconn.Message{Topic: old, QoS: 1, Payload: []byte("sync")},
			mqttconn.Message{Topic: "stale/x", Payload: []byte("kept"), Retain: true})
		r := startSub(t, ctx, 0, mqttconn.V5, &Options{Conn: c, Topics: []string{"stale/#"}, RetainedOnly: true, Verbose: true})
		if err := r.wait(t); err != nil {
			t.Fatalf("Run: %v\n%s", err, r.errb.String())
		}
		if got := r.out.String(); got != "stale/x kept\n" {
			t.Errorf("stdout %q, want the retained message only", got)
		}
	})
}

// --stats counts what was printed, per topic, on stderr at the end.
func TestStatsReportEndToEnd(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				prefix := "st/" + ver.name + "/"
				r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{prefix + "#"}, Stats: true, Count: 5, FilterOut: []string{prefix + "skip"}})
				r.waitSubscribed(t)
				for _, m := range [][2]string{{"a", "1"}, {"skip", "x"}, {"b", "22"}, {"a", "333"}, {"b", "4444"}, {"a", "55555"}} {
					publish(t, b.Port(), mqttconn.Message{Topic: prefix + m[0], Payload: []byte(m[1])})
				}
				if err := r.wait(t); err != nil {
					t.Fatalf("Run: %v\n%s", err, r.errb.String())
				}
				report := r.errb.String()
				for _, re := range []string{
					`(?m)^TOPIC\s+MESSAGES\s+MSG/S\s+BYTES$`,
					`(?m)^` + prefix + `a\s+3\s+\d+\.\d\s+9$`,
					`(?m)^` + prefix + `b\s+2\s+\d+\.\d\s+6$`,
					`(?m)^5 messages on 2 topics in `,
				} {
					if !regexp.MustCompile(re).MatchString(report) {
						t.Errorf("--stats report lacks %s:\n%s", re, report)
					}
				}
				if strings.Contains(report, prefix+"skip") {
					t.Errorf("--stats counted a filtered-out topic:\n%s", report)
				}
			})
		}
	})
}

// --retained-only ends even where mqtk may not publish its sync message:
// refused (SUBACK or v5 PUBACK) or silently dropped (3.1.1), the run ends
// after a quiet period with a line on stderr saying why.
func TestRetainedOnlyWithoutPublishRights(t *testing.T) {
	for _, acl := range []struct{ name, text string }{
		{"no read or write", "topic readwrite ro/#\n"},
		{"read only", "topic readwrite ro/#\ntopic read mqtk/retained-sync/#\n"},
	} {
		aclFile := filepath.Join(t.TempDir(), "acl")
		if err := os.WriteFile(aclFile, []byte(acl.text), 0o644); err != nil {
			t.Fatal(err)
		}
		brokertest.Each(t, mosquittotest.Options{ACLFile: aclFile}, func(t *testing.T, b *brokertest.Broker) {
			publish(t, b.Port(), mqttconn.Message{Topic: "ro/1", Payload: []byte("one"), Retain: true})
			publish(t, b.Port(), mqttconn.Message{Topic: "ro/2", Payload: []byte("two"), Retain: true})
			for _, ver := range versions {
				t.Run(acl.name+"/"+ver.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					r := startSub(t, ctx, b.Port(), ver.v, &Options{Topics: []string{"ro/#"}, RetainedOnly: true, Verbose: true})
					if err := r.wait(t); err != nil {
						t.Fatalf("Run: %v\n%s", err, r.errb.String())
					}
					if got := r.out.String(); got != "ro/1 one\nro/2 two\n" {
						t.Errorf("stdout %q", got)
					}
					if e := r.errb.String(); !strings.Contains(e, "--retained-only:") || !strings.Contains(e, "mqtk/retained-sync/") {
						t.Errorf("stderr does not say why the sync did not work:\n%s", e)
					}
				})
			}
		})
	}
}

func TestReconnectsAfterBrokerRestart(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"rc/#"}, Count: 2, Reconnect: true})
		r.waitSubscribed(t)
		publish(t, b.Port(), mqttconn.Message{Topic: "rc/before", Payload: []byte("before")})
		// QoS 0: a restart before mosquitto has written it to us would lose
		// it, legitimately, and the test would then count two "after"s.
		r.waitOutput(t, "before\n")
		b.Restart()
		// The subscriber needs a moment to notice and redial: publish until it
		// has the second message, a bounded number of times.
		for i := 0; i < 100; i++ {
			publish(t, b.Port(), mqttconn.Message{Topic: "rc/after", Payload: []byte("after")})
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
	})
}

func TestCancelStopsCleanly(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
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
	})
}

func TestTLSAndWebSocketTransports(t *testing.T) {
	pki := testpki.New(t)
	ca := pki.CAFile
	cert, key := pki.Server(t, "server", "127.0.0.1", "localhost")
	tlsL := &mosquittotest.TLS{CAFile: ca, CertFile: cert, KeyFile: key}
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{}, {TLS: tlsL}, {WebSockets: true}, {WebSockets: true, TLS: tlsL}}}, func(t *testing.T, b *brokertest.Broker) {
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
					publish(t, b.Port(), mqttconn.Message{Topic: topic, Payload: []byte("over " + name)})
					if err := r.wait(t); err != nil {
						t.Fatalf("Run: %v\n%s", err, r.errb.String())
					}
					if got := r.out.String(); got != topic+" over "+name+"\n" {
						t.Errorf("stdout %q", got)
					}
				})
			}
		}
	})
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
	// JSON that json.Valid accepts: invalid UTF-8 inside a string, and a
	// C1 CSI (U+009B) or DEL inside strings of otherwise valid UTF-8.
	p.print(&mqttconn.Message{Topic: "j/bad", Payload: []byte("{\"a\":\"\xff\xfe\",\"b\":\"\u009b2J\"}")}, now)
	p.print(&mqttconn.Message{Topic: "j/c1", Payload: []byte("{\"b\":\"\u009b2J\",\"d\":\"x\x7fy\",\"ü\":1}")}, now)
	p.print(&mqttconn.Message{Topic: "j/raw9b", Payload: []byte("{\"b\":\"\x9b2J\"}")}, now)
	if err := p.flush(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(got, "")
	for _, want := range []string{"03:04:05.000 home/kitchen/temp  q1   retained \n", `  "t": 21.5,`, "bin binary, 3 bytes: ff 1b 61\n",
		"bin2 binary, 5 bytes: de ad be ef 00\n", `ctl escaped: a\x1b[2Jb`,
		"j/bad binary, 21 bytes: 7b 22 61 22 3a 22 ff fe", "j/raw9b binary, 11 bytes: 7b 22 62 22 3a 22 9b",
		`  "b": "\u009b2J",`, `  "d": "x\u007fy",`, `  "ü": 1`} {
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
	if strings.Contains(got, "\xff") || strings.Contains(plain, "\x1ba") || strings.Contains(got, "\x1b]0") ||
		strings.Contains(got, "\u009b") || strings.Contains(got, "\x7f") || strings.Contains(got, "\xfe") || strings.Contains(got, "\x9b2J") {
		t.Errorf("raw binary or control bytes reached the terminal:\n%q", got)
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

	// --output styled by name: the terminal view even into a pipe, and
	// escaped as on a terminal.
	out.Reset()
	o.Output = OutputStyled
	p = newPrinter(o, nil)
	p.print(&mqttconn.Message{Topic: "t\x1b", Payload: []byte("{\"b\":\"\u009b\"}")}, now)
	_ = p.flush()
	if got := out.String(); got != "03:04:05.000 t\\x1b\n  {\n    \"b\": \"\\u009b\"\n  }\n" {
		t.Errorf("--output styled into a pipe: %q", got)
	}
}

// jsonl on a terminal escapes what encoding/json leaves raw (U+0080 to
// U+009F); piped, it is encoding/json's output byte for byte.
func TestJSONLEscapesC1OnATerminal(t *testing.T) {
	env := func(string) string { return "" }
	m := &mqttconn.Message{Topic: "c1/\u009b", Payload: []byte("a\u009b[2Jb"), ContentType: "x\u0085",
		Received: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, tty := range []bool{true, false} {
		var out bytes.Buffer
		o := &Options{Output: OutputJSONL, IO: &ui.Streams{Out: ui.NewStream(&out, tty, ui.ColorNever, env)}}
		p := newPrinter(o, nil)
		p.print(m, m.Received)
		_ = p.flush()
		line := bytes.TrimSuffix(out.Bytes(), []byte("\n"))
		want, _ := json.Marshal(mqttconn.NewRecord(m))
		if !tty && !bytes.Equal(line, want) {
			t.Errorf("piped jsonl %q, want encoding/json's %q", line, want)
		}
		if tty && bytes.ContainsAny(line, "\u009b\u0085") {
			t.Errorf("jsonl on a terminal kept a C1 control: %q", line)
		}
		got, err := mqttconn.ParseRecord(line)
		if err != nil || string(got.Payload) != string(m.Payload) || got.Topic != m.Topic || got.ContentType != m.ContentType {
			t.Errorf("tty=%v: the record does not read back the same: %q (%v)", tty, line, err)
		}
	}
}

// With -c the broker keeps the session across the reconnect: messages
// published while the subscriber was away are delivered when it is back.
func TestReconnectKeepsPersistentSession(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{Persistence: true}, func(t *testing.T, b *brokertest.Broker) {
		for _, ver := range versions {
			t.Run(ver.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c := mqttconn.Default()
				c.Host, c.Port, c.Version, c.NoClean, c.ClientID = "127.0.0.1", b.Port(), ver.v, true, "sub-session-"+ver.name
				topic := "sess/" + ver.name
				r := startSub(t, ctx, 0, ver.v, &Options{Conn: c, Topics: []string{topic}, QoS: []byte{1}, Count: 2, Reconnect: true})
				r.waitSubscribed(t)
				publish(t, b.Port(), mqttconn.Message{Topic: topic, Payload: []byte("before"), QoS: 1})
				// Wait for "before" so that it is not still in flight at the restart.
				for i := 0; i < 200 && r.out.String() == ""; i++ {
					time.Sleep(20 * time.Millisecond)
				}
				b.Restart()
				publish(t, b.Port(), mqttconn.Message{Topic: topic, Payload: []byte("while away"), QoS: 1})
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
	})
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
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, rap := range []bool{false, true} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			o := &Options{Topics: []string{"opt/a", "opt/b"}, QoS: []byte{1, 2}, Count: 1, Output: OutputJSONL,
				RetainAsPublished: rap, NoLocal: true, RetainHandling: 1, SubscriptionID: 42}
			r := startSub(t, ctx, b.Port(), mqttconn.V5, o)
			r.waitSubscribed(t)
			// A retained message published while subscribed keeps its retain
			// flag only with retain-as-published [MQTT-3.3.1-12].
			publish(t, b.Port(), mqttconn.Message{Topic: "opt/a", Payload: []byte("live"), Retain: true})
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
			publish(t, b.Port(), mqttconn.Message{Topic: "opt/a", Retain: true})
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
	})
}

func TestNoReconnectEndsWithNetworkError(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r := startSub(t, ctx, b.Port(), mqttconn.V5, &Options{Topics: []string{"x"}, Reconnect: false})
		r.waitSubscribed(t)
		b.Kill()
		err := r.wait(t)
		if clierr.KindOf(err) != clierr.KindNetwork || !strings.Contains(err.Error(), "connection lost") {
			t.Fatalf("want a network error (exit 3) naming the lost connection, got %v", err)
		}
	})
}

// Every @ conversion is compared with mosquitto_sub's, which hands it to
// glibc's strftime. mosquitto_sub takes the time once per message, so its
// @s says exactly which second the rest of its line shows: mqtk formats
// that second and must write the same bytes, with no race against the
// clock. Running mosquitto_sub in every whole-hour zone from -12 to +14
// puts the local hour through every value (@l and @k pad 1 to 9 with a
// blank, @I with a zero).
func TestTimeConversionsLikeMosquittoSub(t *testing.T) {
	_, msub := mosquittotest.RequireClients(t)
	b := mosquittotest.Start(t, mosquittotest.Options{})
	publish(t, b.Port(), mqttconn.Message{Topic: "tz/x", Payload: []byte("x"), Retain: true})
	const conv = "@a|@A|@b|@B|@c|@C|@d|@D|@e|@F|@g|@G|@h|@H|@I|@j|@k|@l|@m|@M|@p|@P|@r|@R|@S|@T|@u|@U|@V|@w|@W|@x|@X|@y|@Y|@z|@Z|@%|@@"
	f, err := CompileFormat(conv)
	if err != nil {
		t.Fatalf("CompileFormat: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	padded := 0 // runs at an hour that @l writes as a blank and one digit
	for off := -12; off <= 14; off++ {
		// POSIX signs are inverted in the Etc zones: Etc/GMT-3 is UTC+3.
		zone := fmt.Sprintf("Etc/GMT%+d", -off)
		if off == 0 {
			zone = "UTC"
		}
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatalf("load %s: %v", zone, err)
		}
		cmd := exec.CommandContext(ctx, msub, "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-t", "tz/x", "-C", "1", "-W", "20", "-F", "@s "+conv)
		cmd.Env = append(os.Environ(), "TZ="+zone, "LC_ALL=C")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mosquitto_sub (TZ=%s): %v", zone, err)
		}
		secs, want, ok := strings.Cut(strings.TrimSuffix(string(out), "\n"), " ")
		sec, perr := strconv.ParseInt(secs, 10, 64)
		if !ok || perr != nil {
			t.Fatalf("mosquitto_sub (TZ=%s) printed %q: want @s first", zone, out)
		}
		at := time.Unix(sec, 0).In(loc)
		if h := at.Hour() % 12; h >= 1 && h <= 9 {
			padded++
		}
		if got := string(f.Append(nil, &mqttconn.Message{}, at, FormatEnv{})); got != want {
			t.Errorf("TZ=%s at %d:\nmosquitto_sub %q\nmqtk          %q", zone, sec, want, got)
		}
	}
	if padded == 0 {
		t.Errorf("no zone had a local hour that @l pads with a blank")
	}
}

// subscribeSink is a broker on loopback that accepts the CONNECT, reads
// the SUBSCRIBE and then either closes the connection (drop) or never
// answers it. It stops when the test ends.
func subscribeSink(t *testing.T, v packet.Version, drop bool) int {
	t.Helper()
	return mosquittotest.Fake(t, func(c net.Conn, _ func(net.Conn)) {
		rd := packet.NewReader(c, 1<<20)
		if p, err := rd.ReadPacket(v); err != nil || p.Type() != packet.TypeConnect {
			return
		}
		connack, err := packet.Encode(&packet.Connack{}, v)
		if err != nil {
			t.Errorf("encode CONNACK: %v", err)
			return
		}
		if _, err := c.Write(connack); err != nil {
			return
		}
		if p, err := rd.ReadPacket(v); err != nil || p.Type() != packet.TypeSubscribe || drop {
			return
		}
		_, _ = io.Copy(io.Discard, c) // until the client goes
	})
}

// A connection that drops between SUBSCRIBE and SUBACK ends the run with
// a network error (exit 3), with MQTT 5 as with 3.1.1; a SUBACK that never
// comes ends it at -W (exit 27). mqtk sub with MQTT 5 used to wait for
// paho's packet timeout, a minute, and ignore -W meanwhile.
func TestSubscribeNeverAcknowledged(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name+"/dropped", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			port := subscribeSink(t, packet.Version(ver.v), true)
			r := startSub(t, ctx, port, ver.v, &Options{Topics: []string{"never/acked"}})
			err := r.wait(t)
			if clierr.KindOf(err) != clierr.KindNetwork || !strings.Contains(err.Error(), "subscribe") {
				t.Fatalf("want a network error (exit 3) naming the subscription, got %v (kind %d)", err, clierr.KindOf(err))
			}
		})
		t.Run(ver.name+"/silent", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			port := subscribeSink(t, packet.Version(ver.v), false)
			r := startSub(t, ctx, port, ver.v, &Options{Topics: []string{"never/acked"}, Timeout: 500 * time.Millisecond})
			err := r.wait(t)
			if clierr.KindOf(err) != clierr.KindTimeout || !strings.Contains(err.Error(), "timed out after 500ms") {
				t.Fatalf("want the -W timeout (exit 27), got %v (kind %d)", err, clierr.KindOf(err))
			}
		})
	}
}
