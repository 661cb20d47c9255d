package engine

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/mqtk/mqtk/internal/packet"
)

// SUBACK and UNSUBACK codes per filter, and SUBSCRIBEs that break the
// protocol, byte for byte, against the engine and mosquitto.
func TestConformanceSubscribeAnswers(t *testing.T) {
	t.Parallel()
	subs := func(v packet.Version, id uint16, props packet.Properties, list ...packet.Subscription) []byte {
		return enc(t, &packet.Subscribe{PacketID: id, Properties: props, Subscriptions: list}, v)
	}
	writes := func(bs ...[]byte) func(string) [][]byte { return func(string) [][]byte { return bs } }
	mixed := []packet.Subscription{
		{Filter: "a/#", QoS: 2}, {Filter: "a/#/b", QoS: 1}, {Filter: "x+", QoS: 0},
		{Filter: "a/+", QoS: 1}, {Filter: "b", QoS: 0},
	}
	rows := []exchange{
		{
			// [MQTT-3.8.4-6] one code per filter, in order [MQTT-3.9.3-1];
			// an invalid filter gets 0x8F in MQTT 5. mosquitto refuses the
			// whole SUBSCRIBE as malformed instead.
			name:    "5 per-filter codes, invalid filter 0x8F",
			v:       packet.V5,
			connect: true,
			writes:  writes(subs(packet.V5, 10, packet.Properties{}, mixed...)),
			want:    []string{"90 08 00 0A 00 02 8F 8F 01 00", "open"},
			mosq:    []string{"E0 01 81", "close"},
		},
		{
			// 3.1.1 has one failure code, 0x80 (3.9.3).
			name:    "3.1.1 per-filter codes, invalid filter 0x80",
			v:       packet.V311,
			connect: true,
			writes:  writes(subs(packet.V311, 10, packet.Properties{}, mixed...)),
			want:    []string{"90 07 00 0A 02 80 80 01 00", "open"},
			mosq:    []string{"close"},
		},
		{
			// [MQTT-3.10.4-5] (MQTT 5, 3.11.3) UNSUBACK has a code per
			// filter: 0x11 "no subscription existed".
			name:    "5 UNSUBACK codes",
			v:       packet.V5,
			connect: true,
			writes: writes(subs(packet.V5, 10, packet.Properties{}, packet.Subscription{Filter: "a/#", QoS: 2}),
				enc(t, &packet.Unsubscribe{PacketID: 11, Filters: []string{"a/#", "none", "a/#"}}, packet.V5)),
			want: []string{"90 04 00 0A 00 02", "B0 06 00 0B 00 00 11 11", "open"},
		},
		{
			// [MQTT-3.10.4-4] (3.1.1) UNSUBACK even when nothing matched.
			name:    "3.1.1 UNSUBACK",
			v:       packet.V311,
			connect: true,
			writes:  writes(enc(t, &packet.Unsubscribe{PacketID: 11, Filters: []string{"none"}}, packet.V311)),
			want:    []string{"B0 02 00 0B", "open"},
		},
		{
			// 3.8.3.1: retain handling 3 is a protocol error.
			name:    "5 retain handling 3 gets DISCONNECT 0x82",
			v:       packet.V5,
			connect: true,
			writes:  writes(unhex("82 07 00 01 00 00 01 61 30")),
			want:    []string{"E0 01 82", "close"},
			mosq:    []string{"E0 01 81", "close"},
		},
		{
			// [MQTT-3.8.3-5] reserved option bits: malformed.
			name:    "5 reserved subscription option bits get DISCONNECT 0x81",
			v:       packet.V5,
			connect: true,
			writes:  writes(unhex("82 07 00 01 00 00 01 61 C0")),
			want:    []string{"E0 01 81", "close"},
		},
		{
			name:    "3.1.1 reserved subscription option bits closed",
			v:       packet.V311,
			connect: true,
			writes:  writes(unhex("82 06 00 01 00 01 61 04")),
			want:    []string{"close"},
		},
		{
			// 3.8.2.1.2: a subscription identifier of 0 is a protocol
			// error.
			name:    "5 subscription identifier 0 gets DISCONNECT 0x82",
			v:       packet.V5,
			connect: true,
			writes:  writes(unhex("82 09 00 01 02 0B 00 00 01 61 00")),
			want:    []string{"E0 01 82", "close"},
			mosq:    []string{"E0 01 81", "close"},
		},
		{
			// [MQTT-3.8.3-4] no-local on a shared subscription.
			name:    "5 no-local on a shared subscription gets DISCONNECT 0x82",
			v:       packet.V5,
			connect: true,
			writes:  writes(append(unhex("82 10 00 01 00"), append(mstr("$share/g/t"), 0x04)...)),
			want:    []string{"E0 01 82", "close"},
			mosq:    []string{"90 04 00 01 00 00", "open"}, // mosquitto 2.0.11 grants it
		},
		{
			// [MQTT-3.8.3-3] at least one filter.
			name:    "3.1.1 SUBSCRIBE without a filter closed",
			v:       packet.V311,
			connect: true,
			writes:  writes(unhex("82 02 00 01")),
			want:    []string{"close"},
		},
		{
			// [MQTT-3.8.1-1] SUBSCRIBE's fixed header flags are 0010.
			name:    "5 SUBSCRIBE with flags 0000 gets DISCONNECT 0x81",
			v:       packet.V5,
			connect: true,
			writes:  writes(unhex("80 07 00 01 00 00 01 61 00")),
			want:    []string{"E0 01 81", "close"},
		},
	}
	runExchanges(t, Config{}, "", rows)
}

