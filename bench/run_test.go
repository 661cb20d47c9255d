package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/testpki"
	"github.com/mqtk/mqtk/internal/ui"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// brokers are the two brokers every mode runs against: the project's own,
// in-process, and Debian's mosquitto on a free loopback port.
func brokers() map[string]func(*testing.T, *Options) {
	return map[string]func(*testing.T, *Options){
		"embedded": func(_ *testing.T, o *Options) { o.Embedded = true },
		"mosquitto": func(t *testing.T, o *Options) {
			b := mosquittotest.Start(t, mosquittotest.Options{})
			o.Conn = mqttConfig(t, "mqtt://"+b.Addr(0))
		},
	}
}

// brokerNames are the brokers the tests that share one broker between
// several Measure calls loop over.
func brokerNames() []string { return []string{"embedded", "mosquitto"} }

// sharedBroker starts a broker that several Measure calls use, as
// processes on different hosts would: the project's broker on
// 127.0.0.1:0 in this process, or mosquitto.
func sharedBroker(t *testing.T, name string) mqttconn.Config {
	t.Helper()
	if name == "mosquitto" {
		b := mosquittotest.Start(t, mosquittotest.Options{})
		return mqttConfig(t, "mqtt://"+b.Addr(0))
	}
	u, stop, err := startEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return mqttConfig(t, u)
}

func mqttConfig(t *testing.T, url string) mqttconn.Config {
	t.Helper()
	c := mqttconn.Default()
	c.URL = url
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	return c
}

var topicSeq atomic.Int64

func testOptions(t *testing.T, mode string) *Options {
	io, _, _ := ui.Test(nil)
	return &Options{
		Mode: mode, Clients: 2, Subscribers: 2, Topic: fmt.Sprintf("bt/%d/%%i", topicSeq.Add(1)), Topics: 1,
		QoS: 1, Size: 64, Count: 400, Shards: 1, Interval: 100 * time.Millisecond, DrainTimeout: 10 * time.Second,
		IO: io, Version: "test",
	}
}

func measure(t *testing.T, o *Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Measure(ctx, o)
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	return rep
}

