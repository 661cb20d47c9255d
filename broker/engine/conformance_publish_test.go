package engine

import (
	"fmt"
	"testing"

	"github.com/mqtk/mqtk/internal/packet"
)

// What the engine answers to PUBLISH and PUBREL it must refuse or cannot
// match, byte for byte, against the engine and mosquitto.
func TestConformancePublishAnswers(t *testing.T) {
	t.Parallel()
	pub := func(v packet.Version, p *packet.Publish) func(string) [][]byte {
		b := enc(t, p, v)
		return func(string) [][]byte { return [][]byte{b} }
	}
	raw := func(hexes ...string) func(string) [][]byte {
		return func(string) [][]byte {
			var out [][]byte
			for _, h := range hexes {
				out = append(out, unhex(h))
			}
			return out
		}
	}
	sys := func(qos byte) *packet.Publish {
		return &packet.Publish{Topic: "$SYS/x", QoS: qos, PacketID: 1, Payload: []byte("x")}
	}
	rows := []exchange{
		{
			// 4.3.3 / 3.7.2.1: PUBREL for an identifier that is not
			// awaiting one is answered PUBCOMP 0x92 "packet identifier not
			// found" (mosquitto answers a plain PUBCOMP, also allowed).
			name:    "5 PUBREL unknown id gets PUBCOMP 0x92",
			v:       packet.V5,
			connect: true,
			writes:  raw("62 02 00 09"),
			want:    []string{"70 03 00 09 92", "open"},
			mosq:    []string{"70 02 00 09", "open"},
		},
		{
			name:    "3.1.1 PUBREL unknown id gets PUBCOMP",
			v:       packet.V311,
			connect: true,
			writes:  raw("62 02 00 09"),
			want:    []string{"70 02 00 09", "open"},
		},
		{
			// [MQTT-3.3.5-2] a publish the server will not accept is
			// acknowledged (MQTT 5 with 0x87) or the connection closed; a
			// $SYS publish from a client is not accepted.
			name:    "5 $SYS publish QoS 1 gets PUBACK 0x87",
			v:       packet.V5,
			connect: true,
			writes:  pub(packet.V5, sys(1)),
			want:    []string{"40 03 00 01 87", "open"},
		},
		{
			name:    "3.1.1 $SYS publish QoS 1 gets PUBACK",
			v:       packet.V311,
			connect: true,
			writes:  pub(packet.V311, sys(1)),
			want:    []string{"40 02 00 01", "open"},
		},
		{
			name:    "5 $SYS publish QoS 2 gets PUBREC 0x87",
			v:       packet.V5,
			connect: true,
			writes:  pub(packet.V5, sys(2)),
			want:    []string{"50 03 00 01 87", "open"},
		},
		{
			name:    "3.1.1 $SYS publish QoS 2 gets PUBREC, PUBCOMP",
			v:       packet.V311,
			connect: true,
			writes: func(string) [][]byte {
				return [][]byte{enc(t, sys(2), packet.V311), unhex("62 02 00 01")}
			},
			want: []string{"50 02 00 01", "70 02 00 01", "open"},
		},
		{
			// [MQTT-3.3.2-2] no wildcards in a topic name. The engine says
			// 0x90 "topic name invalid"; mosquitto 0x82 "protocol error".
			name:    "5 PUBLISH topic with wildcard gets DISCONNECT 0x90",
			v:       packet.V5,
			connect: true,
			writes:  raw("30 06 00 03 61 2F 23 00"),
			want:    []string{"E0 01 90", "close"},
			mosq:    []string{"E0 01 82", "close"},
		},
		{
			name:    "3.1.1 PUBLISH topic with wildcard closed",
			v:       packet.V311,
			connect: true,
			writes:  raw("30 06 00 03 61 2F 2B 78"),
			want:    []string{"close"},
		},
		{
			// [MQTT-3.3.2-9] an alias above the server's Topic Alias
			// Maximum (10): 0x94.
			name:    "5 topic alias 11 gets DISCONNECT 0x94",
			v:       packet.V5,
			connect: true,
			writes:  raw("30 0A 00 03 61 2F 62 03 23 00 0B 78"),
			want:    []string{"E0 01 94", "close"},
		},
		{
			// [MQTT-3.3.2-8] topic alias 0 is not permitted; 3.3.2.3.4
			// names 0x94 for it. mosquitto says 0x81 "malformed packet".
			name:    "5 topic alias 0 gets DISCONNECT 0x94",
			v:       packet.V5,
			connect: true,
			writes:  raw("30 0A 00 03 61 2F 62 03 23 00 00 78"),
			want:    []string{"E0 01 94", "close"},
			mosq:    []string{"E0 01 81", "close"},
		},
		{
			// 3.3.2.3.4: an empty topic with an alias never set is a
			// protocol error.
			name:    "5 unknown topic alias with empty topic gets DISCONNECT 0x82",
			v:       packet.V5,
			connect: true,
			writes:  raw("30 07 00 00 03 23 00 01 78"),
			want:    []string{"E0 01 82", "close"},
		},
		{
			// 3.3.2.3.4: an empty topic name without a topic alias.
			name:    "5 PUBLISH with an empty topic and no alias gets DISCONNECT 0x82",
			v:       packet.V5,
			connect: true,
			writes:  raw("30 04 00 00 00 78"),
			want:    []string{"E0 01 82", "close"},
		},
		{
			// [MQTT-4.7.3-1] a topic name is at least one character.
			name:    "3.1.1 PUBLISH with an empty topic closed",
			v:       packet.V311,
			connect: true,
			writes:  raw("30 03 00 00 78"),
			want:    []string{"close"},
		},
		{
			// [MQTT-3.3.4-6] a client's PUBLISH does not carry a
			// subscription identifier: protocol error. mosquitto ignores
			// it.
			name:    "5 subscription identifier in client PUBLISH gets DISCONNECT 0x82",
			v:       packet.V5,
			connect: true,
			writes:  raw("30 09 00 03 61 2F 62 02 0B 01 78"),
			want:    []string{"E0 01 82", "close"},
			mosq:    []string{"open"},
		},
		{
			// 4.12: an AUTH when CONNECT named no authentication method is
			// a protocol error.
			name:    "5 AUTH without an authentication method gets DISCONNECT 0x82",
			v:       packet.V5,
			connect: true,
			writes:  raw("F0 02 19 00"),
			want:    []string{"E0 01 82", "close"},
			mosq:    []string{"close"},
		},
		{
			// Packet type 15 is reserved before MQTT 5.
			name:    "3.1.1 packet type 15 closed",
			v:       packet.V311,
			connect: true,
			writes:  raw("F0 00"),
			want:    []string{"close"},
		},
		{
			// [MQTT-3.3.1-4] QoS 3 is malformed.
			name:    "5 PUBLISH QoS 3 gets DISCONNECT 0x81",
			v:       packet.V5,
			connect: true,
			writes:  raw("36 07 00 01 61 00 01 00 78"),
			want:    []string{"E0 01 81", "close"},
		},
		{
			name:    "3.1.1 PUBLISH QoS 3 closed",
			v:       packet.V311,
			connect: true,
			writes:  raw("36 06 00 01 61 00 01 78"),
			want:    []string{"close"},
		},
		{
			// [MQTT-4.3.3-?] a QoS 2 PUBLISH resent with DUP before PUBREL
			// gets its PUBREC again; PUBREL completes it once.
			name:    "5 QoS 2 resent with DUP gets PUBREC again",
			v:       packet.V5,
			connect: true,
			writes: func(string) [][]byte {
				p := &packet.Publish{Topic: "a", QoS: 2, PacketID: 7, Payload: []byte("x")}
				first := enc(t, p, packet.V5)
				p.Dup = true
				return [][]byte{first, enc(t, p, packet.V5), unhex("62 02 00 07"), unhex("62 02 00 07")}
			},
			want: []string{"50 02 00 07", "50 02 00 07", "70 02 00 07", "70 03 00 07 92", "open"},
			mosq: []string{"50 02 00 07", "50 02 00 07", "70 02 00 07", "70 02 00 07", "open"},
		},
	}
	runExchanges(t, Config{}, "", rows)
}

