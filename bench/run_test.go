package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/ui"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// brokers are the two brokers every mode runs against: the project's own,
// in-process, and Debian's mosquitto on a free loopback port.
func brokers(t *testing.T) map[string]func(*Options) {
	return map[string]func(*Options){
		"embedded": func(o *Options) { o.Embedded = true },
		"mosquitto": func(o *Options) {
			b := mosquittotest.Start(t, mosquittotest.Options{})
			o.Conn = mqttConfig(t, "mqtt://"+b.Addr(0))
		},
	}
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
	for name, setup := range brokers(t) {
		for _, qos := range []byte{1, 2} {
			t.Run(fmt.Sprintf("%s/qos%d", name, qos), func(t *testing.T) {
				o := testOptions(t, ModePubSub)
				o.QoS = qos
				setup(o)
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
	for name, setup := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, ModePubSub)
			o.Rate, o.Count, o.QoS, o.Subscribers = 2000, 300, 0, 1
			setup(o)
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
	for name, setup := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, ModePubSub)
			o.Count, o.DrainTimeout, o.Inflight = 2000, time.Second, 1
			o.Dial = dropAfter(50)
			setup(o)
			rep := measure(t, o)
			rc := rep.Receive
			if rc.Expected != 2*rep.Publish.Total || rc.Lost == 0 || rc.Lost != rc.Expected-rc.Unique {
				t.Fatalf("loss not detected: %+v", rc.Delivery)
			}
			err := Check(rep, ptr(0.0), 0)
			if mqttconn.KindOf(err) != mqttconn.KindUnmet {
				t.Fatalf("--max-loss 0 gave %v, want a KindUnmet error", err)
			}
		})
	}
}

func TestMaxP99Threshold(t *testing.T) {
	o := testOptions(t, ModePubSub)
	o.Embedded, o.Count, o.Subscribers = true, 100, 1
	rep := measure(t, o)
	if err := Check(rep, nil, time.Nanosecond); mqttconn.KindOf(err) != mqttconn.KindUnmet {
		t.Errorf("--max-p99 1ns gave %v", err)
	}
	if err := Check(rep, nil, time.Minute); err != nil {
		t.Errorf("--max-p99 1m gave %v", err)
	}
}

// bench pub on one side and bench sub on the other, as on two hosts: the
// subscriber counts loss from sequence numbers and times messages by the
// wall clock in the header.
func TestPubAndSubModesTogether(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	cfg := mqttConfig(t, "mqtt://"+b.Addr(0))
	so := testOptions(t, ModeSub)
	so.Conn, so.Subscribers, so.Count, so.Duration = cfg, 1, 400, 30*time.Second
	ready := make(chan struct{})
	so.OnReady = func() { close(ready) }
	po := testOptions(t, ModePub)
	po.Conn, po.Topic = cfg, so.Topic

	var subRep *Report
	var subErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		subRep, subErr = Measure(context.Background(), so)
	}()
	select {
	case <-ready:
	case <-done:
		t.Fatalf("bench sub ended before it was ready: %v", subErr)
	}
	pubRep := measure(t, po)
	<-done
	if subErr != nil {
		t.Fatal(subErr)
	}
	if pubRep.Receive != nil || pubRep.Publish.Sent != 400 || pubRep.Publish.AckLatency.Count != 400 {
		t.Fatalf("pub report %+v", pubRep.Publish)
	}
	rc := subRep.Receive
	if subRep.Publish != nil || rc.Measured != 400 || rc.Unique != 400 || rc.Lost != 0 || !rc.WallClock || rc.E2E.Count != 400 {
		t.Fatalf("sub report %+v", rc)
	}
}

func TestConnModeHoldsConnections(t *testing.T) {
	for name, setup := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, ModeConn)
			o.Clients, o.Count, o.Duration, o.ConnRate = 30, 0, 200*time.Millisecond, 1000
			setup(o)
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
	if mqttconn.KindOf(err) != mqttconn.KindNetwork {
		t.Fatalf("got %v (kind %v), want a network error", err, mqttconn.KindOf(err))
	}
}

// Two shards of bench pub run side by side (as two machines would) and
// their JSON reports merge into one run with every client counted once.
func TestShardsMerge(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	cfg := mqttConfig(t, "mqtt://"+b.Addr(0))
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
		{"topics without %t", func(o *Options) { o.Topics = 3 }, "has no %t"},
		{"no count no duration", func(o *Options) { o.Count, o.Duration = 0, 0 }, "give -n/--count"},
		{"count below clients", func(o *Options) { o.Count = 1 }, "fewer than one message per publisher"},
		{"bad shard", func(o *Options) { o.Shard, o.Shards = 2, 2 }, "--shard 2/2"},
		{"shard embedded", func(o *Options) { o.Shards, o.Embedded = 2, true }, "need a shared broker"},
		{"rate per client without rate", func(o *Options) { o.RatePerClient = true }, "--rate-per-client needs"},
		{"max loss on pub", func(o *Options) { o.Mode, o.MaxLossPct = ModePub, ptr(1.0) }, "--max-loss needs subscribers"},
		{"pubsub no subscribers", func(o *Options) { o.Subscribers = 0 }, "at least one publisher"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions(t, ModePubSub)
			c.mod(o)
			err := o.Validate()
			if mqttconn.KindOf(err) != mqttconn.KindUsage || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want a usage error containing %q", err, c.want)
			}
		})
	}
	if err := testOptions(t, ModePubSub).Validate(); err != nil {
		t.Errorf("valid options rejected: %v", err)
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