// At QoS 1 and 2 with no faults every message reaches every subscriber
// exactly once, in order, and every one is timed.
func TestPubSubDeliversEverythingAtQoS1And2(t *testing.T) {
	for name, setup := range brokers() {
		for _, qos := range []byte{1, 2} {
			t.Run(fmt.Sprintf("%s/qos%d", name, qos), func(t *testing.T) {
				o := testOptions(t, ModePubSub)
				o.QoS = qos
				setup(t, o)
				rep := measure(t, o)
				p, rc := rep.Publish, rep.Receive
				if p.Sent != 400 || p.Total != 400 || p.Acked != 400 || p.Failed != 0 || p.Publishers != 2 {
					t.Fatalf("publish %+v", p)
				}
				if rc.Expected != 800 || rc.Received != 800 || rc.Unique != 800 || rc.Lost != 0 || rc.Duplicated != 0 || rc.OutOfOrder != 0 {
					t.Fatalf("delivery %+v", rc.Delivery)
				}
				if rc.E2E.Count != 800 || rc.E2EUncorrected.Count != 800 || p.AckLatency.Count != 400 {
					t.Errorf("histogram counts e2e %d unc %d ack %d", rc.E2E.Count, rc.E2EUncorrected.Count, p.AckLatency.Count)
				}
				if rep.Connect.OK != 4 || rep.Connect.Latency.Count != 4 {
					t.Errorf("connect %+v", rep.Connect)
				}
				if rep.Env.Broker != map[string]string{"embedded": "in-process", "mosquitto": "external"}[name] {
					t.Errorf("broker recorded as %q", rep.Env.Broker)
				}
				var sum int64
				for _, iv := range rep.Intervals {
					sum += iv.Received
				}
				if sum != rc.Measured {
					t.Errorf("interval rows add up to %d received, report says %d", sum, rc.Measured)
				}
				if err := Check(rep, ptr(0.0), 0); err != nil {
					t.Errorf("--max-loss 0 failed with no loss: %v", err)
				}
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestScheduledRunReportsLagAndBothLatencies(t *testing.T) {
	for name, setup := range brokers() {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, ModePubSub)
			o.Rate, o.Count, o.QoS, o.Subscribers = 2000, 300, 0, 1
			setup(t, o)
			rep := measure(t, o)
			if rep.LoadModel != "scheduled" || rep.Publish.Offered != 2000 {
				t.Fatalf("load model %q offered %v", rep.LoadModel, rep.Publish.Offered)
			}
			if rep.Publish.Sent != 300 || rep.Publish.Overruns < 0 || rep.Publish.Overruns > 300 {
				t.Fatalf("publish %+v", rep.Publish)
			}
			rc := rep.Receive
			if rc.E2E.Count != rc.Measured || rc.E2EUncorrected.Count != rc.Measured {
				t.Errorf("e2e %d uncorrected %d, received %d", rc.E2E.Count, rc.E2EUncorrected.Count, rc.Measured)
			}
			// Measured from the intended time, latency is never below the
			// latency measured from the actual send.
			if rc.E2E.Max < rc.E2EUncorrected.Max || rc.E2E.Mean < rc.E2EUncorrected.Mean {
				t.Errorf("corrected %+v below uncorrected %+v", rc.E2E, rc.E2EUncorrected)
			}
			if rep.Publish.AckLatency.Count != 0 {
				t.Errorf("QoS 0 has no acknowledgements, got %d", rep.Publish.AckLatency.Count)
			}
		})
	}
}

func TestDurationRunExcludesWarmup(t *testing.T) {
	o := testOptions(t, ModePubSub)
	o.Embedded = true
	o.Count, o.Duration, o.Warmup, o.Subscribers = 0, 400*time.Millisecond, 200*time.Millisecond, 1
	rep := measure(t, o)
	p := rep.Publish
	if p.Warmup == 0 || p.Sent == 0 || p.Total != p.Warmup+p.Sent {
		t.Fatalf("warm-up %d, measured %d, total %d", p.Warmup, p.Sent, p.Total)
	}
	if p.AckLatency.Count != p.Sent {
		t.Errorf("ack histogram holds %d, measured sends %d: warm-up leaked in", p.AckLatency.Count, p.Sent)
	}
	if rep.Receive.E2E.Count != rep.Receive.Measured || rep.Receive.Received < rep.Receive.Measured {
		t.Errorf("receive %+v", rep.Receive)
	}
	if len(rep.Intervals) == 0 || rep.Measured <= 0 {
		t.Errorf("intervals %d measured %v", len(rep.Intervals), rep.Measured)
	}
}

// dropAfter wraps dial so that subscriber 0 disconnects after n messages:
// the messages published after that are lost for it, on purpose.
func dropAfter(n int64) func(context.Context, mqttconn.Config) (mqttconn.Client, error) {
	return func(ctx context.Context, cfg mqttconn.Config) (mqttconn.Client, error) {
		if !strings.HasSuffix(cfg.ClientID, "-s0") {
			return mqttconn.Dial(ctx, cfg)
		}
		var (
			seen   atomic.Int64
			client atomic.Pointer[mqttconn.Client]
			once   sync.Once
		)
		orig := cfg.OnMessage
		cfg.OnMessage = func(m *mqttconn.Message) {
			orig(m)
			if seen.Add(1) == n {
				once.Do(func() {
					go func() {
						if c := client.Load(); c != nil {
							_ = (*c).Disconnect(context.Background())
						}
					}()
				})
			}
		}
		c, err := mqttconn.Dial(ctx, cfg)
		if err == nil {
			client.Store(&c)
		}
		return c, err
	}
}

func TestLossIsDetectedWhenASubscriberDrops(t *testing.T) {
	for name, setup := range brokers() {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, ModePubSub)
			o.Count, o.DrainTimeout, o.Inflight = 2000, time.Second, 1
			o.Dial = dropAfter(50)
			setup(t, o)
			rep := measure(t, o)
			rc := rep.Receive
			if rc.Expected != 2*rep.Publish.Total || rc.Lost == 0 || rc.Lost != rc.Expected-rc.Unique {
				t.Fatalf("loss not detected: %+v", rc.Delivery)
			}
			err := Check(rep, ptr(0.0), 0)
			if clierr.KindOf(err) != clierr.KindUnmet {
				t.Fatalf("--max-loss 0 gave %v, want a KindUnmet error", err)
			}
		})
	}
}

