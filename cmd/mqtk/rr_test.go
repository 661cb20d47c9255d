package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/rr"
)

// responder answers every request on rq/# as a service would: on the
// request's Response Topic with its Correlation Data, or, for a request
// without one (MQTT 3.1.1), on rs/fixed. With wrongFirst it first sends
// an answer carrying other correlation data, as another requester's
// answer would look.
func responder(t *testing.T, ctx context.Context, port int, wrongFirst bool) {
	t.Helper()
	answerRequests(t, ctx, port, mqttconn.V5, "rq/#", 1, func(m *mqttconn.Message) []*mqttconn.Message {
		to := m.ResponseTopic
		if to == "" {
			to = "rs/fixed"
		}
		var out []*mqttconn.Message
		if wrongFirst {
			out = append(out, &mqttconn.Message{Topic: to, QoS: 1, Payload: []byte("wrong"),
				CorrelationData: append([]byte("not-"), m.CorrelationData...)})
		}
		return append(out, &mqttconn.Message{Topic: to, QoS: 1, Payload: append([]byte("re:"), m.Payload...),
			CorrelationData: m.CorrelationData, ContentType: "text/plain",
			UserProperties: []mqttconn.UserProperty{{Key: "by", Value: "responder"}}})
	})
}

// answerRequests subscribes a client of the connection layer (protocol
// v) to filter at qos on the broker at port and publishes, for each request, the
// messages answer makes of it, until the test ends.
func answerRequests(t *testing.T, ctx context.Context, port int, v mqttconn.Version, filter string, qos byte, answer func(*mqttconn.Message) []*mqttconn.Message) {
	t.Helper()
	cfg := mqttconn.Default()
	cfg.Host, cfg.Port, cfg.Version = "127.0.0.1", port, v
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	var c mqttconn.Client
	ready := make(chan struct{})
	cfg.OnMessage = func(m *mqttconn.Message) {
		<-ready // c is set
		for _, r := range answer(m) {
			c.PublishAsync(ctx, r, func(error) {})
		}
	}
	var err error
	if c, err = mqttconn.Dial(ctx, cfg); err != nil {
		t.Fatalf("responder: %v", err)
	}
	close(ready)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	if codes, err := c.Subscribe(ctx, []mqttconn.Subscription{{Filter: filter, QoS: qos}}); err != nil || codes[0] >= 0x80 {
		t.Fatalf("responder subscribe: %v %v", codes, err)
	}
}

// runCmd runs an external program with a deadline and returns its exit
// code, stdout and stderr.
func runCmd(t *testing.T, ctx context.Context, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("%s: %v", bin, err)
	return 0, "", ""
}

