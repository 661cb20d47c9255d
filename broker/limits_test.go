package broker

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/ui"
)

// --max-clients: one more client is refused with 3.1.1's "server
// unavailable" (3) or MQTT 5's "server busy" (0x89).
func TestMaxClientsRefusesOneMore(t *testing.T) {
	b := startBroker(t, Options{HTTPAddr: "127.0.0.1:0", Limits: Limits{MaxClients: 1}})
	first := dialRaw(t, b.tcpAddr(t), 4)
	first.connect(connectPacket("only-one", true, 30))
	for _, tc := range []struct {
		version packet.Version
		want    packet.ReasonCode
	}{{packet.V311, packet.ConnRefusedServerUnavailable}, {packet.V5, packet.ServerBusy}} {
		c := dialRaw(t, b.tcpAddr(t), tc.version)
		c.send(connectPacket(fmt.Sprintf("too-many-%d", tc.version), true, 30))
		if ack := c.recv(); typeOf(ack) != packet.TypeConnack || reasonOf(ack) != tc.want {
			t.Errorf("v%d: got %s, want CONNACK 0x%02x", tc.version, c.describe(ack), byte(tc.want))
		}
	}
	// Once the first leaves there is room again.
	first.c.Close()
	waitGone(t, b, "only-one")
	again := dialRaw(t, b.tcpAddr(t), 5)
	again.connect(connectPacket("next", true, 30))
}

// --max-inflight bounds the QoS 1/2 messages kept for an offline session:
// the first ones are kept, the rest refused, and the session still gets
// new messages once it is back.
func TestMaxInflightBoundsOfflineQueue(t *testing.T) {
	b := startBroker(t, Options{HTTPAddr: "127.0.0.1:0", Limits: Limits{MaxInflight: 2}})
	addr := b.tcpAddr(t)
	sub := dialRaw(t, addr, 4)
	sub.connect(connectPacket("bounded", false, 30))
	sub.subscribe(1, "bounded/t")
	sub.c.Close()
	waitOffline(t, b, "bounded")
	pub := dialRaw(t, addr, 4)
	pub.connect(connectPacket("bounded-pub", true, 30))
	for i := range 5 {
		pub.publish("bounded/t", fmt.Sprint("q", i), 1, false)
	}
	routed(t, addr, pub)
	again := dialRaw(t, addr, 4)
	again.connect(connectPacket("bounded", false, 30))
	for _, want := range []string{"q0", "q1"} {
		pk, err := again.nextPublish(5 * time.Second)
		if err != nil || string(pk.Payload) != want {
			t.Fatalf("queued message: %q, %v; want %q", pk.Payload, err, want)
		}
	}
	// The acknowledgements free the in-flight slots before the next one.
	waitFor(t, func() bool { c, ok := sessions(t, b)["bounded"]; return ok && c.Inflight == 0 })
	pub.publish("bounded/t", "live", 1, false)
	if pk, err := again.nextPublish(5 * time.Second); err != nil || string(pk.Payload) != "live" {
		t.Fatalf("after the queue: %q, %v; want live (q2-q4 were over the limit)", pk.Payload, err)
	}
}

// --max-session-expiry caps what a client asks for, and an explicit 0
// ends every session with its connection.
func TestMaxSessionExpiry(t *testing.T) {
	ask := func(id string) *packet.Connect {
		pk := connectPacket(id, false, 30)
		pk.Properties.SessionExpiry = 3600
		return pk
	}
	t.Run("cap", func(t *testing.T) {
		b := startBroker(t, Options{Limits: Limits{MaxSessionExpiry: 5 * time.Second}})
		c := dialRaw(t, b.tcpAddr(t), 5)
		ack := c.connect(ask("capped"))
		if !ack.Properties.Has(packet.PropSessionExpiry) || ack.Properties.SessionExpiry != 5 {
			t.Fatalf("CONNACK session expiry %v/%d, want 5", ack.Properties.Has(packet.PropSessionExpiry), ack.Properties.SessionExpiry)
		}
	})
	t.Run("explicit zero", func(t *testing.T) {
		b := startBroker(t, Options{ExactLimits: true, HTTPAddr: "127.0.0.1:0", Limits: Limits{MaxSessionExpiry: 0}})
		c := dialRaw(t, b.tcpAddr(t), 5)
		ack := c.connect(ask("ends"))
		if !ack.Properties.Has(packet.PropSessionExpiry) || ack.Properties.SessionExpiry != 0 {
			t.Fatalf("CONNACK session expiry %v/%d, want 0", ack.Properties.Has(packet.PropSessionExpiry), ack.Properties.SessionExpiry)
		}
		c.subscribe(1, "ends/t")
		c.c.Close()
		v4 := dialRaw(t, b.tcpAddr(t), 4)
		v4.connect(connectPacket("ends-311", false, 30))
		v4.c.Close()
		// Both sessions go: the v5 one at once, the 3.1.1 one (which has
		// no expiry of its own) soon after, at the latest at the broker's
		// next expiry sweep.
		waitGone(t, b, "ends")
		waitGone(t, b, "ends-311")
		again := dialRaw(t, b.tcpAddr(t), 5)
		if ack := again.connect(ask("ends")); ack.SessionPresent {
			t.Fatal("session present after reconnect with a maximum session expiry of 0")
		}
	})
}