// drain reads PUBLISHes until nothing comes for a while, acknowledging
// each, and returns them.
func (p *peer) drain() []*packet.Publish {
	p.t.Helper()
	var out []*packet.Publish
	for {
		b, err := p.readRaw(quiet / 2)
		if isTimeout(err) {
			return out
		}
		if err != nil {
			p.t.Fatalf("drain: %v", err)
		}
		pk := p.decode(b)
		m, ok := pk.(*packet.Publish)
		if !ok {
			p.t.Fatalf("drain: got %s, want PUBLISH", packet.Describe(pk, p.v))
		}
		p.ack(m)
		out = append(out, m)
	}
}

// Retained messages [MQTT-3.3.1-5]: sent after the SUBACK to a new
// subscription, with the retain flag set [MQTT-3.3.1-8], at the lower of
// the two QoS; "foo/#" matches "foo" [MQTT-4.7.1-2]; an empty retained
// payload clears [MQTT-3.3.1-10]; a live retained message to an
// existing 3.1.1 subscription goes with retain 0 [MQTT-3.3.1-9].
func TestConformanceRetained(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			t.Run(v.String(), func(t *testing.T) {
				root := "ret" + v.String()
				pub := dialPeer(t, tg.addr, v)
				pub.connectOK(&packet.Connect{ClientID: root + "-pub", CleanStart: true})
				pub.send(&packet.Publish{Topic: root, QoS: 1, PacketID: 1, Retain: true, Payload: []byte("parent")})
				pub.expectAck("PUBACK", 0x40, 1)
				pub.send(&packet.Publish{Topic: root + "/a", QoS: 2, PacketID: 2, Retain: true, Payload: []byte("A")})
				pub.expectAck("PUBREC", 0x50, 2)
				pub.write([]byte{0x62, 0x02, 0, 2})
				pub.expectRaw("PUBCOMP", []byte{0x70, 0x02, 0, 2})
				pub.send(&packet.Publish{Topic: root + "/b", Retain: true, Payload: []byte("B")})
				// QoS 0 has no acknowledgement: PINGRESP, answered in order,
				// says the message is stored before the subscriber comes.
				pub.send(&packet.Pingreq{})
				pub.expectRaw("PINGRESP", unhex("D0 00"))

				sub := dialPeer(t, tg.addr, v)
				sub.connectOK(&packet.Connect{ClientID: root + "-sub", CleanStart: true})
				sub.subscribe(3, packet.Subscription{Filter: root + "/#", QoS: 1}) // SUBACK comes first
				got := map[string]*packet.Publish{}
				for _, m := range sub.drain() {
					got[m.Topic] = m
				}
				want := map[string]struct {
					payload string
					qos     byte
				}{root: {"parent", 1}, root + "/a": {"A", 1}, root + "/b": {"B", 0}}
				if len(got) != len(want) {
					t.Errorf("got retained messages on %v, want on %v", keys(got), keys(want))
				}
				for name, w := range want {
					m := got[name]
					switch {
					case m == nil:
						t.Errorf("no retained message for %q", name)
					case string(m.Payload) != w.payload || m.QoS != w.qos || !m.Retain || m.Dup:
						t.Errorf("retained %q delivered as %s, want payload %q, QoS %d, retain", name, packet.Describe(m, v), w.payload, w.qos)
					}
				}

				// Live: retain 0 for an established subscription (3.1.1;
				// MQTT 5 without retain-as-published).
				pub.send(&packet.Publish{Topic: root + "/c", Retain: true, Payload: []byte("live")})
				m := sub.expectMessage("a live retained message", root+"/c", "live")
				if m.Retain {
					t.Errorf("live retained message delivered with retain 1: %s", packet.Describe(m, v))
				}

				// Clearing: an empty retained payload is delivered to the
				// subscriber, and no longer retained.
				pub.send(&packet.Publish{Topic: root + "/a", Retain: true})
				m = sub.expectPublish("the clearing message")
				if m.Topic != root+"/a" || len(m.Payload) != 0 {
					t.Errorf("clearing message delivered as %s", packet.Describe(m, v))
				}
				late := dialPeer(t, tg.addr, v)
				late.connectOK(&packet.Connect{ClientID: root + "-late", CleanStart: true})
				late.subscribe(4, packet.Subscription{Filter: root + "/#", QoS: 0})
				var names []string
				for _, m := range late.drain() {
					names = append(names, m.Topic)
				}
				slices.Sort(names)
				if !slices.Equal(names, []string{root, root + "/b", root + "/c"}) {
					t.Errorf("after clearing %s/a, a new subscriber got retained messages on %v", root, names)
				}
				// Clean up for the other version's run.
				for _, n := range names {
					pub.send(&packet.Publish{Topic: n, Retain: true})
				}
			})
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Retain handling (3.8.3.1) [MQTT-3.3.1-9..11]: 0 sends retained messages
// at every SUBSCRIBE, 1 only when the subscription is new, 2 never.
func TestConformanceRetainHandling(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		pub := dialPeer(t, tg.addr, packet.V5)
		pub.connectOK(&packet.Connect{ClientID: "rh-pub", CleanStart: true})
		pub.send(&packet.Publish{Topic: "rh/t", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("kept")})
		pub.expectAck("PUBACK", 0x40, 1)
		defer pub.send(&packet.Publish{Topic: "rh/t", Retain: true})

		for rh, want := range [][2]int{{1, 1}, {1, 0}, {0, 0}} { // retained messages at the first and second SUBSCRIBE
			t.Run(fmt.Sprintf("retain handling %d", rh), func(t *testing.T) {
				sub := dialPeer(t, tg.addr, packet.V5)
				sub.connectOK(&packet.Connect{ClientID: fmt.Sprintf("rh-sub%d", rh), CleanStart: true})
				for i := range 2 {
					sub.subscribe(uint16(i+1), packet.Subscription{Filter: "rh/#", QoS: 1, RetainHandling: byte(rh)})
					got := sub.drain()
					if len(got) != want[i] {
						t.Errorf("SUBSCRIBE #%d: %d retained messages, want %d", i+1, len(got), want[i])
					}
					for _, m := range got {
						if m.Topic != "rh/t" || !m.Retain || string(m.Payload) != "kept" {
							t.Errorf("SUBSCRIBE #%d: got %s", i+1, packet.Describe(m, packet.V5))
						}
					}
				}
			})
		}
	})
}