// The same command line through mosquitto_rr and mqtk rr, against
// Debian's mosquitto and mqtk's own broker, prints the same bytes and
// exits the same way.
func TestRRMatchesMosquittoRR(t *testing.T) {
	mrr, err := exec.LookPath("mosquitto_rr")
	if err != nil {
		t.Skip("mosquitto_rr is not installed (Debian package mosquitto-clients; .ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	file := filepath.Join(t.TempDir(), "req.bin")
	if err := os.WriteFile(file, []byte{0, 1, 'x', 0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	mb := mosquittotest.Start(t, mosquittotest.Options{})
	for _, bt := range []struct {
		name string
		port int
	}{{"mosquitto", mb.Port()}, {"mqtk broker", startOwnBroker(t, ctx, "")}} {
		t.Run(bt.name, func(t *testing.T) {
			responder(t, ctx, bt.port, false)
			for _, args := range [][]string{
				{"-t", "rq/a", "-e", "rs/a", "-m", "hello"},
				{"-t", "rq/a", "-e", "rs/a", "-m", "hello", "-v"},
				{"-t", "rq/a", "-e", "rs/a", "-m", "hello", "-N"},
				{"-t", "rq/a", "-e", "rs/a", "-m", "hello", "-q", "1", "-F", `%t|%p|%l|%q|%C|%P`},
				{"-t", "rq/a", "-e", "rs/a", "-m", "hello", "-q", "2", "-F", `%D|%p`, "-D", "publish", "correlation-data", "c0rr"},
				{"-t", "rq/b", "-e", "rs/b", "-n", "-v"},
				{"-t", "rq/c", "-e", "rs/c", "-m", "props", "-D", "publish", "user-property", "k", "v",
					"-D", "connect", "user-property", "who", "rr", "-D", "publish", "message-expiry-interval", "60", "-v"},
				{"-V", "311", "-t", "rq/311", "-e", "rs/fixed", "-m", "old", "-v"},
			} {
				conn := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(bt.port), "-W", "10"}
				wcode, want, wstderr := runCmd(t, ctx, mrr, append(conn, args...)...)
				code, got, stderr := runMqtk(t, "", append(append([]string{"rr"}, conn...), args...)...)
				if wcode != 0 || code != 0 {
					t.Fatalf("%q: mosquitto_rr exit %d (%s), mqtk rr exit %d (%s)", args, wcode, wstderr, code, stderr)
				}
				if got != want {
					t.Errorf("%q: mqtk rr printed %q, mosquitto_rr %q", args, got, want)
				}
			}
			// mosquitto_rr 2.0.11 sends an empty request for -f and -s
			// (the responder answers "re:"), so these are checked against
			// the bytes the request must carry.
			for _, c := range []struct {
				stdin string
				args  []string
				want  string
			}{
				{"", []string{"-f", file, "-F", "%x"}, "72653a000178ff\n"},
				{"from\nstdin", []string{"-s"}, "re:from\nstdin\n"},
			} {
				args := append([]string{"rr", "-h", "127.0.0.1", "-p", fmt.Sprint(bt.port), "-W", "10", "-t", "rq/b", "-e", "rs/b"}, c.args...)
				if code, got, stderr := runMqtk(t, c.stdin, args...); code != 0 || got != c.want {
					t.Errorf("%q: exit %d, stdout %q, want %q\n%s", c.args, code, got, c.want, stderr)
				}
			}
		})
	}
}

// An answer whose correlation data is not the request's is some other
// request's: mqtk rr ignores it and prints the right one (mosquitto PR
// #2812), on both brokers.
func TestRRIgnoresOtherCorrelationData(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		responder(t, ctx, b.Port(), true)
		code, out, stderr := runMqtk(t, "", "rr", "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-t", "rq/x", "-e", "rs/x",
			"-m", "q", "-q", "1", "-W", "10", "-F", "%p|%D", "-D", "publish", "correlation-data", "hex:00ff", "--latency")
		if code != 0 || out != "re:q|\x00\xff\n" {
			t.Errorf("exit %d, stdout %q; want 0 and only the right answer\n%s", code, out, stderr)
		}
		if !strings.Contains(stderr, "mqtk: latency ") || !strings.HasSuffix(stderr, " ms\n") {
			t.Errorf("--latency: stderr %q", stderr)
		}
	})
}

// No response within -W: exit 27, as mosquitto_rr, and nothing on stdout.
// Waiting for a second response that never comes ends the same way.
func TestRRTimeoutExits27(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := mosquittotest.Start(t, mosquittotest.Options{})
	port := fmt.Sprint(b.Port())
	args := []string{"-h", "127.0.0.1", "-p", port, "-t", "rq/none", "-e", "rs/none", "-m", "x", "-W", "1"}
	if mrr, err := exec.LookPath("mosquitto_rr"); err == nil {
		if code, out, _ := runCmd(t, ctx, mrr, args...); code != 27 || out != "" {
			t.Fatalf("mosquitto_rr: exit %d, stdout %q; the test expects mosquitto's 27", code, out)
		}
	}
	code, out, stderr := runMqtk(t, "", append([]string{"rr"}, args...)...)
	if code != 27 || out != "" || !strings.Contains(stderr, "timed out after 1s with 0 of 1 responses") {
		t.Fatalf("mqtk rr: exit %d, stdout %q, stderr %q; want 27", code, out, stderr)
	}
	responder(t, ctx, b.Port(), false)
	code, out, stderr = runMqtk(t, "", "rr", "-h", "127.0.0.1", "-p", port, "-t", "rq/two", "-e", "rs/two", "-m", "x", "-W", "1", "-C", "2")
	if code != 27 || out != "re:x\n" || !strings.Contains(stderr, "1 of 2 responses") {
		t.Fatalf("-C 2 with one answer: exit %d, stdout %q, stderr %q; want 27 after one response", code, out, stderr)
	}
}

// rr's flags fill rr.Options; -D publish goes on the request.
func TestRRFlagsAndUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "a", "-m", "x"}, "no response topic given\nhint: use -e TOPIC\n"},
		{[]string{"-e", "b", "-m", "x"}, "no request topic given"},
		{[]string{"-t", "a", "-e", "b"}, "no request payload given"},
		{[]string{"-t", "a", "-e", "b", "-m", "x", "-n"}, "more than one request payload (-m, -n)"},
		{[]string{"-t", "a", "-e", "b/#", "-m", "x"}, "-e: "},
		{[]string{"-t", "a", "-e", "b", "-m", "x", "-D", "publish", "response-topic", "c"}, "the response topic is -e"},
		{[]string{"-t", "a", "-e", "b", "-m", "x", "-V", "311", "-D", "publish", "content-type", "c"}, "properties are MQTT 5, and -V 3.1.1 has none"},
		{[]string{"-t", "a", "-e", "b", "-m", "x", "-C", "0"}, "-C/--count must be at least 1"},
		{[]string{"-t", "a", "-e", "b", "-m", "x", "--output", "jsonl", "-v"}, "-v has no effect with --output jsonl"},
	} {
		code, _, stderr := runMqtk(t, "", append([]string{"rr", "-p", "1"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	streams, _, _ := ui.Test(nil)
	var got *rr.Options
	root := &cobra.Command{Use: "mqtk", SilenceErrors: true, SilenceUsage: true}
	root.PersistentFlags().Bool("help", false, "help") // -h is the host, as on the real root
	root.AddCommand(newRRCmd(&app{io: streams, getenv: func(string) string { return "" }}, func(o *rr.Options) error { got = o; return nil }))
	root.SetArgs(withProperties(root, []string{"rr", "-t", "rq", "-e", "rs", "-s", "-q", "2", "-C", "3", "-W", "1.5", "-R", "--latency",
		"-D", "publish", "correlation-data", "base64:AAE=", "-D", "publish", "user-property", "a", "b", "-D", "subscribe", "subscription-identifier", "9"}))
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Topic != "rq" || got.ResponseTopic != "rs" || got.Source != source.Stdin || got.QoS != 2 || got.Count != 3 ||
		got.Timeout != 1500*time.Millisecond || !got.NoRetained || !got.Latency || got.SubscriptionID != 9 ||
		!bytes.Equal(got.Request.CorrelationData, []byte{0, 1}) || fmt.Sprint(got.Request.UserProperties) != "[{a b}]" {
		t.Errorf("options: %+v", got)
	}
}

// MQTT 3.1.1 requests cannot name a response topic, so mqtk rr and mqtk
// reply share a convention: without -e, the response to a request on T
// comes on T/reply (--response-suffix changes the suffix). MQTT 5 still
// needs -e, as mosquitto_rr does, and the error says where the
// convention applies.
func TestRRResponseTopicConvention(t *testing.T) {
	parse := func(args ...string) (*rr.Options, error) {
		streams, _, _ := ui.Test(nil)
		var got *rr.Options
		root := &cobra.Command{Use: "mqtk", SilenceErrors: true, SilenceUsage: true}
		root.PersistentFlags().Bool("help", false, "help")
		root.AddCommand(newRRCmd(&app{io: streams, getenv: func(string) string { return "" }}, func(o *rr.Options) error { got = o; return nil }))
		root.SetArgs(append([]string{"rr", "-p", "1"}, args...))
		return got, root.Execute()
	}
	o, err := parse("-V", "311", "-t", "svc/a", "-m", "x")
	if err != nil || o.ResponseTopic != "" || o.ResponseSuffix != "/reply" {
		t.Fatalf("-V 311 without -e: %v, %+v", err, o)
	}
	o, err = parse("-V", "311", "-t", "svc/a", "-m", "x", "--response-suffix", "/back")
	if err != nil || o.ResponseSuffix != "/back" {
		t.Fatalf("--response-suffix: %v, %+v", err, o)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-t", "a", "-m", "x"}, []string{"no response topic given\nhint: use -e TOPIC\n", "hint: with -V 311 and no -e, the response is awaited on TOPIC/reply"}},
		{[]string{"-V", "311", "-t", "a", "-m", "x", "--response-suffix", ""}, []string{"--response-suffix is empty"}},
		{[]string{"-V", "311", "-t", "a", "-m", "x", "--response-suffix", "/#"}, []string{"--response-suffix \"/#\""}},
	} {
		code, _, stderr := runMqtk(t, "", append([]string{"rr", "-p", "1"}, tc.args...)...)
		for _, w := range tc.want {
			if code != 2 || !strings.Contains(stderr, w) {
				t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, w)
			}
		}
	}
	code, out, _ := runMqtk(t, "", "rr", "--help")
	if text := strings.Join(strings.Fields(out), " "); code != 0 || !strings.Contains(text, "the response to a request on TOPIC comes on TOPIC/reply") ||
		!strings.Contains(text, "'mqtk reply -V 311'") {
		t.Errorf("rr --help does not document the convention:\n%s", out)
	}
}

// Against a responder that follows the convention at MQTT 3.1.1 (here a
// plain client, not mqtk reply), rr -V 311 without -e gets the answer
// on T/reply, on both brokers; --response-suffix follows another one.
func TestRRConventionRoundTrip(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		answerRequests(t, ctx, b.Port(), mqttconn.V311, "conv/#", 1, func(m *mqttconn.Message) []*mqttconn.Message {
			if strings.HasSuffix(m.Topic, "/reply") || strings.HasSuffix(m.Topic, "/back") {
				return nil
			}
			to := m.Topic + "/reply"
			if strings.HasPrefix(m.Topic, "conv/back/") {
				to = m.Topic + "/back"
			}
			return []*mqttconn.Message{{Topic: to, QoS: 1, Payload: append([]byte("re:"), m.Payload...)}}
		})
		for _, args := range [][]string{
			{"-t", "conv/a", "-m", "x", "-v"},
			{"-t", "conv/back/b", "-m", "x", "-v", "--response-suffix", "/back"},
		} {
			code, out, stderr := runMqtk(t, "", append([]string{"rr", "-p", fmt.Sprint(b.Port()), "-V", "311", "-q", "1", "-W", "10"}, args...)...)
			want := args[1] + "/reply re:x\n"
			if len(args) > 5 {
				want = args[1] + "/back re:x\n"
			}
			if code != 0 || out != want {
				t.Errorf("%q: exit %d, stdout %q, want %q: %s", args, code, out, want, stderr)
			}
		}
	})
}
