package mqttconn

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// collector gathers messages delivered to OnMessage.
type collector struct {
	mu   sync.Mutex
	msgs []*Message
	ch   chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1000)} }

func (c *collector) on(m *Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	c.ch <- struct{}{}
}

// wait returns once n messages arrived, failing the test after 10 s.
func (c *collector) wait(t *testing.T, n int) []*Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.msgs)
		c.mu.Unlock()
		if got >= n {
			c.mu.Lock()
			defer c.mu.Unlock()
			return append([]*Message(nil), c.msgs...)
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("got %d messages, want %d", got, n)
		}
	}
}

func dial(t *testing.T, cfg Config) Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v (hints %v)", cfg.String(), err, clierr.HintsOf(err))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Disconnect(ctx)
	})
	return c
}

// roundTrip subscribes with one client and publishes QoS 0, 1 and 2 with
// another, in order, checking what arrives.
func roundTrip(t *testing.T, base Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	col := newCollector()
	subCfg := base
	subCfg.OnMessage = col.on
	sub := dial(t, subCfg)
	topic := fmt.Sprintf("mqtk/test/%d", time.Now().UnixNano())
	codes, err := sub.Subscribe(ctx, []Subscription{{Filter: topic + "/#", QoS: 2}})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if len(codes) != 1 || codes[0] != 2 {
		t.Fatalf("subscribe codes = %v, want [2]", codes)
	}
	pub := dial(t, base)
	for q := byte(0); q <= 2; q++ {
		if err := pub.Publish(ctx, &Message{Topic: fmt.Sprintf("%s/q%d", topic, q), Payload: []byte{'p', '0' + q}, QoS: q}); err != nil {
			t.Fatalf("publish qos %d: %v", q, err)
		}
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		pub.PublishAsync(ctx, &Message{Topic: topic + "/seq", Payload: []byte(fmt.Sprint(i)), QoS: 1}, func(err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("async publish: %v", err)
	}
	msgs := col.wait(t, 3+n)
	for q := 0; q <= 2; q++ {
		m := msgs[q]
		if m.Topic != fmt.Sprintf("%s/q%d", topic, q) || !bytes.Equal(m.Payload, []byte{'p', '0' + byte(q)}) || int(m.QoS) != q {
			t.Errorf("message %d = %s %q qos %d", q, m.Topic, m.Payload, m.QoS)
		}
	}
	for i, m := range msgs[3:] {
		if string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("async message %d has payload %q: order not kept", i, m.Payload)
		}
	}
	if err := sub.Unsubscribe(ctx, topic+"/#"); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	info := pub.Info()
	// -V auto connects with whichever version the broker has.
	if (info.Version != base.Version && base.Version != VAuto) || info.ClientID == "" {
		t.Errorf("info = %+v", info)
	}
}

func TestRoundTripTCP(t *testing.T) { bothClients(t, testRoundTripTCP) }

func testRoundTripTCP(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range []Version{V5, V311, V31} {
			t.Run(v.String(), func(t *testing.T) {
				cfg := defaultFor(native)
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Port()
				roundTrip(t, cfg)
			})
		}
	})
}

// The DUP flag of an incoming PUBLISH reaches the message. No real broker
// resends on demand, so a minimal server sends a duplicate QoS 1 PUBLISH
// right after CONNACK.
func TestIncomingDupFlag(t *testing.T) { bothClients(t, testIncomingDupFlag) }

func testIncomingDupFlag(t *testing.T, native bool) {
	for _, v := range []Version{V5, V311} {
		t.Run(v.String(), func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				if _, err := r.ReadByte(); err != nil { // CONNECT's fixed header
					return
				}
				n, _, ok := readVarint(r)
				if !ok {
					return
				}
				if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
					return
				}
				connack := []byte{0x20, 0x02, 0x00, 0x00}
				// PUBLISH, DUP and QoS 1: topic "d", packet id 1, payload "x".
				publish := []byte{0x3A, 0x06, 0x00, 0x01, 'd', 0x00, 0x01, 'x'}
				if v == V5 {
					connack = []byte{0x20, 0x03, 0x00, 0x00, 0x00}
					publish = []byte{0x3A, 0x07, 0x00, 0x01, 'd', 0x00, 0x01, 0x00, 'x'}
				}
				_, _ = c.Write(append(connack, publish...))
				_, _ = io.Copy(io.Discard, r) // until the client goes
			}()
			got := newCollector()
			cfg := defaultFor(native)
			cfg.Version = v
			cfg.Host, cfg.Port = "127.0.0.1", l.Addr().(*net.TCPAddr).Port
			cfg.OnMessage = got.on
			dial(t, cfg)
			m := got.wait(t, 1)[0]
			if m.Topic != "d" || string(m.Payload) != "x" || m.QoS != 1 || !m.Dup {
				t.Errorf("got topic %q payload %q qos %d dup %v, want d x 1 true", m.Topic, m.Payload, m.QoS, m.Dup)
			}
		})
	}
}

// readVarint reads an MQTT variable byte integer.
func readVarint(r *bufio.Reader) (int, int, bool) {
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, i, false
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			return n, i + 1, true
		}
		mul *= 128
	}
	return 0, 4, false
}