// PUBLISH at QoS 0, 1 and 2 both ways, for each version: the publisher's
// acknowledgements and the subscriber's PUBREL have fixed bytes; the
// delivered PUBLISH is compared field by field.
func TestConformancePublishQoS(t *testing.T) {
	t.Parallel()
	_, addr := start(t, Config{})
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			sub := dialPeer(t, addr, v)
			sub.connectOK(&packet.Connect{ClientID: "sub-" + v.String(), CleanStart: true})
			sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "q/#", QoS: 2}}})
			if v == packet.V5 {
				sub.expectRaw("SUBACK", unhex("90 04 00 01 00 02"))
			} else {
				sub.expectRaw("SUBACK", unhex("90 03 00 01 02"))
			}
			// A second subscriber at QoS 1 gets QoS 2 messages at QoS 1
			// [MQTT-3.8.4-8].
			low := dialPeer(t, addr, v)
			low.connectOK(&packet.Connect{ClientID: "low-" + v.String(), CleanStart: true})
			low.subscribe(1, packet.Subscription{Filter: "q/#", QoS: 1})

			pub := dialPeer(t, addr, v)
			pub.connectOK(&packet.Connect{ClientID: "pub-" + v.String(), CleanStart: true})

			// QoS 0: no acknowledgement.
			pub.send(&packet.Publish{Topic: "q/0", Payload: []byte("zero")})
			got := sub.expectMessage("QoS 0", "q/0", "zero")
			if got.QoS != 0 || got.PacketID != 0 || got.Dup || got.Retain {
				t.Errorf("QoS 0 delivered as %s", packet.Describe(got, v))
			}
			low.expectMessage("QoS 0 (low)", "q/0", "zero")

			// QoS 1: PUBACK [MQTT-3.3.4-1], delivered at QoS 1 with an
			// identifier of the broker's choosing.
			pub.send(&packet.Publish{Topic: "q/1", QoS: 1, PacketID: 5, Payload: []byte("one")})
			pub.expectRaw("PUBACK", unhex("40 02 00 05"))
			got = sub.expectMessage("QoS 1", "q/1", "one")
			if got.QoS != 1 || got.PacketID == 0 || got.Dup || got.Retain {
				t.Errorf("QoS 1 delivered as %s", packet.Describe(got, v))
			}
			sub.ack(got)
			l := low.expectMessage("QoS 1 (low)", "q/1", "one")
			low.ack(l)

			// QoS 2: PUBREC, PUBREL, PUBCOMP on each side.
			pub.send(&packet.Publish{Topic: "q/2", QoS: 2, PacketID: 6, Payload: []byte("two")})
			pub.expectRaw("PUBREC", unhex("50 02 00 06"))
			pub.write(unhex("62 02 00 06"))
			pub.expectRaw("PUBCOMP", unhex("70 02 00 06"))
			got2 := sub.expectMessage("QoS 2", "q/2", "two")
			if got2.QoS != 2 || got2.PacketID == 0 || got2.Dup || got2.Retain {
				t.Errorf("QoS 2 delivered as %s", packet.Describe(got2, v))
			}
			if got2.PacketID == got.PacketID {
				// Both are complete, so reuse would be allowed; the engine
				// counts up, which this pins.
				t.Logf("packet identifier %d reused", got2.PacketID)
			}
			sub.ack(got2) // checks PUBREL's bytes
			l = low.expectMessage("QoS 2 (low)", "q/2", "two")
			if l.QoS != 1 {
				t.Errorf("QoS 2 message to a QoS 1 subscription delivered at QoS %d", l.QoS)
			}
			low.ack(l)

			// Nothing more: every message was acknowledged.
			sub.send(&packet.Pingreq{})
			sub.expectRaw("PINGRESP", unhex("D0 00"))
			low.send(&packet.Pingreq{})
			low.expectRaw("PINGRESP", unhex("D0 00"))
			sub.expectSilence("after acknowledging everything", quiet)
		})
	}
}

