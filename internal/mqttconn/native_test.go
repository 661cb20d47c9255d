package mqttconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/ui"
)

// bothClients runs a test with each Client implementation Dial chooses
// between: the paho libraries and mqtk's own (Config.Native).
func bothClients(t *testing.T, test func(t *testing.T, native bool)) {
	t.Run("paho", func(t *testing.T) { test(t, false) })
	t.Run("native", func(t *testing.T) { test(t, true) })
}

// defaultFor is Default with the client implementation chosen.
func defaultFor(native bool) Config {
	c := Default()
	c.Native = native
	return c
}

// The native client's own handling of what CONNACK announces: a topic
// alias names the topic once and stands for it after (MQTT 5 section
// 3.3.2.3.4), and a message over the broker's Maximum Packet Size is
// refused before it is sent [MQTT-3.1.2-25], leaving the connection up.
func TestNativeTopicAliasAndPacketSize(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{Global: "max_packet_size 200"}, func(t *testing.T, b *brokertest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		col := newCollector()
		subCfg := defaultFor(true)
		subCfg.Host, subCfg.Port = "127.0.0.1", b.Port()
		subCfg.OnMessage = col.on
		sub := dial(t, subCfg)
		if _, err := sub.Subscribe(ctx, []Subscription{{Filter: "alias/#", QoS: 1}}); err != nil {
			t.Fatal(err)
		}
		var trace ui.SyncBuffer
		cfg := subCfg
		cfg.OnMessage, cfg.Debug = nil, &trace
		pub := dial(t, cfg)
		if got := pub.Info(); got.TopicAliasMaximum != 10 || got.MaximumPacketSize != 200 {
			t.Fatalf("CONNACK: topic alias maximum %d, maximum packet size %d; want 10 (both brokers' default) and 200", got.TopicAliasMaximum, got.MaximumPacketSize)
		}
		for i := range 3 {
			if err := pub.Publish(ctx, &Message{Topic: "alias/x", Payload: []byte(fmt.Sprint(i)), QoS: 1, TopicAlias: 2}); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
		err := pub.Publish(ctx, &Message{Topic: "alias/big", Payload: make([]byte, 300), QoS: 1})
		var e *clierr.Error
		if !errors.As(err, &e) || e.Kind != clierr.KindRejected || e.Reason != 0x95 {
			t.Fatalf("300-byte publish against a 200-byte maximum: %v, want a refusal with reason 0x95", err)
		}
		if err := pub.Publish(ctx, &Message{Topic: "alias/after", Payload: []byte("ok"), QoS: 1}); err != nil {
			t.Fatalf("publish after the refused one: %v", err)
		}
		msgs := col.wait(t, 4)
		for i, m := range msgs[:3] {
			if m.Topic != "alias/x" || string(m.Payload) != fmt.Sprint(i) {
				t.Errorf("message %d: %s %q, want alias/x %d", i, m.Topic, m.Payload, i)
			}
		}
		if msgs[3].Topic != "alias/after" {
			t.Errorf("last message on %s, want alias/after", msgs[3].Topic)
		}
		if n := strings.Count(trace.String(), "alias/x"); n != 1 {
			t.Errorf("the topic name went out %d times, want once (then the alias alone):\n%s", n, trace.String())
		}
	})
}

// A broker's topic aliases, and a resent QoS 2 message, reach the handler
// as the client's contract says: the full topic every time, the resend
// once. No real broker does either on demand, so a minimal server sends
// the packets.
func TestNativeIncomingAliasAndQoS2Resend(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		if _, err := r.ReadByte(); err != nil {
			return
		}
		n, _, ok := readVarint(r)
		if !ok {
			return
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return
		}
		var out []byte
		for _, p := range []packet.Packet{
			&packet.Connack{},
			&packet.Publish{Topic: "in/a", Payload: []byte("1"), Properties: packet.Properties{TopicAlias: 3}},
			&packet.Publish{Payload: []byte("2"), Properties: packet.Properties{TopicAlias: 3}},
			&packet.Publish{Topic: "in/q2", QoS: 2, PacketID: 7, Payload: []byte("3")},
			&packet.Publish{Topic: "in/q2", QoS: 2, PacketID: 7, Dup: true, Payload: []byte("3")},
			&packet.Ack{Kind: packet.TypePubrel, PacketID: 7},
		} {
			out, _ = p.Append(out, packet.V5)
		}
		_, _ = c.Write(out)
		// The client answers PUBREC twice and PUBCOMP once.
		buf := make([]byte, 64)
		var in []byte
		for len(in) < 3*4 {
			k, err := r.Read(buf)
			if err != nil {
				break
			}
			in = append(in, buf[:k]...)
		}
		got <- in
	}()
	col := newCollector()
	cfg := defaultFor(true)
	cfg.Host, cfg.Port = "127.0.0.1", l.Addr().(*net.TCPAddr).Port
	cfg.OnMessage = col.on
	dial(t, cfg)
	msgs := col.wait(t, 3)
	for i, want := range []string{"in/a 1", "in/a 2", "in/q2 3"} {
		if s := msgs[i].Topic + " " + string(msgs[i].Payload); s != want {
			t.Errorf("message %d: %q, want %q", i, s, want)
		}
	}
	select {
	case in := <-got:
		want := []byte{0x50, 2, 0, 7, 0x50, 2, 0, 7, 0x70, 2, 0, 7}
		if !bytes.Equal(in, want) {
			t.Errorf("client answered % x, want % x (PUBREC, PUBREC, PUBCOMP)", in, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer from the client")
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.msgs) != 3 {
		t.Errorf("%d messages delivered, want 3: the resent QoS 2 message once", len(col.msgs))
	}
}