// bench conn checks --max-p99 against the connect latency.
func TestConnMaxP99UsesConnectLatency(t *testing.T) {
	o := testOptions(t, ModeConn)
	o.Embedded, o.Clients, o.Subscribers, o.Count, o.Duration = true, 5, 0, 0, 10*time.Millisecond
	rep := measure(t, o)
	if err := Check(rep, nil, time.Nanosecond); clierr.KindOf(err) != clierr.KindUnmet || !strings.Contains(err.Error(), "connect p99") {
		t.Errorf("--max-p99 1ns gave %v", err)
	}
	if err := Check(rep, nil, time.Minute); err != nil {
		t.Errorf("--max-p99 1m gave %v", err)
	}
}

func TestMaxP99Threshold(t *testing.T) {
	o := testOptions(t, ModePubSub)
	o.Embedded, o.Count, o.Subscribers = true, 100, 1
	rep := measure(t, o)
	if err := Check(rep, nil, time.Nanosecond); clierr.KindOf(err) != clierr.KindUnmet {
		t.Errorf("--max-p99 1ns gave %v", err)
	}
	if err := Check(rep, nil, time.Minute); err != nil {
		t.Errorf("--max-p99 1m gave %v", err)
	}
}

// bench pub on one side and bench sub on the other, as on two hosts: the
// subscriber counts loss from sequence numbers and times messages by the
// wall clock in the header. Throughput on each side is its total over
// (last end − first start) of its own window.
func TestPubAndSubModesTogether(t *testing.T) {
	for _, name := range brokerNames() {
		t.Run(name, func(t *testing.T) {
			cfg := sharedBroker(t, name)
			so := testOptions(t, ModeSub)
			so.Conn, so.Subscribers, so.Count, so.Duration = cfg, 1, 400, 30*time.Second
			po := testOptions(t, ModePub)
			po.Conn, po.Topic = cfg, so.Topic
			subRep, pubRep, _ := pubAfterSub(t, so, po, 0)
			if pubRep.Receive != nil || pubRep.Publish.Sent != 400 || pubRep.Publish.AckLatency.Count != 400 {
				t.Fatalf("pub report %+v", pubRep.Publish)
			}
			rc := subRep.Receive
			if subRep.Publish != nil || rc.Measured != 400 || rc.Unique != 400 || rc.Lost != 0 || !rc.WallClock || rc.E2E.Count != 400 {
				t.Fatalf("sub report %+v", rc)
			}
			checkRate(t, "publish", pubRep.Publish.PerSecond, pubRep.Publish.Sent, pubRep)
			checkRate(t, "receive", rc.PerSecond, rc.Measured, subRep)
		})
	}
}

// checkRate asserts rate = n ÷ (Ended − Started), to the report's rounding.
func checkRate(t *testing.T, what string, rate float64, n int64, rep *Report) {
	t.Helper()
	secs := rep.Ended.Sub(rep.Started).Seconds()
	if secs <= 0 || n == 0 {
		t.Fatalf("%s: %d messages over %v s", what, n, secs)
	}
	if want := float64(n) / secs; math.Abs(rate-want) > want*1e-3+1e-3 {
		t.Errorf("%s: %v msg/s, want %d ÷ %v s = %v", what, rate, n, secs, want)
	}
}

// pubAfterSub runs bench sub until it is ready, waits delay, then runs
// bench pub, and returns both reports and when the publisher was started.
func pubAfterSub(t *testing.T, so, po *Options, delay time.Duration) (sub, pub *Report, launched time.Time) {
	t.Helper()
	ready := make(chan struct{})
	so.OnReady = func() { close(ready) }
	var subErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		sub, subErr = Measure(context.Background(), so)
	}()
	select {
	case <-ready:
	case <-done:
		t.Fatalf("bench sub ended before it was ready: %v", subErr)
	}
	time.Sleep(delay)
	launched = time.Now()
	pub = measure(t, po)
	<-done
	if subErr != nil {
		t.Fatal(subErr)
	}
	return sub, pub, launched
}

