package pub

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// probeWait bounds how long a probe waits for the messages a test expects.
// It is a deadline for a failure message, not a timing threshold: on a
// working broker the messages are there long before it.
const probeWait = 30 * time.Second

// probeBuffer is how many messages a probe holds before a test reads them;
// more than any test here publishes to one probe.
const probeBuffer = 1024

// probe is a subscriber on mqtk's own connection layer (MQTT 5, clean
// start) that is connected and subscribed, SUBACK received, before the
// test publishes, and stays connected while the test runs. So it sees
// every message at the QoS it was published with (it subscribes at QoS 2),
// QoS 0 included, on either broker, without relying on a broker queueing
// QoS 0 messages for an offline session.
type probe struct {
	t      *testing.T
	filter string
	msgs   chan *mqttconn.Message

	mu       sync.Mutex
	overflow int // messages dropped because msgs was full
}

// newProbe subscribes to filter on b's first listener, a plain TCP one,
// and disconnects when the test ends.
func newProbe(t *testing.T, b *brokertest.Broker, filter string) *probe {
	t.Helper()
	return newProbeOn(t, b, 0, filter)
}

// newProbeOn is newProbe on b's plain TCP listener number i.
func newProbeOn(t *testing.T, b *brokertest.Broker, i int, filter string) *probe {
	t.Helper()
	p := &probe{t: t, filter: filter, msgs: make(chan *mqttconn.Message, probeBuffer)}
	cfg := mqttconn.Default()
	cfg.Host, cfg.Port, cfg.Version = "127.0.0.1", b.Ports[i], mqttconn.V5
	if err := cfg.Resolve(); err != nil {
		t.Fatalf("probe: %v", err)
	}
	cfg.IDPrefix = "probe-"
	// OnMessage runs on the connection's reader and must not block: a full
	// buffer is counted and reported by messages instead of stalling it.
	cfg.OnMessage = func(m *mqttconn.Message) {
		select {
		case p.msgs <- m:
		default:
			p.mu.Lock()
			p.overflow++
			p.mu.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeWait)
	defer cancel()
	c, err := mqttconn.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("probe: connect to %s: %v", b.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	codes, err := c.Subscribe(ctx, []mqttconn.Subscription{{Filter: filter, QoS: 2}})
	if err != nil {
		t.Fatalf("probe: subscribe to %s: %v", filter, err)
	}
	if len(codes) != 1 || codes[0] != 2 {
		t.Fatalf("probe: SUBACK for %s granted %v, want [2]", filter, codes)
	}
	return p
}

// messages returns the next n messages, in arrival order. It fails the test
// when they have not all arrived within probeWait, and when more than n
// have already arrived (a duplicate or a stray message).
func (p *probe) messages(n int) []*mqttconn.Message {
	p.t.Helper()
	got := make([]*mqttconn.Message, 0, n)
	deadline := time.NewTimer(probeWait)
	defer deadline.Stop()
	for len(got) < n {
		select {
		case m := <-p.msgs:
			got = append(got, m)
		case <-deadline.C:
			p.t.Fatalf("probe on %s: %d of %d messages arrived within %v:\n%s", p.filter, len(got), n, probeWait, describe(got))
		}
	}
	var extra []*mqttconn.Message
	for len(p.msgs) > 0 {
		extra = append(extra, <-p.msgs)
	}
	p.mu.Lock()
	overflow := p.overflow
	p.mu.Unlock()
	if len(extra) > 0 || overflow > 0 {
		p.t.Fatalf("probe on %s: %d messages beyond the %d expected (%d more dropped from a full buffer):\n%s\nexpected ones:\n%s",
			p.filter, len(extra), n, overflow, describe(extra), describe(got))
	}
	return got
}

// describe renders messages for a failure message.
func describe(ms []*mqttconn.Message) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "  %s %x qos=%d retain=%t\n", m.Topic, m.Payload, m.QoS, m.Retain)
	}
	return b.String()
}
