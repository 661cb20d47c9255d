package engine

import (
	"testing"

	"github.com/mqtk/mqtk/internal/packet"
)

// CONNECT and CONNACK, byte for byte, against the engine and mosquitto.
func TestConformanceConnect(t *testing.T) {
	t.Parallel()
	one := func(b []byte) func(string) [][]byte { return func(string) [][]byte { return [][]byte{b} } }
	withID := func(f func(id string) []byte) func(string) [][]byte {
		return func(id string) [][]byte { return [][]byte{f(id)} }
	}
	mosq5 := "20 09 00 00 06 22 00 0A 21 00 14" // Topic Alias Maximum 10, Receive Maximum 20
	rows := []exchange{
		{
			name:   "3.1 accepted",
			v:      packet.V31,
			writes: withID(func(id string) []byte { return rawConnect("MQIsdp", 3, 0x02, nil, mstr(id)) }),
			want:   []string{"20 02 00 00", "open"},
		},
		{
			name:   "3.1.1 accepted",
			v:      packet.V311,
			writes: withID(func(id string) []byte { return rawConnect("MQTT", 4, 0x02, nil, mstr(id)) }),
			want:   []string{"20 02 00 00", "open"},
		},
		{
			// 3.2.2.3: the engine announces Receive Maximum 256, Topic
			// Alias Maximum 10 and Maximum Packet Size 1 MiB.
			name:   "5 accepted with receive-maximum, topic-alias-maximum, maximum-packet-size",
			v:      packet.V5,
			writes: withID(func(id string) []byte { return rawConnect("MQTT", 5, 0x02, []byte{}, mstr(id)) }),
			want:   []string{hexOf(v5Connack(false)), "open"},
			mosq:   []string{mosq5, "open"}, // mosquitto announces no Maximum Packet Size when it has none configured
		},
		{
			// [MQTT-3.1.2-2] unsupported level: CONNACK 0x01 in the 3.1.1
			// form, then close.
			name:   "level 6 refused with 0x01",
			v:      packet.V311,
			writes: one(rawConnect("MQTT", 6, 0x02, nil, mstr("c"))),
			want:   []string{"20 02 00 01", "close"},
		},
		{
			name:   "MQTT at level 3 refused with 0x01",
			v:      packet.V311,
			writes: one(rawConnect("MQTT", 3, 0x02, nil, mstr("c"))),
			want:   []string{"20 02 00 01", "close"},
		},
		{
			name:   "MQIsdp at level 4 refused with 0x01",
			v:      packet.V311,
			writes: one(rawConnect("MQIsdp", 4, 0x02, nil, mstr("c"))),
			want:   []string{"20 02 00 01", "close"},
		},
		{
			// [MQTT-3.1.2-1] a wrong protocol name: close, no answer.
			name:   "wrong protocol name at level 4 closed",
			v:      packet.V311,
			writes: one(rawConnect("MQTX", 4, 0x02, nil, mstr("c"))),
			want:   []string{"close"},
		},
		{
			// [MQTT-3.1.2-1] (MQTT 5): with a wrong protocol name the server
			// MUST NOT go on under this specification, and an MQTT 5
			// CONNACK is just that; mosquitto closes.
			name:   "wrong protocol name at level 5 closed",
			v:      packet.V5,
			writes: one(rawConnect("MQTX", 5, 0x02, []byte{}, mstr("c"))),
			want:   []string{"close"},
		},
		{
			// [MQTT-3.1.2-22] (3.1.1) a password without a user name is
			// malformed: close without CONNACK [MQTT-3.1.4-1].
			name:   "3.1.1 password without user name closed",
			v:      packet.V311,
			writes: one(rawConnect("MQTT", 4, 0x42, nil, mstr("c"), mstr("pw"))),
			want:   []string{"close"},
		},
		{
			// MQTT 3.1 requires a client identifier of 1 to 23 characters.
			name:   "3.1 empty client id refused with 2",
			v:      packet.V31,
			writes: one(rawConnect("MQIsdp", 3, 0x02, nil, mstr(""))),
			want:   []string{"20 02 00 02", "close"},
		},
		{
			// MQTT 3.1: a client identifier of more than 23 characters is
			// rejected with 2. mosquitto 2.0.11 accepts it.
			name:   "3.1 client id of 24 characters refused with 2",
			v:      packet.V31,
			writes: one(rawConnect("MQIsdp", 3, 0x02, nil, mstr("abcdefghijklmnopqrstuvwx"))),
			want:   []string{"20 02 00 02", "close"},
			mosq:   []string{"20 02 00 00", "open"},
		},
		{
			// [MQTT-3.1.3-8] an empty client id needs a clean session.
			name:   "3.1.1 empty client id with clean session 0 refused with 2",
			v:      packet.V311,
			writes: one(rawConnect("MQTT", 4, 0x00, nil, mstr(""))),
			want:   []string{"20 02 00 02", "close"},
		},
		{
			// [MQTT-3.1.3-6] [MQTT-3.1.3-7]
			name:   "3.1.1 empty client id with clean session 1 accepted",
			v:      packet.V311,
			writes: one(rawConnect("MQTT", 4, 0x02, nil, mstr(""))),
			want:   []string{"20 02 00 00", "open"},
		},
		{
			// [MQTT-1.5.3-1] [MQTT-3.1.4-1] invalid UTF-8 in the user name:
			// malformed, closed without CONNACK.
			name:   "3.1.1 user name invalid UTF-8 closed",
			v:      packet.V311,
			writes: one(rawConnect("MQTT", 4, 0x82, nil, mstr("c"), []byte{0, 2, 0xFF, 0xFE})),
			want:   []string{"close"},
		},
		{
			// MQTT 5 (4.13.1) lets the server answer a malformed CONNECT
			// with CONNACK 0x81 before closing; mosquitto just closes.
			name:   "5 user name invalid UTF-8 refused with 0x81",
			v:      packet.V5,
			writes: one(rawConnect("MQTT", 5, 0x82, []byte{}, mstr("c"), []byte{0, 2, 0xFF, 0xFE})),
			want:   []string{"20 03 00 81 00", "close"},
			mosq:   []string{"close"},
		},
		{
			// [MQTT-3.1.4-1] bytes after the last field: malformed.
			name:   "3.1.1 trailing bytes closed",
			v:      packet.V311,
			writes: one(rawConnect("MQTT", 4, 0x02, nil, mstr("c"), []byte{1, 2})),
			want:   []string{"close"},
		},
		{
			name:   "5 trailing bytes refused with 0x81",
			v:      packet.V5,
			writes: one(rawConnect("MQTT", 5, 0x02, []byte{}, mstr("c"), []byte{1, 2})),
			want:   []string{"20 03 00 81 00", "close"},
			mosq:   []string{"close"},
		},
		{
			// [MQTT-3.1.2-3] the reserved flag must be 0.
			name:   "3.1.1 reserved flag closed",
			v:      packet.V311,
			writes: one(rawConnect("MQTT", 4, 0x03, nil, mstr("c"))),
			want:   []string{"close"},
		},
		{
			name:   "5 reserved flag refused with 0x81",
			v:      packet.V5,
			writes: one(rawConnect("MQTT", 5, 0x03, []byte{}, mstr("c"))),
			want:   []string{"20 03 00 81 00", "close"},
			mosq:   []string{"close"},
		},
		{
			// [MQTT-3.1.3-?] a will payload may be empty (issue 17: the old
			// broker refused it).
			name: "3.1.1 empty will payload accepted",
			v:    packet.V311,
			writes: withID(func(id string) []byte {
				return rawConnect("MQTT", 4, 0x06, nil, mstr(id), mstr("w/empty"), mstr(""))
			}),
			want: []string{"20 02 00 00", "open"},
		},
		{
			// 3.1.3.5: the password is binary data, which may be empty.
			name: "3.1.1 empty password accepted",
			v:    packet.V311,
			writes: withID(func(id string) []byte {
				return rawConnect("MQTT", 4, 0xC2, nil, mstr(id), mstr("user"), mstr(""))
			}),
			want: []string{"20 02 00 00", "open"},
		},
		{
			// [MQTT-2.2.2-?] (2.2.2.2) a property other than User Property
			// given twice is a protocol error: CONNACK 0x82.
			name: "5 session expiry given twice refused with 0x82",
			v:    packet.V5,
			writes: withID(func(id string) []byte {
				return rawConnect("MQTT", 5, 0x02, unhex("11 00 00 00 0A 11 00 00 00 14"), mstr(id))
			}),
			want: []string{"20 03 00 82 00", "close"},
			mosq: []string{"close"},
		},
		{
			// [MQTT-4.12.0-1] no extended authentication method is
			// supported: 0x8C.
			name:   "5 authentication method refused with 0x8C",
			v:      packet.V5,
			writes: one(rawConnect("MQTT", 5, 0x02, append([]byte{0x15}, mstr("SCRAM-SHA-1")...), mstr("c"))),
			want:   []string{"20 03 00 8C 00", "close"},
		},
		{
			// [MQTT-3.1.0-1] the first packet must be CONNECT.
			name:   "first packet PINGREQ closed",
			v:      packet.V311,
			writes: one([]byte{0xC0, 0x00}),
			want:   []string{"close"},
		},
		{
			name:   "first packet PUBLISH closed",
			v:      packet.V5,
			writes: one(unhex("30 05 00 01 61 00 78")),
			want:   []string{"close"},
		},
		{
			// [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
			name:    "3.1.1 second CONNECT closed",
			v:       packet.V311,
			connect: true,
			writes:  withID(func(id string) []byte { return connectFor(id, packet.V311) }),
			want:    []string{"close"},
		},
		{
			// MQTT 5: DISCONNECT 0x82 first (4.13.1); mosquitto just closes.
			name:    "5 second CONNECT gets DISCONNECT 0x82",
			v:       packet.V5,
			connect: true,
			writes:  withID(func(id string) []byte { return connectFor(id, packet.V5) }),
			want:    []string{"E0 01 82", "close"},
			mosq:    []string{"close"},
		},
		{
			// [MQTT-3.1.3-11] the will topic is a topic name: no wildcards;
			// MQTT 5 may say so with CONNACK 0x90 (mosquitto closes).
			name: "5 will topic with wildcard refused with 0x90",
			v:    packet.V5,
			writes: withID(func(id string) []byte {
				return rawConnect("MQTT", 5, 0x06, []byte{}, mstr(id), []byte{0}, mstr("w/#"), mstr("x"))
			}),
			want: []string{"20 03 00 90 00", "close"},
			mosq: []string{"close"},
		},
		{
			// 3.1.1 has no CONNACK code for a bad will topic: the CONNECT
			// does not conform and is closed without CONNACK
			// [MQTT-3.1.4-1], as mosquitto does.
			name: "3.1.1 will topic with wildcard closed",
			v:    packet.V311,
			writes: withID(func(id string) []byte {
				return rawConnect("MQTT", 4, 0x06, nil, mstr(id), mstr("w/+"), mstr("x"))
			}),
			want: []string{"close"},
		},
	}
	runExchanges(t, Config{}, "", rows)
}