// bench sub's window is made of message times: a delay before the
// publisher starts is not part of it, and the publisher's warm-up, marked
// in each header, is left out of its statistics. The publisher's schedule
// makes the split exact: 2 publishers at 500/s each, due every 2 ms from
// start (+1 ms for the second), 200 ms of warm-up: 100 warm-up messages
// each, then 100 measured each.
func TestSubWindowStartsAtFirstMeasuredMessage(t *testing.T) {
	cfg := sharedBroker(t, "embedded")
	so := testOptions(t, ModeSub)
	so.Conn, so.Subscribers, so.Count, so.Duration = cfg, 1, 200, 30*time.Second
	po := testOptions(t, ModePub)
	po.Conn, po.Topic, po.Count, po.Rate, po.Warmup = cfg, so.Topic, 400, 1000, 200*time.Millisecond
	subRep, pubRep, launched := pubAfterSub(t, so, po, 300*time.Millisecond)
	p, rc := pubRep.Publish, subRep.Receive
	if p.Warmup != 200 || p.Sent != 200 {
		t.Fatalf("publisher warm-up %d, measured %d; want 200 and 200", p.Warmup, p.Sent)
	}
	// Per publisher, warm-up messages precede measured ones, so by the
	// 200th measured one every warm-up one has arrived too.
	if rc.Received != 400 || rc.Measured != 200 || rc.E2E.Count != 200 || rc.OutOfOrder != 0 {
		t.Fatalf("sub received %d, measured %d, timed %d: the header's warm-up flag was not honoured", rc.Received, rc.Measured, rc.E2E.Count)
	}
	// The window cannot start before the first measured message could
	// have arrived: after the publisher was launched, after its measured
	// phase began. Listening while the publisher was not running is not
	// in it.
	if subRep.Started.Before(launched) || subRep.Started.Before(pubRep.Started) {
		t.Errorf("sub window starts %v, publisher launched %v, its measured phase began %v",
			subRep.Started.Format(time.RFC3339Nano), launched.Format(time.RFC3339Nano), pubRep.Started.Format(time.RFC3339Nano))
	}
	if !subRep.Ended.After(subRep.Started) {
		t.Errorf("empty window %v – %v", subRep.Started, subRep.Ended)
	}
	checkRate(t, "receive", rc.PerSecond, rc.Measured, subRep)
}

func TestConnModeHoldsConnections(t *testing.T) {
	for name, setup := range brokers() {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, ModeConn)
			o.Clients, o.Count, o.Duration, o.ConnRate = 30, 0, 200*time.Millisecond, 1000
			setup(t, o)
			rep := measure(t, o)
			cn := rep.Connect
			if cn.Attempted != 30 || cn.OK != 30 || cn.Failed != 0 || cn.Latency.Count != 30 || len(cn.Failures) != 0 {
				t.Fatalf("connect %+v", cn)
			}
			if rep.Publish != nil || rep.Receive != nil {
				t.Error("conn mode reported messages")
			}
		})
	}
}

func TestConnectFailureIsClassified(t *testing.T) {
	o := testOptions(t, ModeConn)
	o.Clients, o.Count, o.Duration = 2, 0, time.Second
	o.Conn = mqttConfig(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mosquittotest.FreePort(t)))
	_, err := Measure(context.Background(), o)
	if clierr.KindOf(err) != clierr.KindNetwork {
		t.Fatalf("got %v (kind %v), want a network error", err, clierr.KindOf(err))
	}
}

