package packet

import (
	"bytes"
	"fmt"
	"testing"

	paho3 "github.com/eclipse/paho.mqtt.golang/packets"
)

// Differential tests against paho.mqtt.golang's MQTT 3.1.1 (and 3.1)
// codec, in both directions, as diff_paho5_test.go does for MQTT 5.
//
// paho.mqtt.golang's UnsubscribePacket.Unpack stops at the first empty
// topic filter; filters are never empty here ([MQTT-4.7.3-1] forbids them).

// toPaho3 converts one of our packets to paho.mqtt.golang's.
func toPaho3(p Packet) paho3.ControlPacket {
	switch p := p.(type) {
	case *Connect:
		c := paho3.NewControlPacket(paho3.Connect).(*paho3.ConnectPacket)
		c.ProtocolName = p.ProtocolName
		c.ProtocolVersion = byte(p.Version)
		c.CleanSession = p.CleanStart
		c.Keepalive = p.KeepAlive
		c.ClientIdentifier = p.ClientID
		if w := p.Will; w != nil {
			c.WillFlag = true
			c.WillTopic = w.Topic
			c.WillMessage = w.Payload
			c.WillQos = w.QoS
			c.WillRetain = w.Retain
		}
		c.UsernameFlag = p.HasUsername
		c.Username = p.Username
		c.PasswordFlag = p.HasPassword
		c.Password = p.Password
		return c
	case *Connack:
		c := paho3.NewControlPacket(paho3.Connack).(*paho3.ConnackPacket)
		c.SessionPresent = p.SessionPresent
		c.ReturnCode = byte(p.Code)
		return c
	case *Publish:
		c := paho3.NewControlPacket(paho3.Publish).(*paho3.PublishPacket)
		c.Qos, c.Dup, c.Retain = p.QoS, p.Dup, p.Retain
		c.TopicName = p.Topic
		c.MessageID = p.PacketID
		c.Payload = p.Payload
		return c
	case *Ack:
		switch p.Kind {
		case TypePuback:
			c := paho3.NewControlPacket(paho3.Puback).(*paho3.PubackPacket)
			c.MessageID = p.PacketID
			return c
		case TypePubrec:
			c := paho3.NewControlPacket(paho3.Pubrec).(*paho3.PubrecPacket)
			c.MessageID = p.PacketID
			return c
		case TypePubrel:
			c := paho3.NewControlPacket(paho3.Pubrel).(*paho3.PubrelPacket)
			c.MessageID = p.PacketID
			return c
		case TypePubcomp:
			c := paho3.NewControlPacket(paho3.Pubcomp).(*paho3.PubcompPacket)
			c.MessageID = p.PacketID
			return c
		}
	case *Subscribe:
		c := paho3.NewControlPacket(paho3.Subscribe).(*paho3.SubscribePacket)
		c.MessageID = p.PacketID
		for _, s := range p.Subscriptions {
			c.Topics = append(c.Topics, s.Filter)
			c.Qoss = append(c.Qoss, s.QoS)
		}
		return c
	case *Suback:
		c := paho3.NewControlPacket(paho3.Suback).(*paho3.SubackPacket)
		c.MessageID = p.PacketID
		for _, code := range p.Codes {
			c.ReturnCodes = append(c.ReturnCodes, byte(code))
		}
		return c
	case *Unsubscribe:
		c := paho3.NewControlPacket(paho3.Unsubscribe).(*paho3.UnsubscribePacket)
		c.MessageID = p.PacketID
		c.Topics = p.Filters
		return c
	case *Unsuback:
		c := paho3.NewControlPacket(paho3.Unsuback).(*paho3.UnsubackPacket)
		c.MessageID = p.PacketID
		return c
	case *Pingreq:
		return paho3.NewControlPacket(paho3.Pingreq)
	case *Pingresp:
		return paho3.NewControlPacket(paho3.Pingresp)
	case *Disconnect:
		return paho3.NewControlPacket(paho3.Disconnect)
	}
	panic(fmt.Sprintf("toPaho3: %T", p))
}

