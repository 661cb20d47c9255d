package pub

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/ui"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func dialNever(context.Context, mqttconn.Config) (mqttconn.Client, error) {
	panic("Validate must not dial")
}

func TestValidateUsageErrors(t *testing.T) {
	v311 := mqttconn.Default()
	v311.Version = mqttconn.V311
	one := byte(1)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no source", Options{Topic: "a"}, "no payload given"},
		{"no topic", Options{Source: source.Message}, "no topic given"},
		{"wildcard", Options{Source: source.Message, Topic: "a/+"}, `topic name "a/+": wildcards + and # are only for subscribing`},
		{"nul", Options{Source: source.Message, Topic: "a\x00"}, "NUL"},
		{"bad utf-8", Options{Source: source.Message, Topic: "a\xff"}, "not valid UTF-8"},
		{"long", Options{Source: source.Message, Topic: strings.Repeat("x", 65536)}, "65536 bytes, over MQTT's limit of 65535"},
		{"response topic", Options{Source: source.Message, Topic: "a", Props: Props{ResponseTopic: "r/#"}}, `--response-topic: topic name "r/#": wildcards`},
		{"qos", Options{Source: source.Message, Topic: "a", QoS: 3}, "QoS 3 out of range"},
		{"encoding", Options{Source: source.Message, Topic: "a", Encoding: "rot13"}, "--encoding"},
		{"topic-from-line without -l", Options{Source: source.Message, Topic: "a", TopicFromLine: true}, "needs -l"},
		{"repeat with --replay", Options{Source: source.Replay, File: "x.jsonl", Repeat: 3}, "--repeat works with"},
		{"user property on 3.1.1", Options{Source: source.Message, Topic: "a", Conn: v311,
			Props: Props{UserProperties: []mqttconn.UserProperty{{Key: "k", Value: "v"}}}}, "--user-property is an MQTT 5 property"},
		{"payload format on 3.1.1", Options{Source: source.Message, Topic: "a", Conn: v311,
			Props: Props{PayloadFormat: &one}}, "--payload-format-indicator is an MQTT 5 property"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			if o.Conn.Version == 0 {
				o.Conn = mqttconn.Default()
			}
			o.Dial = dialNever
			err := o.Validate()
			if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v (kind %v), want a usage error containing %q", err, clierr.KindOf(err), tc.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct{ enc, in, want string }{
		{EncText, "a{{b", "a{{b"},
		{EncHex, "48 65\n6c6c6f", "Hello"},
		{EncBase64, "SGVsbG8=", "Hello"},
		{EncBase64, "SGVsbG8", "Hello"},
	} {
		got, err := decode(tc.enc, []byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("decode(%s, %q) = %q, %v; want %q", tc.enc, tc.in, got, err, tc.want)
		}
	}
	if _, err := decode(EncHex, []byte("zz")); err == nil {
		t.Error("decode(hex, zz) succeeded")
	}
}

func TestPacketSize(t *testing.T) {
	// 1 fixed header + 1 remaining length + 2+1 topic + 2 packet id + 1
	// property length (0) + 5 payload.
	m := &mqttconn.Message{Topic: "a", Payload: []byte("hello"), QoS: 1}
	if got := packetSize(m, true); got != 13 {
		t.Errorf("packetSize = %d, want 13", got)
	}
	if got := packetSize(m, false); got != 12 {
		t.Errorf("packetSize v3 = %d, want 12", got)
	}
}

// --- integration against both brokers: mqtk's in-process and Debian's mosquitto ---