// A QoS 2 PUBLISH resent with DUP before its PUBREL is not delivered a
// second time (4.3.3, method A: the server routes on first receipt); once
// the flow is complete the identifier carries a new message.
func TestConformanceQoS2ResendNotDeliveredTwice(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			sub := dialPeer(t, tg.addr, v)
			sub.connectOK(&packet.Connect{ClientID: "qsub" + v.String(), CleanStart: true})
			sub.subscribe(1, packet.Subscription{Filter: "dup/" + v.String(), QoS: 2})
			pub := dialPeer(t, tg.addr, v)
			pub.connectOK(&packet.Connect{ClientID: "qpub" + v.String(), CleanStart: true})

			p := &packet.Publish{Topic: "dup/" + v.String(), QoS: 2, PacketID: 7, Payload: []byte("first")}
			pub.send(p)
			pub.expectRaw("PUBREC", unhex("50 02 00 07"))
			p.Dup = true
			pub.send(p)
			pub.expectRaw("PUBREC for the resend", unhex("50 02 00 07"))
			pub.write(unhex("62 02 00 07"))
			pub.expectRaw("PUBCOMP", unhex("70 02 00 07"))

			got := sub.expectMessage("the message", p.Topic, "first")
			sub.ack(got)
			sub.expectSilence("no second copy", quiet)

			pub.publish2(7, p.Topic, "second")
			got = sub.expectMessage("the next message with the same id", p.Topic, "second")
			sub.ack(got)
		}
	})
}

