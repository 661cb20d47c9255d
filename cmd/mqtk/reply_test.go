package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/reqresp"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/reply"
	"github.com/mqtk/mqtk/rr"
)

// replyRun is a `mqtk reply` running in the background, in process.
type replyRun struct {
	cancel context.CancelFunc
	stderr *ui.SyncBuffer
	done   chan int
}

// startReply runs `mqtk reply ARGS` and returns once it has subscribed.
func startReply(t *testing.T, ctx context.Context, args ...string) *replyRun {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	r := &replyRun{cancel: cancel, stderr: &ui.SyncBuffer{}, done: make(chan int, 1)}
	env := func(string) string { return "" }
	streams := &ui.Streams{In: strings.NewReader(""), Out: ui.NewStream(&ui.SyncBuffer{}, false, ui.ColorNever, env),
		Err: ui.NewStream(r.stderr, false, ui.ColorNever, env), Getenv: env}
	go func() { r.done <- execute(ctx, streams, append([]string{"reply"}, args...), env) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	for i := 0; !strings.Contains(r.stderr.String(), "mqtk: answering requests on "); i++ {
		select {
		case code := <-r.done:
			r.done <- code
			t.Fatalf("mqtk reply %q exited %d before subscribing:\n%s", args, code, r.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if i == 1000 {
			t.Fatalf("mqtk reply %q did not subscribe within 10s:\n%s", args, r.stderr)
		}
	}
	return r
}

// wait returns the exit code once reply has ended by itself (-C).
func (r *replyRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code // for Cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("mqtk reply did not end within 30s:\n%s", r.stderr)
	}
	return 0
}

// interrupt cancels reply's context, as Ctrl-C does, and returns the exit code.
func (r *replyRun) interrupt(t *testing.T) int {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// responses collects what rr.Run prints.
type responses struct{ msgs []*mqttconn.Message }

func (p *responses) Print(m *mqttconn.Message) { p.msgs = append(p.msgs, m) }
func (p *responses) Flush() error              { return nil }

func userProp(m *mqttconn.Message, k string) string {
	for _, p := range m.UserProperties {
		if p.Key == k {
			return p.Value
		}
	}
	return ""
}

// replyBrokers starts mqtk's broker, and Debian's mosquitto in a subtest
// of its own that skips, naming it, when it is absent.
func replyBrokers(t *testing.T, ctx context.Context, f func(t *testing.T, port int)) {
	t.Run("mqtk broker", func(t *testing.T) { f(t, startOwnBroker(t, ctx, "")) })
	t.Run("mosquitto", func(t *testing.T) { f(t, mosquittotest.Start(t, mosquittotest.Options{}).Port()) })
}

// The round trip of issue 15: `mqtk reply --exec cat` answers 1,000
// requests from 10 concurrent requesters (mqtk rr's library, 100 requests
// each), on mqtk broker and mosquitto, at MQTT 5 and 3.1.1, and every
// response reaches the requester whose request it answers.
//
// At MQTT 5 all ten requesters share one response topic, so each sees the
// others' responses too: rr keeps only those carrying its correlation
// data, and the test checks that what it kept is the answer to the
// request it sent (cat echoes the payload, which names the same request
// as the correlation data). MQTT 3.1.1 has no correlation data: each
// requester asks on a topic of its own and, by the convention the two
// commands share, hears on that topic + /reply.
func TestReplyRRRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const requesters, each = 10, 100
	replyBrokers(t, ctx, func(t *testing.T, port int) {
		for _, v := range []string{"5", "311"} {
			t.Run("MQTT "+v, func(t *testing.T) {
				rep := startReply(t, ctx, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-V", v, "-q", "1",
					"-t", "rt/req/+", "--concurrency", "4", "-C", fmt.Sprint(requesters*each), "--exec", "cat")
				var wg sync.WaitGroup
				errs := make(chan error, requesters)
				for i := range requesters {
					wg.Go(func() {
						for j := range each {
							if err := askOnce(ctx, port, v, i, j); err != nil {
								errs <- fmt.Errorf("requester %d, request %d: %w", i, j, err)
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
				code := rep.wait(t)
				want := fmt.Sprintf("mqtk: served %d, failed 0, skipped 0, rejected 0; handling time p50 ", requesters*each)
				if code != 0 || !strings.Contains(rep.stderr.String(), want) {
					t.Errorf("reply: exit %d, stderr:\n%s\nwant exit 0 and %q", code, rep.stderr, want)
				}
			})
		}
	})
}

// askOnce sends request j of requester i with mqtk rr's library and checks
// the one response it prints.
func askOnce(ctx context.Context, port int, v string, i, j int) error {
	cfg := mqttconn.Default()
	cfg.Host, cfg.Port = "127.0.0.1", port
	cfg.ConnectTimeout = 10 * time.Second
	streams, _, errb := ui.Test(nil)
	p := &responses{}
	o := &rr.Options{Conn: cfg, Dial: mqttconn.Dial, IO: streams, Print: p, QoS: 1, Timeout: 20 * time.Second,
		Topic: fmt.Sprintf("rt/req/%d", i), Source: source.Message, Message: fmt.Sprintf("payload %d-%d", i, j)}
	corr := fmt.Sprintf("req %d-%d", i, j)
	if v == "5" {
		o.ResponseTopic = "rt/resp" // one for all: correlation data tells them apart
		o.Request.CorrelationData = []byte(corr)
	} else {
		o.Conn.Version = mqttconn.V311 // no -e: the convention's topic
	}
	if err := rr.Run(ctx, o); err != nil {
		return fmt.Errorf("rr: %w (%s)", err, errb)
	}
	if len(p.msgs) != 1 {
		return fmt.Errorf("%d responses printed, want 1", len(p.msgs))
	}
	m := p.msgs[0]
	if string(m.Payload) != o.Message {
		return fmt.Errorf("response %q to request %q", m.Payload, o.Message)
	}
	if v == "5" {
		if string(m.CorrelationData) != corr || userProp(m, reply.PropExitCode) != "0" {
			return fmt.Errorf("response carries correlation data %q and exit-code %q, want %q and 0",
				m.CorrelationData, userProp(m, reply.PropExitCode), corr)
		}
	} else if want := o.Topic + "/reply"; m.Topic != want {
		return fmt.Errorf("response on %s, want %s", m.Topic, want)
	}
	return nil
}

// The --exec command finds the request in its environment (a stale
// MQTK_TOPIC of the parent's replaced); its exit status comes back as the
// exit-code user property, a failure with the reason in error.
func TestReplyExecEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Setenv("MQTK_TOPIC", "stale")
	t.Setenv("MQTK_USER_PROPERTY_STALE", "stale")
	port := fmt.Sprint(startOwnBroker(t, ctx, ""))
	rep := startReply(t, ctx, "-p", port, "-t", "env/#", "-q", "1", "--exec", "sh", "-c",
		`env | grep '^MQTK_[A-Z_]*=' | grep -v '^MQTK_SEQ=' | LC_ALL=C sort; printf 'stdin=%s\n' "$(cat)"; echo to-stderr >&2; exit "${MQTK_USER_PROPERTY_EXIT:-0}"`)

	code, out, stderr := runMqtk(t, "", "rr", "-p", port, "-t", "env/a", "-e", "env-resp/a", "-m", "the payload", "-q", "1", "-W", "10",
		"-D", "publish", "correlation-data", "c0rr", "-D", "publish", "content-type", "text/plain",
		"-D", "publish", "user-property", "trace-id", "t1", "-D", "publish", "user-property", "Trace.Id", "t2",
		"-F", `%p|%P`)
	want := `MQTK_CONTENT_TYPE=text/plain
MQTK_CORRELATION_DATA=c0rr
MQTK_CORRELATION_DATA_HEX=63307272
MQTK_QOS=1
MQTK_RESPONSE_TOPIC=env-resp/a
MQTK_TOPIC=env/a
MQTK_USER_PROPERTY_TRACE_ID=t1,t2
stdin=the payload
|exit-code:0
`
	if code != 0 || out != want {
		t.Errorf("rr: exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", code, out, want, stderr)
	}

	code, out, stderr = runMqtk(t, "", "rr", "-p", port, "-t", "env/b", "-e", "env-resp/b", "-n", "-q", "1", "-W", "10",
		"-D", "publish", "user-property", "exit", "3", "-F", `%P`)
	if want := "exit-code:3 error:exit status 3: to-stderr\n"; code != 0 || out != want {
		t.Errorf("failing command: exit %d, stdout %q, want %q; stderr %s", code, out, want, stderr)
	}
	if code := rep.interrupt(t); code != 130 {
		t.Errorf("interrupted reply exited %d, want 130", code)
	}
	got := rep.stderr.String()
	for _, w := range []string{"to-stderr\n", "mqtk: warning: request 2 on env/b failed: exit status 3: to-stderr\n",
		"mqtk: served 1, failed 1, skipped 0, rejected 0; handling time p50 "} {
		if !strings.Contains(got, w) {
			t.Errorf("reply's stderr lacks %q:\n%s", w, got)
		}
	}
}

// A request without a response topic cannot be answered at MQTT 5: it is
// counted and skipped with a note. A message on a response topic the
// filter also covers is not a request at all.
func TestReplySkipsRequestsWithoutResponseTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	replyBrokers(t, ctx, func(t *testing.T, port int) {
		p := fmt.Sprint(port)
		rep := startReply(t, ctx, "-p", p, "-t", "sk/#", "-q", "1", "-C", "1", "-m", "answer to {{.Payload}}")
		for _, topic := range []string{"sk/plain", "sk/x/reply"} {
			if code, _, stderr := runMqtk(t, "", "pub", "-p", p, "-q", "1", "-t", topic, "-m", "no response topic"); code != 0 {
				t.Fatalf("pub: exit %d: %s", code, stderr)
			}
		}
		code, out, stderr := runMqtk(t, "", "rr", "-p", p, "-t", "sk/q", "-e", "out/q", "-m", "q", "-q", "1", "-W", "10")
		if code != 0 || out != "answer to q\n" {
			t.Errorf("rr: exit %d, stdout %q: %s", code, out, stderr)
		}
		if code := rep.wait(t); code != 0 {
			t.Errorf("reply -C 1 exited %d, want 0", code)
		}
		got := rep.stderr.String()
		for _, w := range []string{"mqtk: warning: skipped a request on sk/plain: it has no response topic",
			"mqtk: served 1, failed 0, skipped 1, rejected 0;"} {
			if !strings.Contains(got, w) {
				t.Errorf("reply's stderr lacks %q:\n%s", w, got)
			}
		}
		if strings.Contains(got, "sk/x/reply") {
			t.Errorf("a message on a response topic was taken for a request:\n%s", got)
		}
	})
}

// --timeout kills the command (and what it started); with --error-topic
// the failure goes there, naming the request, and not to the requester.
func TestReplyTimeoutAndErrorTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := startOwnBroker(t, ctx, "")
	p := fmt.Sprint(port)

	// The failure reaches the requester, with the reason.
	rep := startReply(t, ctx, "-p", p, "-t", "slow/+", "--timeout", "0.2", "--exec", "sh", "-c", "sleep 30 | cat")
	code, out, stderr := runMqtk(t, "", "rr", "-p", p, "-t", "slow/a", "-e", "slow-r/a", "-m", "x", "-W", "10", "-F", "[%p] %P")
	if want := "[] exit-code:-1 error:timed out after 200ms (command killed)\n"; code != 0 || out != want {
		t.Errorf("rr: exit %d, stdout %q, want %q: %s", code, out, want, stderr)
	}
	rep.interrupt(t)
	if !strings.Contains(rep.stderr.String(), "served 0, failed 1, skipped 0, rejected 0") {
		t.Errorf("summary:\n%s", rep.stderr)
	}

	// With --error-topic, the report goes there.
	reports := make(chan *mqttconn.Message, 4)
	cfg := mqttconn.Default()
	cfg.Host, cfg.Port = "127.0.0.1", port
	cfg.OnMessage = func(m *mqttconn.Message) { reports <- m }
	c, err := mqttconn.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	if codes, err := c.Subscribe(ctx, []mqttconn.Subscription{{Filter: "errs", QoS: 1}}); err != nil || codes[0] >= 0x80 {
		t.Fatalf("subscribe: %v %v", codes, err)
	}
	startReply(t, ctx, "-p", p, "-t", "slow/+", "--timeout", "0.2", "--error-topic", "errs", "--exec", "sh", "-c", "echo partial; sleep 30")
	code, out, _ = runMqtk(t, "", "rr", "-p", p, "-t", "slow/b", "-e", "slow-r/b", "-m", "x", "-W", "1",
		"-D", "publish", "correlation-data", "cd-b")
	if code != 27 || out != "" {
		t.Errorf("rr with --error-topic: exit %d, stdout %q; want 27 (the failure went elsewhere)", code, out)
	}
	select {
	case m := <-reports:
		if string(m.Payload) != "request on slow/b: timed out after 200ms (command killed)" || string(m.CorrelationData) != "cd-b" ||
			m.ResponseTopic != "slow-r/b" || userProp(m, reply.PropRequestTopic) != "slow/b" || userProp(m, reply.PropExitCode) != "-1" {
			t.Errorf("error report: payload %q, correlation %q, response topic %q, properties %v",
				m.Payload, m.CorrelationData, m.ResponseTopic, m.UserProperties)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report on --error-topic")
	}
}

// Ctrl-C while a request is being handled: no new requests are taken,
// the one in hand is answered, and reply exits 130 with the summary.
func TestReplyDrainsOnInterrupt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := fmt.Sprint(startOwnBroker(t, ctx, ""))
	started := filepath.Join(t.TempDir(), "started")
	rep := startReply(t, ctx, "-p", p, "-t", "drain", "-q", "1", "--exec", "sh", "-c", `touch "$0"; sleep 1; tr a-z A-Z`, started)
	type result struct {
		code     int
		out, err string
	}
	rrDone := make(chan result, 1)
	go func() {
		code, out, stderr := runMqtk(t, "", "rr", "-p", p, "-t", "drain", "-e", "drain/r", "-m", "in flight", "-q", "1", "-W", "20")
		rrDone <- result{code, out, stderr}
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if i == 1000 {
			t.Fatal("the --exec command never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := rep.interrupt(t); code != 130 {
		t.Errorf("reply exited %d, want 130", code)
	}
	if r := <-rrDone; r.code != 0 || r.out != "IN FLIGHT\n" {
		t.Errorf("the request in flight: rr exit %d, stdout %q: %s", r.code, r.out, r.err)
	}
	got := rep.stderr.String()
	for _, w := range []string{"mqtk: finishing the 1 requests already received", "mqtk: served 1, failed 0, skipped 0, rejected 0;"} {
		if !strings.Contains(got, w) {
			t.Errorf("reply's stderr lacks %q:\n%s", w, got)
		}
	}
}

// A request that finds the queue full is dropped, counted and noted, and
// does not hold up the connection: the others are still answered.
func TestReplyQueueBound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := fmt.Sprint(startOwnBroker(t, ctx, ""))
	dir := t.TempDir()
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	// The first command holds the only worker until the test releases it.
	rep := startReply(t, ctx, "-p", p, "-t", "qb/+", "-q", "1", "--queue", "1", "-C", "2", "--exec", "sh", "-c",
		`touch "$0"; while [ ! -e "$1" ]; do sleep 0.02; done; cat`, started, release)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; !cond(); i++ {
			if i == 1000 {
				t.Fatalf("%s did not happen within 10s:\n%s", what, rep.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	pub := func(n int) {
		t.Helper()
		if code, _, stderr := runMqtk(t, "", "pub", "-p", p, "-q", "1", "-t", fmt.Sprintf("qb/%d", n), "-m", fmt.Sprint(n),
			"--response-topic", fmt.Sprintf("qb-r/%d", n)); code != 0 {
			t.Fatalf("pub: %s", stderr)
		}
	}
	pub(1)
	waitFor("the first command's start", func() bool { _, err := os.Stat(started); return err == nil })
	pub(2) // waits in the queue
	pub(3) // finds it full
	waitFor("the queue-full note", func() bool {
		return strings.Contains(rep.stderr.String(), "queue full (--queue 1): dropped a request on qb/3")
	})
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := rep.wait(t); code != 0 {
		t.Errorf("reply -C 2 exited %d, want 0", code)
	}
	if got := rep.stderr.String(); !strings.Contains(got, "mqtk: served 2, failed 0, skipped 0, rejected 1;") {
		t.Errorf("summary:\n%s", got)
	}
}

// -e answers requests that name no response topic on a fixed topic, and
// --literal sends -m as it is; -v logs each request.
func TestReplyFixedResponseTopicLiteral(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := startOwnBroker(t, ctx, "")
	got := make(chan *mqttconn.Message, 4)
	cfg := mqttconn.Default()
	cfg.Host, cfg.Port = "127.0.0.1", port
	cfg.OnMessage = func(m *mqttconn.Message) { got <- m }
	c, err := mqttconn.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	if codes, err := c.Subscribe(ctx, []mqttconn.Subscription{{Filter: "fx/out", QoS: 1}}); err != nil || codes[0] >= 0x80 {
		t.Fatalf("subscribe: %v %v", codes, err)
	}
	p := fmt.Sprint(port)
	rep := startReply(t, ctx, "-p", p, "-t", "fx/in", "-e", "fx/out", "-q", "1", "-m", "{{.Seq}}", "--literal", "-v", "-C", "1")
	if code, _, stderr := runMqtk(t, "", "pub", "-p", p, "-q", "1", "-t", "fx/in", "-m", "plain"); code != 0 {
		t.Fatalf("pub: %s", stderr)
	}
	select {
	case m := <-got:
		if string(m.Payload) != "{{.Seq}}" {
			t.Errorf("response %q, want the literal -m", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no response on -e's topic")
	}
	if code := rep.wait(t); code != 0 || !strings.Contains(rep.stderr.String(), "mqtk: request 1 on fx/in: ok, answered on fx/out in ") {
		t.Errorf("exit %d, stderr:\n%s", code, rep.stderr)
	}
}

// Two responders in one --share group split the requests between them.
func TestReplyShareGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	replyBrokers(t, ctx, func(t *testing.T, port int) {
		p := fmt.Sprint(port)
		a := startReply(t, ctx, "-p", p, "-t", "grp/+", "--share", "g", "-q", "1", "-m", "a")
		b := startReply(t, ctx, "-p", p, "-t", "grp/+", "--share", "g", "-q", "1", "-m", "b")
		const n = 20
		for i := range n {
			if code, out, stderr := runMqtk(t, "", "rr", "-p", p, "-t", fmt.Sprintf("grp/%d", i), "-e", "grp-r", "-m", "x", "-q", "1", "-W", "10"); code != 0 || (out != "a\n" && out != "b\n") {
				t.Fatalf("request %d: exit %d, stdout %q: %s", i, code, out, stderr)
			}
		}
		served := regexp.MustCompile(`served (\d+), failed 0, skipped 0, rejected 0`)
		total := 0
		for _, r := range []*replyRun{a, b} {
			if code := r.interrupt(t); code != 130 {
				t.Errorf("exit %d, want 130", code)
			}
			m := served.FindStringSubmatch(r.stderr.String())
			if m == nil {
				t.Fatalf("no summary:\n%s", r.stderr)
			}
			k, _ := strconv.Atoi(m[1])
			if k == 0 {
				t.Errorf("one member of the group served nothing:\n%s", r.stderr)
			}
			total += k
		}
		if total != n {
			t.Errorf("the group served %d requests, want %d", total, n)
		}
	})
}

// mosquitto_rr, at MQTT 5 and 3.1.1 (with -e on the convention's topic),
// gets its answers from mqtk reply.
func TestReplyAnswersMosquittoRR(t *testing.T) {
	mrr, err := exec.LookPath("mosquitto_rr")
	if err != nil {
		t.Skip("mosquitto_rr is not installed (Debian package mosquitto-clients; .ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := mosquittotest.Start(t, mosquittotest.Options{})
	p := fmt.Sprint(b.Port())
	for _, v := range []string{"5", "311"} {
		rep := startReply(t, ctx, "-p", p, "-V", v, "-t", "mrr/+", "--exec", "tr", "a-z", "A-Z")
		args := []string{"-h", "127.0.0.1", "-p", p, "-V", v, "-t", "mrr/" + v, "-e", "mrr/" + v + "/reply", "-m", "hello", "-W", "10"}
		if code, out, stderr := runCmd(t, ctx, mrr, args...); code != 0 || out != "HELLO\n" {
			t.Errorf("mosquitto_rr -V %s: exit %d, stdout %q: %s", v, code, out, stderr)
		}
		rep.interrupt(t)
	}
}

// reply's flags fill reply.Options; everything after --exec is the
// command's, its own flags included.
func TestReplyFlags(t *testing.T) {
	var got *reply.Options
	newRoot := func() *cobra.Command {
		streams, _, _ := ui.Test(nil)
		root := &cobra.Command{Use: "mqtk", SilenceErrors: true, SilenceUsage: true}
		root.PersistentFlags().Bool("help", false, "help")
		root.AddCommand(newReplyCmd(&app{io: streams, getenv: func(string) string { return "" }}, func(o *reply.Options) error { got = o; return nil }))
		return root
	}
	root := newRoot()
	root.SetArgs(withProperties(root, []string{"reply", "-t", "a/#", "-t", "b", "-q", "2", "--share", "g", "--concurrency", "3", "--queue", "9",
		"--timeout", "1.5", "-C", "4", "-v", "--error-topic", "errs", "--response-suffix", "/resp", "-e", "fixed",
		"-D", "publish", "user-property", "k", "v", "-D", "publish", "content-type", "text/plain",
		"--exec", "sh", "-c", "echo -C 1", "x"}))
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Topics, []string{"a/#", "b"}) || got.QoS != 2 || got.Share != "g" || got.Concurrency != 3 || got.Queue != 9 ||
		got.Timeout != 1500*time.Millisecond || got.Count != 4 || !got.Verbose || got.ErrorTopic != "errs" ||
		got.ResponseSuffix != "/resp" || got.ResponseTopic != "fixed" || got.HasMessage ||
		!slices.Equal(got.Exec, []string{"sh", "-c", "echo -C 1", "x"}) ||
		fmt.Sprint(got.Response.UserProperties) != "[{k v}]" || got.Response.ContentType != "text/plain" {
		t.Errorf("options: %+v", got)
	}

	root = newRoot()
	root.SetArgs([]string{"reply", "-t", "a", "-m", "{{.Seq}}", "--literal"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !got.HasMessage || got.Message != "{{.Seq}}" || !got.Literal || got.Concurrency != 1 || got.Queue != reply.DefaultQueue ||
		got.ResponseSuffix != reqresp.DefaultSuffix || got.Exec != nil {
		t.Errorf("defaults: %+v", got)
	}
}

func TestReplyUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-m", "x"}, "no request topic given"},
		{[]string{"-t", "a"}, "no response given\nhint: use -m TEMPLATE or --exec COMMAND [ARGS...]\n"},
		{[]string{"-t", "a", "--exec"}, "--exec needs a command"},
		{[]string{"-t", "a", "-m", "x", "--exec", "cat"}, "-m and --exec both"},
		{[]string{"-t", "a", "-m", "x", "cat"}, `unexpected argument "cat"`},
		{[]string{"-t", "a", "--exec", "no-such-command-mqtk"}, "--exec no-such-command-mqtk: "},
		{[]string{"-t", "a", "-m", "{{.Seq"}, "-m is not a valid template"},
		{[]string{"-t", "a", "-m", "x", "-q", "3"}, "-q 3 out of range"},
		{[]string{"-t", "a", "-m", "x", "--concurrency", "0"}, "--concurrency must be at least 1"},
		{[]string{"-t", "a", "-m", "x", "--queue", "0"}, "--queue must be at least 1"},
		{[]string{"-t", "a", "-m", "x", "-C", "0"}, "-C/--count must be at least 1"},
		{[]string{"-t", "a", "-m", "x", "--timeout", "0"}, "--timeout must be more than zero"},
		{[]string{"-t", "a", "-m", "x", "--share", "a/b"}, "cannot contain /"},
		{[]string{"-t", "$share/g/a", "-m", "x", "--share", "g"}, "already shared"},
		{[]string{"-t", "a", "-m", "x", "--response-suffix", ""}, "--response-suffix is empty"},
		{[]string{"-t", "a", "-m", "x", "-D", "publish", "correlation-data", "c"}, "the request's to give"},
		{[]string{"-t", "a", "-m", "x", "-D", "publish", "topic-alias", "1"}, "mqtk reply sets no alias"},
		{[]string{"-t", "a", "-m", "x", "-V", "311", "-D", "publish", "content-type", "c"}, "properties are MQTT 5, and -V 3.1.1 has none"},
	} {
		code, _, stderr := runMqtk(t, "", append([]string{"reply", "-p", "1"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// The help documents the 3.1.1 convention, the environment and an example
// a newcomer can paste.
func TestReplyHelp(t *testing.T) {
	code, out, _ := runMqtk(t, "", "reply", "--help")
	out = strings.Join(strings.Fields(out), " ")
	for _, w := range []string{"TOPIC/reply", "MQTK_CORRELATION_DATA", "MQTK_USER_PROPERTY_<KEY>", "exit-code", "--error-topic",
		"mqtk reply -t 'svc/time/#' -m 'now: {{.Time}}'", "exits 130"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("reply --help lacks %q (exit %d)", w, code)
		}
	}
}