// Retain as published (3.8.3.1) [MQTT-3.3.1-12]: a live retained
// message keeps its retain flag only for subscriptions that ask for it.
func TestConformanceRetainAsPublished(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		rap := dialPeer(t, tg.addr, packet.V5)
		rap.connectOK(&packet.Connect{ClientID: "rap-1", CleanStart: true})
		rap.subscribe(1, packet.Subscription{Filter: "rap/#", QoS: 1, RetainAsPublished: true})
		plain := dialPeer(t, tg.addr, packet.V5)
		plain.connectOK(&packet.Connect{ClientID: "rap-0", CleanStart: true})
		plain.subscribe(1, packet.Subscription{Filter: "rap/#", QoS: 1})

		pub := dialPeer(t, tg.addr, packet.V5)
		pub.connectOK(&packet.Connect{ClientID: "rap-pub", CleanStart: true})
		pub.send(&packet.Publish{Topic: "rap/t", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("r")})
		pub.expectAck("PUBACK", 0x40, 1)
		pub.publish1(2, "rap/t", "not retained")
		defer pub.send(&packet.Publish{Topic: "rap/t", Retain: true})

		for _, c := range []struct {
			p      *peer
			retain bool
		}{{rap, true}, {plain, false}} {
			m := c.p.expectMessage("retained", "rap/t", "r")
			if m.Retain != c.retain {
				t.Errorf("live retained message with retain-as-published %v: %s", c.retain, packet.Describe(m, packet.V5))
			}
			c.p.ack(m)
			m = c.p.expectMessage("not retained", "rap/t", "not retained")
			if m.Retain {
				t.Errorf("message published without retain delivered as %s", packet.Describe(m, packet.V5))
			}
			c.p.ack(m)
		}
	})
}