// Two shards of bench pub run side by side (as two machines would) and
// their JSON reports merge into one run with every client counted once.
func TestShardsMerge(t *testing.T) {
	for _, name := range brokerNames() {
		t.Run(name, func(t *testing.T) {
			cfg := sharedBroker(t, name)
			var wg sync.WaitGroup
			reps := make([]*Report, 2)
			errs := make([]error, 2)
			topic := fmt.Sprintf("bt/%d/%%i", topicSeq.Add(1))
			for i := range 2 {
				o := testOptions(t, ModePub)
				o.Conn, o.Topic, o.Clients, o.Count, o.Shard, o.Shards = cfg, topic, 5, 500, i, 2
				wg.Add(1)
				go func() { defer wg.Done(); reps[i], errs[i] = Measure(context.Background(), o) }()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if reps[0].Publish.Publishers != 2 || reps[1].Publish.Publishers != 3 {
				t.Fatalf("clients split %d/%d, want 2/3", reps[0].Publish.Publishers, reps[1].Publish.Publishers)
			}
			// Round-trip through JSON, as 'bench merge' does.
			for i, r := range reps {
				var sb strings.Builder
				if err := WriteJSON(&sb, r); err != nil {
					t.Fatal(err)
				}
				back, err := ReadJSON(strings.NewReader(sb.String()))
				if err != nil {
					t.Fatal(err)
				}
				reps[i] = back
			}
			m, err := Merge(reps)
			if err != nil {
				t.Fatal(err)
			}
			if m.Shards != 2 || m.Publish.Publishers != 5 || m.Publish.Sent != 500 || m.Publish.AckLatency.Count != 500 || m.Connect.OK != 5 {
				t.Fatalf("merged %+v connect %+v", m.Publish, m.Connect)
			}
			// The same shard twice is refused, not counted as a second one.
			if _, err := Merge([]*Report{reps[0], reps[0]}); err == nil {
				t.Error("merged a shard with itself")
			}
		})
	}
}

func TestValidateRejectsNonsense(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"size below header", func(o *Options) { o.Size = 10 }, "smaller than the 32-byte bench header"},
		{"rate with inflight", func(o *Options) { o.Rate, o.Inflight = 100, 4 }, "--rate and --inflight do not go together"},
		{"qos0 zero loss", func(o *Options) { o.QoS, o.MaxLossPct = 0, ptr(0.0) }, "QoS 0"},
		{"wildcard topic", func(o *Options) { o.Topic = "a/+/b" }, "must not hold wildcards"},
		{"topic not utf-8", func(o *Options) { o.Topic = "a/\xff/%i" }, `-t/--topic: topic name "a/\xff/%i": not valid UTF-8`},
		{"topic with nul", func(o *Options) { o.Topic = "a\x00" }, "U+0000"},
		{"topics without %t", func(o *Options) { o.Topics = 3 }, "has no %t"},
		{"no count no duration", func(o *Options) { o.Count, o.Duration = 0, 0 }, "ends the run\nhint: give -n/--count or a positive -d/--duration"},
		{"count below clients", func(o *Options) { o.Count = 1 }, "fewer than one message per publisher"},
		{"bad shard", func(o *Options) { o.Shard, o.Shards = 2, 2 }, "--shard 2/2"},
		{"shard embedded", func(o *Options) { o.Shards, o.Embedded = 2, true }, "need a shared broker"},
		{"rate per client without rate", func(o *Options) { o.RatePerClient = true }, "--rate-per-client needs"},
		{"max loss on pub", func(o *Options) { o.Mode, o.MaxLossPct = ModePub, ptr(1.0) }, "--max-loss needs subscribers"},
		{"pubsub no subscribers", func(o *Options) { o.Subscribers = 0 }, "at least one publisher"},
		{"rate inf", func(o *Options) { o.Rate = math.Inf(1) }, "--rate +Inf is not a number"},
		{"rate nan", func(o *Options) { o.Rate = math.NaN() }, "--rate NaN is not a number"},
		{"conn rate nan", func(o *Options) { o.ConnRate = math.NaN() }, "--conn-rate NaN is not a number"},
		{"max loss nan", func(o *Options) { o.MaxLossPct = ptr(math.NaN()) }, "--max-loss NaN out of range"},
		{"subscribers below shards", func(o *Options) { o.Shards, o.Clients = 3, 6 }, "--subscribers 2 leaves some shards without subscribers"},
		{"tls in-process", func(o *Options) { o.Embedded, o.Conn.TLS.CAFile = true, "ca.pem" }, "--cafile has no effect on the in-process broker"},
		{"insecure in-process", func(o *Options) { o.Embedded, o.Conn.TLS.Insecure = true, true }, "--insecure has no effect on the in-process broker"},
		{"unknown placeholder", func(o *Options) { o.Topic = "a/%x/b" }, `unknown placeholder "%x"`},
		{"trailing percent", func(o *Options) { o.Topic = "a/b%" }, `unknown placeholder "%"`},
		{"sub warmup", func(o *Options) { o.Mode, o.Warmup = ModeSub, time.Second }, "--warmup has no effect in bench sub"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions(t, ModePubSub)
			c.mod(o)
			err := o.Validate()
			// The message, then each hint as the user sees it.
			shown := fmt.Sprint(err)
			for _, h := range clierr.HintsOf(err) {
				shown += "\nhint: " + h
			}
			if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(shown, c.want) {
				t.Errorf("got %q, want a usage error containing %q", shown, c.want)
			}
		})
	}
	if err := testOptions(t, ModePubSub).Validate(); err != nil {
		t.Errorf("valid options rejected: %v", err)
	}
	o := testOptions(t, ModePubSub)
	o.Topic, o.Topics = "a/%i/%c/%t", 2
	if err := o.Validate(); err != nil {
		t.Errorf("every placeholder rejected: %v", err)
	}
	if err := (*Options).Validate(func() *Options {
		o := testOptions(t, ModePubSub)
		o.Embedded = true
		return o
	}()); err != nil {
		t.Errorf("in-process without TLS flags rejected: %v", err)
	}
}

