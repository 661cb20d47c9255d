package engine

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// Message Expiry Interval [MQTT-3.3.2-5] [MQTT-3.3.2-6]: a queued message
// whose interval passes while its subscriber is away is not delivered (nor
// an expired retained message to a new subscriber); a delivered one
// carries what is left of its interval; one without stays without.
func TestConformanceMessageExpiry(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		sub := dialPeer(t, tg.addr, packet.V5)
		sub.connectOK(persistent("me-sub", packet.V5))
		sub.subscribe(1, packet.Subscription{Filter: "me/q/#", QoS: 1})
		sub.send(&packet.Disconnect{})
		sub.expectClosed("after DISCONNECT")

		pub := dialPeer(t, tg.addr, packet.V5)
		pub.connectOK(&packet.Connect{ClientID: "me-pub", CleanStart: true})
		for i, m := range []struct {
			topic  string
			expiry uint32
			retain bool
		}{{"me/q/short", 1, false}, {"me/q/long", 60, false}, {"me/q/none", 0, false}, {"me/r/short", 1, true}, {"me/r/long", 60, true}} {
			pub.send(&packet.Publish{Topic: m.topic, QoS: 1, PacketID: uint16(i + 1), Retain: m.retain,
				Payload: []byte(m.topic), Properties: packet.Properties{MessageExpiry: m.expiry}})
			pub.expectAck("PUBACK", 0x40, uint16(i+1))
		}
		defer func() {
			pub.send(&packet.Publish{Topic: "me/r/long", Retain: true})
			pub.send(&packet.Publish{Topic: "me/r/short", Retain: true})
		}()
		time.Sleep(1300 * time.Millisecond)

		sub = dialPeer(t, tg.addr, packet.V5)
		sub.send(persistent("me-sub", packet.V5))
		sub.expectSession("CONNACK", true)
		queued := map[string]*packet.Publish{}
		for _, m := range sub.drain() {
			queued[m.Topic] = m
		}
		if m := queued["me/q/short"]; m != nil {
			differs(t, tg, "a message whose 1 s expiry passed while the client was away was delivered: %s", packet.Describe(m, packet.V5))
		}
		if m := queued["me/q/long"]; m == nil {
			t.Errorf("the message with time left was not delivered")
		} else if e := m.Properties.MessageExpiry; !m.Properties.Has(packet.PropMessageExpiry) || e < 57 || e > 59 {
			differs(t, tg, "delivered after 1.3 s with message-expiry-interval %d, want 60 less the time it waited: %s", e, packet.Describe(m, packet.V5))
		}
		if m := queued["me/q/none"]; m == nil {
			t.Errorf("the message without expiry was not delivered")
		} else if m.Properties.Has(packet.PropMessageExpiry) {
			differs(t, tg, "a message without expiry delivered with one: %s", packet.Describe(m, packet.V5))
		}

		late := dialPeer(t, tg.addr, packet.V5)
		late.connectOK(&packet.Connect{ClientID: "me-late", CleanStart: true})
		late.subscribe(1, packet.Subscription{Filter: "me/r/#", QoS: 1})
		got := late.drain()
		if len(got) != 1 || got[0].Topic != "me/r/long" {
			var names []string
			for _, m := range got {
				names = append(names, m.Topic)
			}
			differs(t, tg, "retained messages after 1.3 s: %v, want me/r/long only", names)
		} else if e := got[0].Properties.MessageExpiry; e < 57 || e > 59 {
			differs(t, tg, "retained message delivered with message-expiry-interval %d, want 57 to 59", e)
		}

		// Live: the whole interval, less nothing much.
		sub.subscribe(2, packet.Subscription{Filter: "me/live", QoS: 1})
		pub.send(&packet.Publish{Topic: "me/live", QoS: 1, PacketID: 9, Payload: []byte("x"), Properties: packet.Properties{MessageExpiry: 30}})
		pub.expectAck("PUBACK", 0x40, 9)
		m := sub.expectMessage("a live message", "me/live", "x")
		if e := m.Properties.MessageExpiry; e < 29 || e > 30 {
			differs(t, tg, "live message delivered with message-expiry-interval %d, want 29 or 30", e)
		}
		sub.ack(m)
	})
}