// A $SYS publish from a client is acknowledged and not delivered, neither
// to $SYS/# nor to # (which never matches $ topics [MQTT-4.7.2-1]).
func TestConformanceDollarSysPublishNotDelivered(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		sub := dialPeer(t, tg.addr, packet.V5)
		sub.connectOK(&packet.Connect{ClientID: "syssub", CleanStart: true})
		sub.subscribe(1, packet.Subscription{Filter: "$SYS/x", QoS: 1}, packet.Subscription{Filter: "#", QoS: 1})
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			pub := dialPeer(t, tg.addr, v)
			pub.connectOK(&packet.Connect{ClientID: "syspub" + v.String(), CleanStart: true})
			pub.send(&packet.Publish{Topic: "$SYS/x", QoS: 1, PacketID: 3, Payload: []byte("fake")})
			if v == packet.V5 {
				pub.expectRaw("PUBACK", unhex("40 03 00 03 87"))
			} else {
				pub.expectRaw("PUBACK", unhex("40 02 00 03"))
			}
		}
		// Anything that did arrive would be ahead of this one.
		pub := dialPeer(t, tg.addr, packet.V5)
		pub.connectOK(&packet.Connect{ClientID: "syspub-marker", CleanStart: true})
		pub.publish1(1, "marker", "m")
		got := sub.expectMessage("the marker, and nothing before it", "marker", "m")
		sub.ack(got)
	})
}

// Topic aliases from the client: set, then used with an empty topic, then
// remapped [MQTT-3.3.2-12]; the subscriber sees the topic every time.
// Towards an MQTT 5 subscriber that allows aliases, the engine may use
// its own: the first PUBLISH carries topic and alias, later ones only the
// alias.
func TestConformanceTopicAlias(t *testing.T) {
	t.Parallel()
	_, addr := start(t, Config{})
	sub := dialPeer(t, addr, packet.V311)
	sub.connectOK(&packet.Connect{ClientID: "alias-sub", CleanStart: true})
	sub.subscribe(1, packet.Subscription{Filter: "al/#", QoS: 1})
	asub := dialPeer(t, addr, packet.V5)
	asub.connectOK(&packet.Connect{ClientID: "alias-sub5", CleanStart: true,
		Properties: packet.Properties{TopicAliasMaximum: 4}})
	asub.subscribe(1, packet.Subscription{Filter: "al/#", QoS: 0})

	pub := dialPeer(t, addr, packet.V5)
	pub.connectOK(&packet.Connect{ClientID: "alias-pub", CleanStart: true})
	steps := []struct {
		topic, want string
		alias       uint16
	}{
		{"al/b", "al/b", 1},
		{"", "al/b", 1},
		{"al/c", "al/c", 1}, // remapped
		{"", "al/c", 1},
		{"al/d", "al/d", 10}, // the maximum itself is allowed
		{"", "al/d", 10},
	}
	var outAlias = map[string]uint16{}
	for i, s := range steps {
		payload := fmt.Sprint(i)
		pub.send(&packet.Publish{Topic: s.topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte(payload),
			Properties: packet.Properties{TopicAlias: s.alias}})
		pub.expectRaw("PUBACK", []byte{0x40, 0x02, 0, byte(i + 1)})
		got := sub.expectMessage(fmt.Sprintf("step %d", i), s.want, payload)
		if got.Properties.Has(packet.PropTopicAlias) {
			t.Errorf("the client's alias was forwarded: %s", packet.Describe(got, packet.V311))
		}
		sub.ack(got)

		g := asub.expectPublish(fmt.Sprintf("step %d (aliasing subscriber)", i))
		if string(g.Payload) != payload {
			t.Fatalf("step %d: aliasing subscriber got %s", i, packet.Describe(g, packet.V5))
		}
		a := g.Properties.TopicAlias
		switch {
		case g.Topic == s.want && a == 0:
			// no alias used: allowed
		case g.Topic == s.want && a >= 1 && a <= 4:
			outAlias[s.want] = a
		case g.Topic == "" && a != 0 && outAlias[s.want] == a:
			// alias used, as set before
		default:
			t.Errorf("step %d: aliasing subscriber got %s (aliases so far %v)", i, packet.Describe(g, packet.V5), outAlias)
		}
	}
	if len(outAlias) == 0 {
		t.Logf("the engine used no outbound aliases")
	}

	// Aliases belong to the network connection [MQTT-3.3.2-11]: after a
	// reconnect, alias 1 is unknown.
	pub.send(&packet.Disconnect{})
	pub.expectClosed("after DISCONNECT")
	pub = dialPeer(t, addr, packet.V5)
	pub.connectOK(&packet.Connect{ClientID: "alias-pub", CleanStart: true, Properties: packet.Properties{RequestProblemInfo: 0}})
	pub.send(&packet.Publish{Topic: "", Payload: []byte("x"), Properties: packet.Properties{TopicAlias: 1}})
	pub.expectDisconnect("an alias of the previous connection", packet.ProtocolError)
}