// The MQTT 5 CONNACK announces the engine's limits (3.2.2.3.3, .5, .8):
// the client's Receive Maximum, Maximum Packet Size and Topic Alias
// Maximum are what the engine enforces.
func TestConformanceConnackProperties(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		_, addr := start(t, Config{})
		p := dialPeer(t, addr, packet.V5)
		p.write(connectFor("props", packet.V5))
		p.expectRaw("CONNACK", v5Connack(false))
	})
	t.Run("server keep alive", func(t *testing.T) {
		// [MQTT-3.2.2-21] [MQTT-3.2.2-22] a keep alive over the server's
		// maximum is lowered, and the client is told in Server Keep
		// Alive; one within it is left alone and not mentioned.
		_, addr := start(t, Config{MaxKeepalive: 30})
		for _, c := range []struct {
			keepAlive uint16
			want      []byte
		}{
			{60, enc(t, &packet.Connack{Properties: packet.Properties{ServerKeepAlive: 30, TopicAliasMaximum: 10, MaximumPacketSize: 1 << 20}}, packet.V5)},
			{20, v5Connack(false)},
		} {
			p := dialPeer(t, addr, packet.V5)
			p.send(&packet.Connect{ClientID: "ska", CleanStart: true, KeepAlive: c.keepAlive})
			p.expectRaw("CONNACK", c.want)
		}
	})
	t.Run("configured", func(t *testing.T) {
		_, addr := start(t, Config{ReceiveMaximum: 3, MaxPacketSize: 1000, TopicAliasMaximum: 5})
		p := dialPeer(t, addr, packet.V5)
		ack := p.connectOK(&packet.Connect{ClientID: "props", CleanStart: true})
		pr := ack.Properties
		if !pr.Has(packet.PropReceiveMaximum) || pr.ReceiveMaximum != 3 {
			t.Errorf("receive-maximum: %s, want 3", packet.Describe(ack, packet.V5))
		}
		if !pr.Has(packet.PropMaximumPacketSize) || pr.MaximumPacketSize != 1000 {
			t.Errorf("maximum-packet-size: %s, want 1000", packet.Describe(ack, packet.V5))
		}
		if !pr.Has(packet.PropTopicAliasMaximum) || pr.TopicAliasMaximum != 5 {
			t.Errorf("topic-alias-maximum: %s, want 5", packet.Describe(ack, packet.V5))
		}
		want := enc(t, &packet.Connack{Properties: packet.Properties{ReceiveMaximum: 3, TopicAliasMaximum: 5, MaximumPacketSize: 1000}}, packet.V5)
		p2 := dialPeer(t, addr, packet.V5)
		p2.write(connectFor("props2", packet.V5))
		p2.expectRaw("CONNACK", want)
	})
}