// No local [MQTT-3.8.3-3]: a subscription with no-local does not deliver
// the client's own messages; another client's messages it does.
func TestConformanceNoLocal(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		a := dialPeer(t, tg.addr, packet.V5)
		a.connectOK(&packet.Connect{ClientID: "nl-a", CleanStart: true})
		a.subscribe(1, packet.Subscription{Filter: "nl/t", QoS: 1, NoLocal: true})
		a.publish1(1, "nl/t", "own")
		a.expectSilence("the client's own message", quiet)

		b := dialPeer(t, tg.addr, packet.V5)
		b.connectOK(&packet.Connect{ClientID: "nl-b", CleanStart: true})
		b.publish1(1, "nl/t", "other")
		m := a.expectMessage("another client's message", "nl/t", "other")
		a.ack(m)
	})
}

// Subscription identifiers [MQTT-3.3.4-3..5]: a delivered PUBLISH carries
// the identifiers of the subscriptions it matched (the engine sends one
// copy with all of them, in any order); a subscription replaced without
// one loses it [MQTT-3.8.4-3]; retained messages carry the new
// subscription's.
func TestConformanceSubscriptionIdentifiers(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		pub := dialPeer(t, tg.addr, packet.V5)
		pub.connectOK(&packet.Connect{ClientID: "si-pub", CleanStart: true})
		pub.send(&packet.Publish{Topic: "si/r", Retain: true, Payload: []byte("r")})
		defer pub.send(&packet.Publish{Topic: "si/r", Retain: true})
		pub.send(&packet.Pingreq{}) // in order: the retained message is stored once PINGRESP is back
		pub.expectRaw("PINGRESP", unhex("D0 00"))

		sub := dialPeer(t, tg.addr, packet.V5)
		sub.connectOK(&packet.Connect{ClientID: "si-sub", CleanStart: true})
		sub.subscribeWith(1, packet.Properties{SubscriptionIDs: []uint32{7}}, packet.Subscription{Filter: "si/#", QoS: 1})
		r := sub.expectMessage("the retained message", "si/r", "r")
		if !slices.Equal(r.Properties.SubscriptionIDs, []uint32{7}) {
			t.Errorf("retained message carries subscription identifiers %v, want [7]", r.Properties.SubscriptionIDs)
		}
		sub.subscribeWith(2, packet.Properties{SubscriptionIDs: []uint32{268435455}}, packet.Subscription{Filter: "si/+", QoS: 1, RetainHandling: 2})

		ids := func(what, topicName string) []uint32 {
			t.Helper()
			pub.publish1(1, topicName, what)
			var all []uint32
			copies := sub.drain()
			for _, m := range copies {
				if m.Topic != topicName || string(m.Payload) != what {
					t.Fatalf("%s: got %s", what, packet.Describe(m, packet.V5))
				}
				all = append(all, m.Properties.SubscriptionIDs...)
			}
			if len(copies) != 1 {
				if !tg.mosq {
					t.Errorf("%s: %d copies, want one", what, len(copies))
				} else {
					t.Logf("%s: mosquitto sent %d copies", what, len(copies))
				}
			}
			slices.Sort(all)
			return all
		}
		if got := ids("both", "si/a"); !slices.Equal(got, []uint32{7, 268435455}) {
			t.Errorf("a message matching both subscriptions carries %v, want 7 and 268435455", got)
		}
		if got := ids("one", "si/a/b"); !slices.Equal(got, []uint32{7}) {
			t.Errorf("a message matching si/# only carries %v, want [7]", got)
		}
		sub.subscribe(3, packet.Subscription{Filter: "si/+", QoS: 1, RetainHandling: 2})
		if got := ids("replaced", "si/a"); !slices.Equal(got, []uint32{7}) {
			t.Errorf("after si/+ was replaced without an identifier: %v, want [7]", got)
		}
	})
}