// tcpConfig is a connection to b's first listener with protocol version v.
func tcpConfig(t *testing.T, b *brokertest.Broker, v mqttconn.Version) mqttconn.Config {
	t.Helper()
	c := mqttconn.Default()
	c.Host, c.Port, c.Version = "127.0.0.1", b.Port(), v
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs Run with test streams and returns its error and stderr.
func run(t *testing.T, o *Options, stdin []byte) (string, error) {
	t.Helper()
	io, _, errb := ui.Test(bytes.NewReader(stdin))
	o.IO = io
	if o.Dial == nil {
		o.Dial = mqttconn.Dial
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := Run(ctx, o)
	return errb.String(), err
}

func hexOf(s string) string { return hex.EncodeToString([]byte(s)) }

// topicHex renders messages as "TOPIC HEXPAYLOAD", one string each.
func topicHex(ms []*mqttconn.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s %x", m.Topic, m.Payload))
	}
	return out
}

func TestPayloadSourcesByteForByte(t *testing.T) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	file := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(file, binary, 0o600); err != nil {
		t.Fatal(err)
	}
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range []mqttconn.Version{mqttconn.V5, mqttconn.V311} {
			for qos := byte(0); qos <= 2; qos++ {
				t.Run(fmt.Sprintf("%s/qos%d", v, qos), func(t *testing.T) {
					p := newProbe(t, b, "src/#")
					cases := []struct {
						o     Options
						stdin []byte
						want  []string // topic hexpayload
					}{
						{Options{Source: source.Message, Topic: "src/m", Message: "hello {{x}}"}, nil, []string{"src/m " + hexOf("hello {{x}}")}},
						{Options{Source: source.Message, Topic: "src/hex", Message: "00ff10", Encoding: EncHex}, nil, []string{"src/hex 00ff10"}},
						{Options{Source: source.File, Topic: "src/f", File: file}, nil, []string{"src/f " + hex.EncodeToString(binary)}},
						{Options{Source: source.Stdin, Topic: "src/s"}, []byte("a\nb\x00c\n"), []string{"src/s " + hexOf("a\nb\x00c\n")}},
						{Options{Source: source.Null, Topic: "src/n"}, nil, []string{"src/n "}},
						{Options{Source: source.Lines, Topic: "src/l"}, []byte("one\n\nthree"), []string{"src/l " + hexOf("one"), "src/l ", "src/l " + hexOf("three")}},
						{Options{Source: source.Lines, TopicFromLine: true}, []byte("src/a\tx\tz\nsrc/b\ty\n"), []string{"src/a " + hexOf("x\tz"), "src/b " + hexOf("y")}},
						{Options{Source: source.Lines, Topic: "src/b64", Encoding: EncBase64}, []byte("AAE=\n"), []string{"src/b64 0001"}},
					}
					var want []string
					for _, c := range cases {
						o := c.o
						o.Conn, o.QoS = tcpConfig(t, b, v), qos
						if stderr, err := run(t, &o, c.stdin); err != nil {
							t.Fatalf("%v: Run: %v\n%s", o.Source, err, stderr)
						}
						want = append(want, c.want...)
					}
					msgs := p.messages(len(want))
					// The probe subscribed at QoS 2, so every message
					// arrives at the QoS it was published with, and none
					// was published retained.
					for _, m := range msgs {
						if m.QoS != qos || m.Retain {
							t.Errorf("%s arrived with qos %d retain %t, want qos %d, not retained", m.Topic, m.QoS, m.Retain, qos)
						}
					}
					got := topicHex(msgs)
					// Every case publishes on its own connection and topics.
					// MQTT orders messages within a connection only (at QoS 0
					// mosquitto once forwarded a later run's message first), so
					// each case's messages are compared in order among
					// themselves.
					for _, c := range cases {
						topics := map[string]bool{}
						for _, w := range c.want {
							topics[strings.SplitN(w, " ", 2)[0]] = true
						}
						var mine []string
						for _, g := range got {
							if topics[strings.SplitN(g, " ", 2)[0]] {
								mine = append(mine, g)
							}
						}
						if strings.Join(mine, "\n") != strings.Join(c.want, "\n") {
							t.Errorf("%v: received\n%s\nwant\n%s", c.o.Source, strings.Join(mine, "\n"), strings.Join(c.want, "\n"))
						}
					}
				})
			}
		}
	})
}

func TestRetainAndQoSArrive(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		o := Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Message, Topic: "keep/me", Message: "kept", QoS: 1, Retain: true}
		if stderr, err := run(t, &o, nil); err != nil {
			t.Fatalf("Run: %v\n%s", err, stderr)
		}
		// A subscriber that comes after the publish gets the retained
		// message with the retain flag set [MQTT-3.3.1-8], at the QoS it was
		// published with (the probe subscribes at QoS 2).
		got := newProbe(t, b, "keep/me").messages(1)[0]
		if got.Topic != "keep/me" || string(got.Payload) != "kept" || !got.Retain || got.QoS != 1 {
			t.Fatalf("fresh subscriber received %s %q retain %t qos %d, want keep/me \"kept\" retain true qos 1",
				got.Topic, got.Payload, got.Retain, got.QoS)
		}
	})
}