// fromPaho3 converts a paho.mqtt.golang packet to ours.
func fromPaho3(p paho3.ControlPacket) Packet {
	switch p := p.(type) {
	case *paho3.ConnectPacket:
		c := &Connect{ProtocolName: p.ProtocolName, Version: Version(p.ProtocolVersion), CleanStart: p.CleanSession,
			KeepAlive: p.Keepalive, ClientID: p.ClientIdentifier, HasUsername: p.UsernameFlag, Username: p.Username,
			HasPassword: p.PasswordFlag, Password: p.Password}
		if p.WillFlag {
			c.Will = &Will{Topic: p.WillTopic, Payload: p.WillMessage, QoS: p.WillQos, Retain: p.WillRetain}
		}
		return c
	case *paho3.ConnackPacket:
		return &Connack{SessionPresent: p.SessionPresent, Code: ReasonCode(p.ReturnCode)}
	case *paho3.PublishPacket:
		return &Publish{Topic: p.TopicName, PacketID: p.MessageID, QoS: p.Qos, Dup: p.Dup, Retain: p.Retain, Payload: p.Payload}
	case *paho3.PubackPacket:
		return &Ack{Kind: TypePuback, PacketID: p.MessageID}
	case *paho3.PubrecPacket:
		return &Ack{Kind: TypePubrec, PacketID: p.MessageID}
	case *paho3.PubrelPacket:
		return &Ack{Kind: TypePubrel, PacketID: p.MessageID}
	case *paho3.PubcompPacket:
		return &Ack{Kind: TypePubcomp, PacketID: p.MessageID}
	case *paho3.SubscribePacket:
		s := &Subscribe{PacketID: p.MessageID}
		for i, f := range p.Topics {
			s.Subscriptions = append(s.Subscriptions, Subscription{Filter: f, QoS: p.Qoss[i]})
		}
		return s
	case *paho3.SubackPacket:
		s := &Suback{PacketID: p.MessageID}
		for _, c := range p.ReturnCodes {
			s.Codes = append(s.Codes, ReasonCode(c))
		}
		return s
	case *paho3.UnsubscribePacket:
		return &Unsubscribe{PacketID: p.MessageID, Filters: p.Topics}
	case *paho3.UnsubackPacket:
		return &Unsuback{PacketID: p.MessageID}
	case *paho3.PingreqPacket:
		return &Pingreq{}
	case *paho3.PingrespPacket:
		return &Pingresp{}
	case *paho3.DisconnectPacket:
		return &Disconnect{}
	}
	panic(fmt.Sprintf("fromPaho3: %T", p))
}

// checkPaho3 runs p, a packet of version v (3.1 or 3.1.1), through both
// directions.
func checkPaho3(t *testing.T, p Packet, v Version, d dirs) {
	t.Helper()
	if d&dirA != 0 {
		b, err := Encode(p, v)
		if err != nil {
			t.Fatalf("A: encode: %v", err)
		}
		cp, err := paho3.ReadPacket(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("A: paho.mqtt.golang cannot decode % x: %v", b, err)
		}
		if ok, diff := samePacket(fromPaho3(cp), p, v); !ok {
			t.Errorf("A: paho.mqtt.golang decoded % x as another packet:\n%s", b, diff)
		}
	}
	if d&dirB != 0 {
		pp := toPaho3(p)
		want := fromPaho3(pp)
		var buf bytes.Buffer
		if err := pp.Write(&buf); err != nil {
			t.Fatalf("B: paho.mqtt.golang encode: %v", err)
		}
		wire := bytes.Clone(buf.Bytes())
		got, err := NewReader(&buf, 0).ReadPacket(v)
		if err != nil {
			t.Fatalf("B: cannot decode paho.mqtt.golang's % x: %v", wire, err)
		}
		if ok, diff := samePacket(got, want, v); !ok {
			t.Errorf("B: decoded paho.mqtt.golang's % x as another packet:\n%s", wire, diff)
		}
	}
}