// Maximum Packet Size from the client [MQTT-3.1.2-24] [MQTT-3.1.2-25]: a
// message too large for one subscriber is not sent to it (the others get
// it), and the server behaves as if it had been sent: it takes no slot of
// the subscriber's Receive Maximum and is not resent.
func TestConformanceMaximumPacketSizeToClient(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("b", 200)
	t.Run("dropped for that subscriber only", func(t *testing.T) {
		both(t, Config{}, func(t *testing.T, tg target) {
			small := dialPeer(t, tg.addr, packet.V5)
			small.connectOK(&packet.Connect{ClientID: "mps-small", CleanStart: true,
				Properties: packet.Properties{MaximumPacketSize: 100}})
			small.subscribe(1, packet.Subscription{Filter: "mps/#", QoS: 1})
			any := dialPeer(t, tg.addr, packet.V5)
			any.connectOK(&packet.Connect{ClientID: "mps-any", CleanStart: true})
			any.subscribe(1, packet.Subscription{Filter: "mps/#", QoS: 1})

			pub := dialPeer(t, tg.addr, packet.V5)
			pub.connectOK(&packet.Connect{ClientID: "mps-pub", CleanStart: true})
			pub.publish1(1, "mps/big", big)
			pub.send(&packet.Publish{Topic: "mps/big0", Payload: []byte(big)})
			pub.publish1(2, "mps/small", "s")
			any.ack(any.expectMessage("the big message", "mps/big", big))
			any.expectMessage("the big QoS 0 message", "mps/big0", big)
			any.ack(any.expectMessage("the small message", "mps/small", "s"))
			m := small.expectMessage("the small message, and not the big ones", "mps/small", "s")
			small.ack(m)
		})
	})
	t.Run("takes no slot of Receive Maximum", func(t *testing.T) {
		both(t, Config{}, func(t *testing.T, tg target) {
			if tg.mosq {
				// mosquitto 2.0.11 keeps such a message in flight too.
				t.Skip("mosquitto 2.0.11 holds a too-large message in its in-flight window")
			}
			small := dialPeer(t, tg.addr, packet.V5)
			small.connectOK(&packet.Connect{ClientID: "mps-rm", Properties: packet.Properties{
				MaximumPacketSize: 100, ReceiveMaximum: 2, SessionExpiry: 60}})
			small.subscribe(1, packet.Subscription{Filter: "mpr/#", QoS: 1})
			pub := dialPeer(t, tg.addr, packet.V5)
			pub.connectOK(&packet.Connect{ClientID: "mps-rm-pub", CleanStart: true})
			for i := range 3 {
				pub.publish1(uint16(i+1), "mpr/big", big)
			}
			pub.publish1(4, "mpr/small", "s")
			if tg.mosq {
				// mosquitto 2.0.11 has the same fault: recorded, not
				// asserted.
				if _, err := small.readRaw(quiet); err != nil {
					t.Logf("mosquitto differs: after 3 messages too big for a client with Receive Maximum 2, a small one does not come: %v", err)
					return
				}
				t.Fatalf("mosquitto delivered the small message")
			}
			m := small.expectMessage("the small message after three too big for the client", "mpr/small", "s")
			small.drop()
			small = dialPeer(t, tg.addr, packet.V5)
			small.send(&packet.Connect{ClientID: "mps-rm", Properties: packet.Properties{
				MaximumPacketSize: 100, ReceiveMaximum: 2, SessionExpiry: 60}})
			small.expectSession("CONNACK", true)
			again := small.expectMessage("the unacknowledged small message, resent", "mpr/small", "s")
			if !again.Dup || again.PacketID != m.PacketID {
				t.Errorf("resent as %s", packet.Describe(again, packet.V5))
			}
			small.ack(again)
			small.expectSilence("anything else", quiet/2)
			small.send(&packet.Disconnect{Properties: packet.Properties{SessionExpiry: 0}})
		})
	})
}

// Maximum Packet Size of the server: a packet over it is a protocol
// violation (3.2.2.3.6): MQTT 5 clients get DISCONNECT 0x95, 3.1.1 ones
// a close.
func TestConformanceMaximumPacketSizeFromClient(t *testing.T) {
	t.Parallel()
	big := func(v packet.Version) func(string) [][]byte {
		return func(string) [][]byte {
			return [][]byte{enc(t, &packet.Publish{Topic: "big", QoS: 1, PacketID: 1, Payload: bytes.Repeat([]byte("x"), 2000)}, v)}
		}
	}
	fits := func(v packet.Version) func(string) [][]byte {
		return func(string) [][]byte {
			return [][]byte{enc(t, &packet.Publish{Topic: "big", QoS: 1, PacketID: 1, Payload: bytes.Repeat([]byte("x"), 900)}, v)}
		}
	}
	rows := []exchange{
		{name: "5 over the maximum", v: packet.V5, connect: true, writes: big(packet.V5), want: []string{"E0 01 95", "close"}},
		{name: "3.1.1 over the maximum", v: packet.V311, connect: true, writes: big(packet.V311), want: []string{"close"}},
		{name: "5 under the maximum", v: packet.V5, connect: true, writes: fits(packet.V5), want: []string{"40 02 00 01", "open"},
			mosq: []string{"40 03 00 01 10", "open"}},
		{name: "3.1.1 under the maximum", v: packet.V311, connect: true, writes: fits(packet.V311), want: []string{"40 02 00 01", "open"}},
	}
	runExchanges(t, Config{MaxPacketSize: 1000}, "max_packet_size 1000", rows)
}