func TestV5PropertiesArrive(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		p := newProbe(t, b, "props/#")
		exp, pfi := uint32(3600), byte(1)
		o := Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Message, Topic: "props/a", Message: "x", QoS: 1,
			Props: Props{
				UserProperties:  []mqttconn.UserProperty{{Key: "k1", Value: "v1"}, {Key: "k2", Value: "v2"}},
				ContentType:     "text/plain",
				ResponseTopic:   "reply/here",
				CorrelationData: []byte{0xde, 0xad},
				MessageExpiry:   &exp,
				PayloadFormat:   &pfi,
			}}
		if stderr, err := run(t, &o, nil); err != nil {
			t.Fatalf("Run: %v\n%s", err, stderr)
		}
		m := p.messages(1)[0]
		if m.Topic != "props/a" || string(m.Payload) != "x" || m.QoS != 1 {
			t.Errorf("received %s %q qos %d, want props/a \"x\" qos 1", m.Topic, m.Payload, m.QoS)
		}
		pf := "absent"
		if m.PayloadFormat != nil {
			pf = fmt.Sprint(*m.PayloadFormat)
		}
		got := fmt.Sprintf("%s|%s|%s|%v|%x", m.ContentType, m.ResponseTopic, pf, m.UserProperties, m.CorrelationData)
		if want := "text/plain|reply/here|1|[{k1 v1} {k2 v2}]|dead"; got != want {
			t.Errorf("properties %s, want %s", got, want)
		}
		// The broker forwards the expiry interval less the time the
		// message waited [MQTT-3.3.2-6]: present, above 0, at most 3600.
		if m.MessageExpiry == nil || *m.MessageExpiry == 0 || *m.MessageExpiry > exp {
			t.Errorf("message expiry interval %v, want 1..%d", m.MessageExpiry, exp)
		}
	})
}

func TestTemplates(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		p := newProbe(t, b, "tmpl/#")
		clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		cfg := tcpConfig(t, b, mqttconn.V5)
		cfg.ClientID = "tmpl-client"
		o := Options{Conn: cfg, Source: source.Message, Template: true, QoS: 1, Repeat: 3,
			Topic:   "tmpl/{{.Seq}}",
			Message: `{{.Seq}} {{.Unix}} {{.Time}} {{.Hostname}} {{.ClientID}} {{env "PUBTEST"}} {{randInt 5 5}} {{len uuid}}`,
			Props:   Props{UserProperties: []mqttconn.UserProperty{{Key: "n", Value: "{{.Seq}}"}}},
			Clock:   clock, Getenv: func(k string) string { return map[string]string{"PUBTEST": "envval"}[k] },
			Host: func() (string, error) { return "box", nil }}
		if stderr, err := run(t, &o, nil); err != nil {
			t.Fatalf("Run: %v\n%s", err, stderr)
		}
		for i, m := range p.messages(3) {
			seq := i + 1
			got := fmt.Sprintf("%s|%s|%v", m.Topic, m.Payload, m.UserProperties)
			want := fmt.Sprintf("tmpl/%d|%d 1767323045 2026-01-02T03:04:05Z box tmpl-client envval 5 36|[{n %d}]", seq, seq, seq)
			if got != want {
				t.Errorf("message %d: %q, want %q", seq, got, want)
			}
		}
		// Without --template, braces are literal (checked byte for byte in
		// TestPayloadSourcesByteForByte with "hello {{x}}").
	})
}

// fakeClock advances only when slept on, and records every sleep.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

// payloads concatenates the payloads of messages.
func payloads(ms []*mqttconn.Message) string {
	var b strings.Builder
	for _, m := range ms {
		b.Write(m.Payload)
	}
	return b.String()
}