// Topics from %c and %t, a per-client rate and QoS 2 together: every
// subscriber still gets every publisher's messages on every topic.
func TestTopicPatternsAndPerClientRate(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	o := testOptions(t, ModePubSub)
	o.Conn = mqttConfig(t, "mqtt://"+b.Addr(0))
	o.Topic = fmt.Sprintf("bt/%d/%%c/t%%t", topicSeq.Add(1))
	o.Topics, o.Rate, o.RatePerClient, o.QoS, o.Count = 3, 500, true, 2, 300
	rep := measure(t, o)
	if rep.Config.Rate != 1000 || rep.LoadModel != "scheduled" {
		t.Errorf("rate %v (want 2 × 500 recorded as the total), model %q", rep.Config.Rate, rep.LoadModel)
	}
	rc := rep.Receive
	if rc.Expected != 600 || rc.Unique != 600 || rc.Lost != 0 {
		t.Fatalf("delivery %+v", rc.Delivery)
	}
}

// Two pubsub shards on one broker, started together (as an orchestrator's
// barrier would): each shard's subscriber receives both shards' messages,
// stamped with the wall clock, and the merged report expects every message
// once per subscriber of the whole run.
func TestPubSubShardsMergeExpectEveryMessagePerSubscriber(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	cfg := mqttConfig(t, "mqtt://"+b.Addr(0))
	topic := fmt.Sprintf("bt/%d/%%i", topicSeq.Add(1))
	var ready, wg sync.WaitGroup
	ready.Add(2)
	reps := make([]*Report, 2)
	errs := make([]error, 2)
	for i := range 2 {
		o := testOptions(t, ModePubSub)
		o.Conn, o.Topic, o.Clients, o.Subscribers, o.Count, o.Shard, o.Shards = cfg, topic, 4, 2, 400, i, 2
		o.OnReady = func() { ready.Done(); ready.Wait() }
		wg.Add(1)
		go func() { defer wg.Done(); reps[i], errs[i] = Measure(context.Background(), o) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i, r := range reps {
		if r.Receive.Subscribers != 1 || !r.Receive.WallClock || r.Receive.Unique != 400 {
			t.Errorf("shard %d: %+v", i, r.Receive)
		}
	}
	m, err := Merge(reps)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Receive; d.Expected != 800 || d.Unique != 800 || d.Lost != 0 || m.Publish.Sent != 400 || m.Receive.E2E.Count != 800 {
		t.Fatalf("merged: publish %+v receive %+v", m.Publish, d.Delivery)
	}
}

// The live progress line shows elapsed time, sent/s, received/s, p99 and
// loss once per interval.
func TestProgressLine(t *testing.T) {
	io, _, errb := ui.Test(nil)
	o := testOptions(t, ModePubSub)
	o.Embedded, o.IO, o.Progress = true, io, true
	o.Count, o.Duration, o.Subscribers = 0, 350*time.Millisecond, 1
	measure(t, o)
	line := regexp.MustCompile(`mqtk: +\d+s sent=[\d,]+ \([\d,]+/s\) recv=[\d,]+ \([\d,]+/s\) p99=\d+\.\d{3}ms lost=[\d,]+`)
	if !line.MatchString(errb.String()) {
		t.Errorf("no progress line in %q", errb.String())
	}
}

// Above 90% CPU the report warns that the load generator may be the limit.
func TestCPUWarning(t *testing.T) {
	o := testOptions(t, ModePubSub)
	o.Embedded, o.Count = true, 100
	at := time.Now()
	procs := float64(runtime.GOMAXPROCS(0))
	calls := 0
	o.readCPU = func() cpuTimes { // called at the start and the end
		calls++
		if calls == 1 {
			return cpuTimes{at: at}
		}
		return cpuTimes{user: 0.75 * procs, sys: 0.2 * procs, at: at.Add(time.Second)}
	}
	rep := measure(t, o)
	if rep.Env.CPUPercent != 95 {
		t.Fatalf("cpu %v%%, want 95", rep.Env.CPUPercent)
	}
	want := fmt.Sprintf("this process used 95%% of its %d CPUs: the load generator, not the broker, may be the limit (the in-process broker shares those CPUs)", runtime.GOMAXPROCS(0))
	if !slices.Contains(rep.Warnings, want) {
		t.Errorf("warnings %q", rep.Warnings)
	}
}

// TLS, WebSocket and MQTT 3.1.1 through bench, against mosquitto.
func TestTransportsAndProtocolVersion(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "127.0.0.1")
	b := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{}, {TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}}, {WebSockets: true},
	}})
	for _, c := range []struct {
		name, url, scheme string
		mod               func(*mqttconn.Config)
		proto             string
	}{
		{"tls", "mqtts://" + b.Addr(1), "mqtts://", func(c *mqttconn.Config) { c.TLS.CAFile = pki.CAFile }, "5"},
		{"websocket", "ws://" + b.Addr(2) + "/mqtt", "ws://", func(*mqttconn.Config) {}, "5"},
		{"mqtt311", "mqtt://" + b.Addr(0), "mqtt://", func(c *mqttconn.Config) { c.Version = mqttconn.V311 }, "3.1.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := mqttconn.Default()
			cfg.URL = c.url
			c.mod(&cfg)
			if err := cfg.Resolve(); err != nil {
				t.Fatal(err)
			}
			o := testOptions(t, ModePubSub)
			o.Conn, o.Count = cfg, 200
			rep := measure(t, o)
			if rc := rep.Receive; rc.Expected != 400 || rc.Unique != 400 || rc.Lost != 0 || rep.Publish.Acked != 200 {
				t.Fatalf("delivery %+v", rc.Delivery)
			}
			if !strings.HasPrefix(rep.Env.BrokerURL, c.scheme) || rep.Config.ProtocolVer != c.proto {
				t.Errorf("recorded %s, MQTT %s", rep.Env.BrokerURL, rep.Config.ProtocolVer)
			}
		})
	}
}