// Keepalive is enforced: a client silent for more than 1.5 times its
// keepalive is disconnected [MQTT-3.1.2-24], and others are unaffected.
func TestSilentClientDroppedAfterKeepalive(t *testing.T) {
	log := &ui.SyncBuffer{}
	b := startBroker(t, Options{Log: log, HTTPAddr: "127.0.0.1:0"})
	silent := dialRaw(t, b.tcpAddr(t), 4)
	// Before CONNECT: the broker may start its clock before our read of
	// the CONNACK returns.
	start := time.Now()
	silent.connect(connectPacket("silent", true, 1))
	readUntilClosed(t, silent.c, 10*time.Second)
	// Not a timing threshold: the spec forbids dropping before 1.5 x 1 s.
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Fatalf("dropped after %v, before 1.5 x keepalive", el)
	}
	waitGone(t, b, "silent")
	waitFor(t, func() bool { return strings.Contains(log.String(), "keepalive expired") })
	goodClientWorks(t, b.tcpAddr(t), "keepalive")
}

// Topic length and depth limits apply to PUBLISH as well as SUBSCRIBE: an
// MQTT 5 publisher is told 0x87 and no subscriber gets the message.
func TestTopicLimitsOnPublish(t *testing.T) {
	b := startBroker(t, Options{Limits: Limits{MaxTopicLevels: 3, MaxTopicLength: 20}})
	sub := dialRaw(t, b.tcpAddr(t), 5)
	sub.connect(connectPacket("lim-sub", true, 30))
	sub.subscribe(1, "#")
	pub := dialRaw(t, b.tcpAddr(t), 5)
	pub.connect(connectPacket("lim-pub", true, 30))
	for i, topic := range []string{"a/b/c/d", strings.Repeat("x", 21)} {
		pub.send(&packet.Publish{QoS: 1, PacketID: uint16(10 + i), Topic: topic, Payload: []byte("refused")})
		ack := pub.recv()
		if typeOf(ack) != packet.TypePuback || reasonOf(ack) != packet.NotAuthorized {
			t.Errorf("PUBLISH to %.25q: got %s, want PUBACK 0x87", topic, pub.describe(ack))
		}
	}
	pub.publish("a/b/c", "fits", 1, false)
	if pk, err := sub.nextPublish(5 * time.Second); err != nil || string(pk.Payload) != "fits" {
		t.Fatalf("subscriber got %q %q, %v; want only the message within the limits", pk.Topic, pk.Payload, err)
	}
}

// WithDefaultsExact keeps the zeros that mean something and still fills
// the ones that do not.
func TestWithDefaultsExact(t *testing.T) {
	got := Limits{}.WithDefaultsExact()
	d := DefaultLimits()
	if got.AuthFailDelay != 0 || got.MaxSessionExpiry != 0 || got.TopicAliasOutMaximum != 0 || got.TopicAliasMaximum != 0 {
		t.Errorf("explicit zeros replaced: %+v", got)
	}
	if got.MaxClients != d.MaxClients || got.MaxQueued != d.MaxQueued || got.ConnectTimeout != d.ConnectTimeout {
		t.Errorf("meaningless zeros not filled: %+v", got)
	}
	if l := (Limits{}).WithDefaults(); l.AuthFailDelay != d.AuthFailDelay || l.MaxSessionExpiry != d.MaxSessionExpiry {
		t.Errorf("WithDefaults: %+v", l)
	}
}

// An explicit zero auth-fail-delay reaches the broker as no delay.
func TestExplicitZeroAuthFailDelay(t *testing.T) {
	file := writeFile(t, "passwd", "")
	if err := SetPassword(file, "alice", []byte("pw")); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, Options{ExactLimits: true, PasswordFile: file, Limits: Limits{AuthFailDelay: 0}})
	if b.limits.AuthFailDelay != 0 {
		t.Fatalf("auth fail delay %v, want 0", b.limits.AuthFailDelay)
	}
	c := dialRaw(t, b.tcpAddr(t), 5)
	pk := connectPacket("wrong", true, 30)
	pk.HasUsername, pk.Username = true, "alice"
	pk.HasPassword, pk.Password = true, []byte("nope")
	c.send(pk)
	if ack := c.recv(); typeOf(ack) != packet.TypeConnack || reasonOf(ack) != packet.BadUserNameOrPassword {
		t.Fatalf("got %s, want CONNACK 0x86", c.describe(ack))
	}
}