func TestRepeatDelayAndRateUseTheClock(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		p := newProbe(t, b, "pace")
		clock := &fakeClock{now: time.Unix(1000, 0)}
		o := Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Message, Topic: "pace", Message: "a",
			Repeat: 4, RepeatDelay: 250 * time.Millisecond, Clock: clock}
		if stderr, err := run(t, &o, nil); err != nil {
			t.Fatalf("Run: %v\n%s", err, stderr)
		}
		if want := []time.Duration{250 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond}; fmt.Sprint(clock.sleeps) != fmt.Sprint(want) {
			t.Errorf("repeat-delay sleeps %v, want %v", clock.sleeps, want)
		}
		// Collect the first run's messages before the second run starts: QoS 0
		// messages from two connections have no order between them (once, under
		// load, mosquitto forwarded a message of the second run first).
		if got := payloads(p.messages(4)); got != "aaaa" {
			t.Errorf("repeat-delay run: received %q", got)
		}
		clock2 := &fakeClock{now: time.Unix(1000, 0)}
		o = Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Message, Topic: "pace", Message: "b", Repeat: 3, Rate: 4, Clock: clock2}
		if stderr, err := run(t, &o, nil); err != nil {
			t.Fatalf("Run: %v\n%s", err, stderr)
		}
		if want := []time.Duration{250 * time.Millisecond, 250 * time.Millisecond}; fmt.Sprint(clock2.sleeps) != fmt.Sprint(want) {
			t.Errorf("rate sleeps %v, want %v", clock2.sleeps, want)
		}
		if got := payloads(p.messages(3)); got != "bbb" {
			t.Errorf("rate run: received %q", got)
		}
	})
}

func TestReplayOrderPropertiesAndPacing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rec.jsonl")
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	ct := "application/json"
	for i, gap := range []time.Duration{0, 2 * time.Second, 500 * time.Millisecond, 4 * time.Second} {
		t0 = t0.Add(gap)
		m := &mqttconn.Message{Topic: fmt.Sprintf("rec/%d", i), Payload: []byte{byte(i), 0xff}, QoS: 1,
			ContentType: ct, UserProperties: []mqttconn.UserProperty{{Key: "i", Value: fmt.Sprint(i)}}, Received: t0, SubscriptionIDs: []int{7}}
		line, err := jsonLine(m)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(line)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		p := newProbe(t, b, "rec/#")
		for _, speed := range []float64{1, 2, 0} {
			clock := &fakeClock{now: time.Unix(5000, 0)}
			o := Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Replay, File: file, Speed: speed, Clock: clock}
			if stderr, err := run(t, &o, nil); err != nil {
				t.Fatalf("Run: %v\n%s", err, stderr)
			}
			var want []time.Duration
			if speed > 0 {
				for _, g := range []time.Duration{2 * time.Second, 500 * time.Millisecond, 4 * time.Second} {
					want = append(want, time.Duration(float64(g)/speed))
				}
			}
			if fmt.Sprint(clock.sleeps) != fmt.Sprint(want) {
				t.Errorf("speed %g: sleeps %v, want %v", speed, clock.sleeps, want)
			}
		}
		for i, m := range p.messages(12) {
			n := i % 4
			got := fmt.Sprintf("%s %x %d %s %v", m.Topic, m.Payload, m.QoS, m.ContentType, m.UserProperties)
			want := fmt.Sprintf("rec/%d %02xff 1 %s [{i %d}]", n, n, ct, n)
			if got != want {
				t.Errorf("message %d: %q, want %q", i, got, want)
			}
		}
	})
}

func jsonLine(m *mqttconn.Message) ([]byte, error) {
	b, err := jsonMarshal(mqttconn.NewRecord(m))
	return append(b, '\n'), err
}

func TestTooLargeAndRejected(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{Global: "max_packet_size 100\n"}, func(t *testing.T, b *brokertest.Broker) {
		o := Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Message, Topic: "big", Message: strings.Repeat("x", 200)}
		_, err := run(t, &o, nil)
		if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "maximum packet size of 100") {
			t.Fatalf("oversized: %v (kind %v), want a usage error naming the broker's limit", err, clierr.KindOf(err))
		}
	})
}