// Shared subscriptions (4.8.2): messages go round-robin to the connected
// members, each to one; retained messages are not sent for a shared
// subscription (3.8.4: "retained messages are not sent ... shared");
// a plain subscription to the same topic gets everything.
func TestConformanceSharedSubscription(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		pub := dialPeer(t, tg.addr, packet.V5)
		pub.connectOK(&packet.Connect{ClientID: "sh-pub", CleanStart: true})
		pub.send(&packet.Publish{Topic: "sh/t", Retain: true, Payload: []byte("retained")})
		defer pub.send(&packet.Publish{Topic: "sh/t", Retain: true})
		// Packets are handled in order: once PINGRESP is back, the
		// retained message is stored, before any member subscribes.
		pub.send(&packet.Pingreq{})
		pub.expectRaw("PINGRESP", unhex("D0 00"))

		var members []*peer
		for i := range 2 {
			m := dialPeer(t, tg.addr, packet.V5)
			m.connectOK(&packet.Connect{ClientID: fmt.Sprintf("sh-m%d", i), CleanStart: true})
			m.subscribe(1, packet.Subscription{Filter: "$share/g/sh/#", QoS: 1})
			members = append(members, m)
		}
		for i, m := range members {
			if tg.mosq {
				// mosquitto 2.0.11 sends retained messages to shared
				// subscriptions.
				if got := m.drain(); len(got) > 0 {
					t.Logf("mosquitto sent shared member %d %d retained message(s)", i, len(got))
				}
				continue
			}
			m.expectSilence(fmt.Sprintf("a retained message to shared member %d", i), quiet)
		}
		all := dialPeer(t, tg.addr, packet.V311)
		all.connectOK(&packet.Connect{ClientID: "sh-all", CleanStart: true})
		all.subscribe(1, packet.Subscription{Filter: "sh/#", QoS: 1})
		if got := all.drain(); len(got) != 1 || !got[0].Retain {
			t.Errorf("plain subscriber got %d retained messages, want 1", len(got))
		}

		const n = 6
		for i := range n {
			pub.publish1(uint16(i+1), "sh/t", strconv.Itoa(i))
		}
		var seen []int
		for i, m := range members {
			got := m.drain()
			if len(got) != n/2 {
				t.Errorf("member %d got %d of %d, want %d (round-robin)", i, len(got), n, n/2)
			}
			for j, msg := range got {
				k, _ := strconv.Atoi(string(msg.Payload))
				seen = append(seen, k)
				if j > 0 {
					prev, _ := strconv.Atoi(string(got[j-1].Payload))
					if k-prev != 2 {
						t.Errorf("member %d got %s after %d: not round-robin", i, msg.Payload, prev)
					}
				}
			}
		}
		slices.Sort(seen)
		if !slices.Equal(seen, []int{0, 1, 2, 3, 4, 5}) {
			t.Errorf("members got %v between them, want each message once", seen)
		}
		if got := all.drain(); len(got) != n {
			t.Errorf("plain subscriber got %d, want %d", len(got), n)
		}

		// UNSUBSCRIBE of the shared filter: the other member gets all.
		members[0].send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"$share/g/sh/#"}})
		members[0].expectRaw("UNSUBACK", unhex("B0 04 00 02 00 00"))
		for i := range 2 {
			pub.publish1(uint16(i+1), "sh/t", "after")
		}
		if got := members[1].drain(); len(got) != 2 {
			t.Errorf("remaining member got %d of 2", len(got))
		}
		members[0].expectSilence("after UNSUBSCRIBE", quiet/3)
	})
}