// [MQTT-3.1.3-6] [MQTT-3.2.2-16] an MQTT 5 client with an empty client id
// is given one, and told it in Assigned Client Identifier; two such
// clients get different ones and both stay connected.
func TestConformanceAssignedClientID(t *testing.T) {
	t.Parallel()
	_, addr := start(t, Config{})
	var ids []string
	for range 2 {
		p := dialPeer(t, addr, packet.V5)
		ack := p.connectOK(&packet.Connect{CleanStart: true})
		if !ack.Properties.Has(packet.PropAssignedClientID) || ack.Properties.AssignedClientID == "" {
			t.Fatalf("CONNACK %s has no assigned-client-identifier", packet.Describe(ack, packet.V5))
		}
		want := enc(t, &packet.Connack{Properties: packet.Properties{
			AssignedClientID:  ack.Properties.AssignedClientID,
			TopicAliasMaximum: 10, MaximumPacketSize: 1 << 20,
		}}, packet.V5)
		if got := enc(t, ack, packet.V5); string(got) != string(want) {
			t.Errorf("CONNACK\n got %s\nwant %s", hexOf(got), hexOf(want))
		}
		ids = append(ids, ack.Properties.AssignedClientID)
		p.send(&packet.Pingreq{})
		p.expectRaw("PINGRESP", []byte{0xD0, 0x00})
	}
	if ids[0] == ids[1] {
		t.Errorf("both clients were assigned %q", ids[0])
	}
}

// The session-present flag [MQTT-3.2.2-2]: set for a resumed 3.1.1 or 5
// session, never sent to a 3.1 client, whose CONNACK has no such flag
// (its first byte is reserved).
func TestConformanceSessionPresent(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		for _, c := range []struct {
			v    packet.Version
			id   string
			want string // second CONNACK
		}{
			{packet.V31, "sp31", "20 02 00 00"},
			{packet.V311, "sp311", "20 02 01 00"},
		} {
			name := "MQTT"
			if c.v == packet.V31 {
				name = "MQIsdp"
			}
			for i, want := range []string{"20 02 00 00", c.want} {
				p := dialPeer(t, tg.addr, c.v)
				p.write(rawConnect(name, byte(c.v), 0x00, nil, mstr(c.id))) // clean session 0
				p.expectRaw("CONNACK "+c.v.String()+" #"+string(rune('1'+i)), unhex(want))
				p.send(&packet.Disconnect{})
				p.expectClosed("after DISCONNECT")
			}
		}
	})
}