// Closed loop with several messages in flight per publisher at QoS 1:
// everything is delivered and the setting is recorded.
func TestInflightAboveOne(t *testing.T) {
	for _, name := range brokerNames() {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, ModePubSub)
			o.Inflight, o.Count = 8, 1000
			brokers()[name](t, o)
			rep := measure(t, o)
			if p := rep.Publish; p.Sent != 1000 || p.Acked != 1000 || p.Failed != 0 || p.AckLatency.Count != 1000 {
				t.Fatalf("publish %+v", p)
			}
			if rc := rep.Receive; rc.Expected != 2000 || rc.Unique != 2000 || rc.Lost != 0 || rc.Duplicated != 0 {
				t.Fatalf("delivery %+v", rc.Delivery)
			}
			if rep.Config.Inflight != 8 || rep.LoadModel != "closed-loop" {
				t.Errorf("recorded inflight %d, %s", rep.Config.Inflight, rep.LoadModel)
			}
		})
	}
}

// --conn-rate spaces connection attempts: attempt i starts no earlier than
// i/rate after the ramp began (which is after this test took its start
// time), so the attempts follow the schedule.
func TestConnRateRamp(t *testing.T) {
	o := testOptions(t, ModeConn)
	o.Embedded, o.Clients, o.Subscribers, o.Count, o.Duration, o.ConnRate = true, 10, 0, 0, 10*time.Millisecond, 50
	var mu sync.Mutex
	starts := map[string]time.Time{}
	o.Dial = func(ctx context.Context, cfg mqttconn.Config) (mqttconn.Client, error) {
		mu.Lock()
		starts[cfg.ClientID] = time.Now()
		mu.Unlock()
		return mqttconn.Dial(ctx, cfg)
	}
	before := time.Now()
	rep := measure(t, o)
	if rep.Connect.OK != 10 || len(starts) != 10 {
		t.Fatalf("connect %+v, %d attempts", rep.Connect, len(starts))
	}
	gap := time.Second / 50
	for id, at := range starts {
		i, err := strconv.Atoi(id[strings.LastIndex(id, "-c")+2:])
		if err != nil {
			t.Fatal(err)
		}
		if at.Before(before.Add(time.Duration(i) * gap)) {
			t.Errorf("connection %d started %v after the run began, before its slot at %v", i, at.Sub(before), time.Duration(i)*gap)
		}
	}
	if rep.Config.ConnRate != 50 {
		t.Errorf("recorded conn rate %v", rep.Config.ConnRate)
	}
}