func TestTopicAliasOverBrokerMaximum(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{{Extra: "max_topic_alias 5"}}}, func(t *testing.T, b *brokertest.Broker) {
		p := newProbe(t, b, "alias/#")
		o := Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Message, Topic: "alias/a", Message: "x", Props: Props{TopicAlias: 6}}
		_, err := run(t, &o, nil)
		if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "up to 5") {
			t.Fatalf("alias 6 with a maximum of 5: %v (kind %v), want a usage error", err, clierr.KindOf(err))
		}
		o = Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Message, Topic: "alias/a", Message: "aliased", QoS: 1, Props: Props{TopicAlias: 5}}
		if stderr, err := run(t, &o, nil); err != nil {
			t.Fatalf("alias 5: %v\n%s", err, stderr)
		}
		// Only the message with alias 5 arrives (messages fails on any
		// other), under its full topic name.
		if m := p.messages(1)[0]; m.Topic != "alias/a" || string(m.Payload) != "aliased" {
			t.Fatalf("received %s %q, want alias/a \"aliased\"", m.Topic, m.Payload)
		}
	})
}

func TestRejectedPublishIsKindRejected(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte("topic readwrite open/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	brokertest.Each(t, mosquittotest.Options{ACLFile: acl}, func(t *testing.T, b *brokertest.Broker) {
		o := Options{Conn: tcpConfig(t, b, mqttconn.V5), Source: source.Message, Topic: "closed/x", Message: "no", QoS: 1}
		_, err := run(t, &o, nil)
		if clierr.KindOf(err) != clierr.KindRejected || !strings.Contains(err.Error(), "not authorized") {
			t.Fatalf("publish to a denied topic: %v (kind %v), want KindRejected naming the reason", err, clierr.KindOf(err))
		}
	})
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// With --topic-alias, the first PUBLISH on a topic sets the alias up and
// the following ones on that topic send only the alias, with an empty
// topic name (MQTT 5 section 3.3.2.3.4); a different topic on the same
// alias is sent in full and remaps it. Subscribers still see every topic
// in full: the broker resolves the alias [MQTT-3.3.2-12].
func TestTopicAliasSentOnceThenReused(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		p := newProbe(t, b, "alias/#")
		wire := regexp.MustCompile(`(?m)^mqtk: → PUBLISH topic=(\S+) qos=1 id=\d+ topic-alias=2 len=\d+ payload="(\w+)"$`)
		for _, tc := range []struct {
			name  string
			o     Options
			stdin string
			want  string // topic=payload as sent, in order
		}{
			{"repeat", Options{Source: source.Message, Topic: "alias/r", Message: "r", Repeat: 3}, "",
				`alias/r=r ""=r ""=r`},
			{"lines", Options{Source: source.Lines, TopicFromLine: true}, "alias/a\t1\nalias/a\t2\nalias/b\t3\nalias/b\t4\nalias/a\t5\n",
				`alias/a=1 ""=2 alias/b=3 ""=4 alias/a=5`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var trace bytes.Buffer // written by the connection, read once Run has returned
				o := tc.o
				o.Conn, o.QoS, o.Props = tcpConfig(t, b, mqttconn.V5), 1, Props{TopicAlias: 2}
				o.Conn.Debug = &trace
				if stderr, err := run(t, &o, []byte(tc.stdin)); err != nil {
					t.Fatalf("Run: %v\n%s", err, stderr)
				}
				var sent []string
				for _, m := range wire.FindAllStringSubmatch(trace.String(), -1) {
					sent = append(sent, m[1]+"="+m[2])
				}
				if got := strings.Join(sent, " "); got != tc.want {
					t.Errorf("PUBLISH on the wire: %s, want %s\n%s", got, tc.want, trace.String())
				}
			})
		}
		var got []string
		for _, m := range p.messages(8) {
			got = append(got, fmt.Sprintf("%s=%s", m.Topic, m.Payload))
		}
		if want := "alias/r=r alias/r=r alias/r=r alias/a=1 alias/a=2 alias/b=3 alias/b=4 alias/a=5"; strings.Join(got, " ") != want {
			t.Errorf("subscriber received %s, want %s", strings.Join(got, " "), want)
		}
	})
}