func TestPaho3(t *testing.T) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	cases := []struct {
		name string
		v    Version
		p    Packet
	}{
		{"connect/plain", V311, &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "c-1"}},
		{"connect/empty-client-id", V311, &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true}},
		{"connect/will-username-password", V311, &Connect{ProtocolName: "MQTT", Version: V311, KeepAlive: 65535, ClientID: "client-é",
			Will:        &Will{Topic: "will/日本", Payload: binary, QoS: 2, Retain: true},
			HasUsername: true, Username: "alice", HasPassword: true, Password: []byte{0, 0xFF}}},
		{"connect/will-qos1-no-credentials", V311, &Connect{ProtocolName: "MQTT", Version: V311, ClientID: "c", Will: &Will{Topic: "w", QoS: 1}}},
		{"connect/will-empty-payload", V311, &Connect{ProtocolName: "MQTT", Version: V311, ClientID: "c", Will: &Will{Topic: "w", Payload: []byte{}}}},
		{"connect/username-only", V311, &Connect{ProtocolName: "MQTT", Version: V311, ClientID: "c", HasUsername: true, Username: "u"}},
		{"connect/empty-username-empty-password", V311, &Connect{ProtocolName: "MQTT", Version: V311, ClientID: "c", HasUsername: true, HasPassword: true}},
		{"connect/mqtt31", V31, &Connect{ProtocolName: "MQIsdp", Version: V31, CleanStart: true, ClientID: "old",
			Will: &Will{Topic: "w", Payload: []byte("x")}, HasUsername: true, Username: "u", HasPassword: true, Password: []byte("p")}},
		{"connack/session-present", V311, &Connack{SessionPresent: true}},
		{"connack/refused", V311, &Connack{Code: ConnRefusedNotAuthorized}},
		{"connack/bad-credentials", V311, &Connack{Code: ConnRefusedBadUserNameOrPasswd}},
		{"connack/mqtt31", V31, &Connack{Code: ConnRefusedIdentifierRejected}},
		{"publish/qos0-empty-payload", V311, &Publish{Topic: "a"}},
		{"publish/qos0-binary", V311, &Publish{Topic: "sensors/日本/🙂", Payload: binary}},
		{"publish/qos1-dup-retain", V311, &Publish{Topic: "t", QoS: 1, PacketID: 1, Dup: true, Retain: true, Payload: []byte("x")}},
		{"publish/qos2", V311, &Publish{Topic: "t/u", QoS: 2, PacketID: 65535, Payload: []byte("y")}},
		{"publish/qos1-empty-payload", V311, &Publish{Topic: "t", QoS: 1, PacketID: 2}},
		{"puback", V311, &Ack{Kind: TypePuback, PacketID: 1}},
		{"pubrec", V311, &Ack{Kind: TypePubrec, PacketID: 2}},
		{"pubrel", V311, &Ack{Kind: TypePubrel, PacketID: 3}},
		{"pubcomp", V311, &Ack{Kind: TypePubcomp, PacketID: 65535}},
		{"subscribe", V311, &Subscribe{PacketID: 4, Subscriptions: []Subscription{{Filter: "a/+/c"}, {Filter: "#", QoS: 1}, {Filter: "é", QoS: 2}}}},
		{"suback", V311, &Suback{PacketID: 4, Codes: []ReasonCode{Success, GrantedQoS1, GrantedQoS2, SubackFailure311}}},
		{"unsubscribe", V311, &Unsubscribe{PacketID: 5, Filters: []string{"a/+/c", "#"}}},
		{"unsuback", V311, &Unsuback{PacketID: 5}},
		{"pingreq", V311, &Pingreq{}},
		{"pingresp", V311, &Pingresp{}},
		{"disconnect", V311, &Disconnect{}},
	}
	types := map[Type]bool{}
	for _, tc := range cases {
		types[tc.p.Type()] = true
		t.Run(tc.name, func(t *testing.T) {
			checkPaho3(t, tc.p, tc.v, dirAB)
		})
	}
	for tt := TypeConnect; tt < TypeAuth; tt++ {
		if !types[tt] {
			t.Errorf("no case for %s", tt)
		}
	}
}

// FuzzRoundTripPaho3 generates a valid MQTT 3.1.1 packet (3.1 when the
// first byte is odd) and runs it through both directions.
func FuzzRoundTripPaho3(f *testing.F) {
	for _, s := range genSeeds(V311) {
		f.Add(byte(0), s)
		f.Add(byte(1), s)
	}
	f.Fuzz(func(t *testing.T, version byte, data []byte) {
		v := V311
		if version&1 == 1 {
			v = V31
		}
		checkPaho3(t, genPacket(data, v), v, dirAB)
	})
}