// %c and %t expand per publisher and per topic: a client subscribed to the
// exact topics (no wildcards) sees every message, spread evenly over them.
func TestTopicPlaceholdersExpand(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	cfg := mqttConfig(t, "mqtt://"+b.Addr(0))
	o := testOptions(t, ModePubSub)
	pattern := fmt.Sprintf("bt/%d/%%c/t%%t", topicSeq.Add(1))
	o.Conn, o.Topic, o.Topics, o.Count, o.Subscribers = cfg, pattern, 3, 300, 1
	var mu sync.Mutex
	var pubIDs []string
	o.Dial = func(ctx context.Context, c mqttconn.Config) (mqttconn.Client, error) {
		if strings.Contains(c.ClientID, "-p") {
			mu.Lock()
			pubIDs = append(pubIDs, c.ClientID)
			mu.Unlock()
		}
		return mqttconn.Dial(ctx, c)
	}
	got := map[string]int{}
	var total atomic.Int64
	ocfg := cfg
	ocfg.ClientID = fmt.Sprintf("observer-%d", topicSeq.Add(1))
	ocfg.OnMessage = func(m *mqttconn.Message) {
		mu.Lock()
		got[m.Topic]++
		mu.Unlock()
		total.Add(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obs, err := mqttconn.Dial(ctx, ocfg)
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Disconnect(context.Background())
	var want []string
	o.OnReady = func() {
		mu.Lock()
		defer mu.Unlock()
		var subs []mqttconn.Subscription
		for _, id := range pubIDs {
			for k := range 3 {
				topic := strings.ReplaceAll(strings.ReplaceAll(pattern, "%c", id), "%t", strconv.Itoa(k))
				want = append(want, topic)
				subs = append(subs, mqttconn.Subscription{Filter: topic, QoS: 1})
			}
		}
		if _, err := obs.Subscribe(ctx, subs); err != nil {
			t.Errorf("subscribe to %v: %v", want, err)
		}
	}
	rep := measure(t, o)
	if rep.Publish.Sent != 300 || len(want) != 6 {
		t.Fatalf("sent %d, topics %v", rep.Publish.Sent, want)
	}
	for total.Load() < 300 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, topic := range want {
		if got[topic] != 50 { // 150 per publisher over 3 topics
			t.Errorf("%s got %d messages, want 50 (all: %v)", topic, got[topic], got)
		}
	}
}

// The drain waits out a pause in deliveries longer than a second when
// --drain-timeout allows it: a subscriber that stalls for 1.5 s part way
// (its reader blocked) still gets everything, and nothing is counted lost.
func TestDrainFollowsDrainTimeout(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	o := testOptions(t, ModePubSub)
	o.Conn = mqttConfig(t, "mqtt://"+b.Addr(0))
	o.Subscribers, o.Count, o.DrainTimeout = 1, 400, 30*time.Second // quiet periods up to 6 s are waited out
	o.Dial = func(ctx context.Context, cfg mqttconn.Config) (mqttconn.Client, error) {
		if strings.HasSuffix(cfg.ClientID, "-s0") {
			orig := cfg.OnMessage
			var n atomic.Int64
			cfg.OnMessage = func(m *mqttconn.Message) {
				if n.Add(1) == 300 {
					time.Sleep(1500 * time.Millisecond)
				}
				orig(m)
			}
		}
		return mqttconn.Dial(ctx, cfg)
	}
	rep := measure(t, o)
	if rc := rep.Receive; rc.Expected != 400 || rc.Unique != 400 || rc.Lost != 0 {
		t.Fatalf("delivery %+v", rc.Delivery)
	}
	if rep.Config.DrainTimeout != "30s" || rep.Config.Interval != "100ms" {
		t.Errorf("recorded drain timeout %q, interval %q", rep.Config.DrainTimeout, rep.Config.Interval)
	}
}
