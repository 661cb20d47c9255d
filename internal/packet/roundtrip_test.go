package packet

import (
	"bytes"
	"reflect"
	"testing"
)

// samples returns one packet of every type with as many fields and
// properties as the version allows.
func samples(v Version) []Packet {
	var all Properties
	if v == V5 {
		all = Properties{User: []UserProperty{{"a", "1"}, {"a", "2"}, {"b", ""}}}
	}
	pub := all
	if v == V5 {
		pub.PayloadFormat = 1
		pub.MessageExpiry = 30
		pub.ContentType = "text/plain"
		pub.ResponseTopic = "resp/x"
		pub.CorrelationData = []byte{0, 1, 2}
		pub.TopicAlias = 3
		pub.SubscriptionIDs = []uint32{1, 268435455}
	}
	conn := all
	will := Properties{}
	if v == V5 {
		conn.SessionExpiry = 0xFFFFFFFF
		conn.ReceiveMaximum = 20
		conn.MaximumPacketSize = 1 << 20
		conn.TopicAliasMaximum = 10
		conn.RequestProblemInfo = 0
		conn.Mark(PropRequestProblemInfo)
		conn.RequestResponseInfo = 1
		conn.AuthMethod = "SCRAM"
		conn.AuthData = []byte("xyz")
		will.WillDelay = 5
		will.PayloadFormat = 1
		will.MessageExpiry = 9
		will.ContentType = "c"
		will.ResponseTopic = "r"
		will.CorrelationData = []byte("cd")
		will.User = []UserProperty{{"w", "v"}}
	}
	ack := Properties{}
	code := Success
	if v == V5 {
		ack.ReasonString = "why"
		ack.User = []UserProperty{{"k", "v"}}
		code = NoMatchingSubscribers
	}
	connack := Properties{}
	if v == V5 {
		connack = Properties{SessionExpiry: 10, ReceiveMaximum: 100, MaximumQoS: 1, RetainAvailable: 0,
			MaximumPacketSize: 1000, AssignedClientID: "auto-1", TopicAliasMaximum: 5, ReasonString: "ok",
			User: []UserProperty{{"x", "y"}}, WildcardSubAvailable: 1, SubIDAvailable: 0, SharedSubAvailable: 1,
			ServerKeepAlive: 0, ResponseInfo: "ri", ServerReference: "other", AuthMethod: "m", AuthData: []byte{9}}
		connack.Mark(PropRetainAvailable)
		connack.Mark(PropSubIDAvailable)
		connack.Mark(PropServerKeepAlive)
	}
	subProps := Properties{}
	subs := []Subscription{{Filter: "a/+/c", QoS: 1}, {Filter: "#", QoS: 2}}
	if v == V5 {
		subProps.SubscriptionIDs = []uint32{7}
		subProps.User = []UserProperty{{"s", "t"}}
		subs = append(subs, Subscription{Filter: "x/y", QoS: 0, NoLocal: true, RetainAsPublished: true, RetainHandling: 2})
	}
	ps := []Packet{
		&Connect{Version: v, ProtocolName: protocolName(v), CleanStart: true, KeepAlive: 60, Properties: conn, ClientID: "client-1",
			Will:        &Will{Topic: "will/t", Payload: []byte("gone"), QoS: 1, Retain: true, Properties: will},
			HasUsername: true, Username: "alice", HasPassword: true, Password: []byte("s3cret")},
		&Connack{SessionPresent: true, Code: Success, Properties: connack},
		&Publish{Topic: "a/b", QoS: 1, PacketID: 7, Retain: true, Dup: true, Properties: pub, Payload: []byte("hello")},
		&Publish{Topic: "a/b", Payload: []byte{}},
		&Ack{Kind: TypePuback, PacketID: 1, Code: code, Properties: ack},
		&Ack{Kind: TypePubrec, PacketID: 2},
		&Ack{Kind: TypePubrel, PacketID: 3},
		&Ack{Kind: TypePubcomp, PacketID: 65535},
		&Subscribe{PacketID: 9, Properties: subProps, Subscriptions: subs},
		&Suback{PacketID: 9, Properties: ack, Codes: []ReasonCode{GrantedQoS1, GrantedQoS2, Success, UnspecifiedError}},
		&Unsubscribe{PacketID: 10, Properties: Properties{User: all.User}, Filters: []string{"a/+/c", "#"}},
		&Pingreq{},
		&Pingresp{},
		&Disconnect{},
	}
	if v == V5 {
		ps = append(ps,
			&Unsuback{PacketID: 10, Properties: ack, Codes: []ReasonCode{Success, NoSubscriptionExisted}},
			&Disconnect{Code: DisconnectWithWill, Properties: Properties{SessionExpiry: 5, ReasonString: "bye", ServerReference: "s"}},
			&Auth{Code: ContinueAuthentication, Properties: Properties{AuthMethod: "SCRAM", AuthData: []byte{1, 2}, ReasonString: "more"}},
			&Auth{},
		)
	} else {
		ps = append(ps, &Unsuback{PacketID: 10})
	}
	return ps
}

func TestRoundTrip(t *testing.T) {
	for _, v := range []Version{V31, V311, V5} {
		for _, p := range samples(v) {
			b, err := Encode(p, v)
			if err != nil {
				t.Fatalf("v%s encode %s: %v", v, p.Type(), err)
			}
			rd := NewReader(bytes.NewReader(b), 0)
			got, err := rd.ReadPacket(v)
			if err != nil {
				t.Fatalf("v%s decode %s (% x): %v", v, p.Type(), b, err)
			}
			b2, err := Encode(got, v)
			if err != nil {
				t.Fatalf("v%s re-encode %s: %v", v, p.Type(), err)
			}
			if !bytes.Equal(b, b2) {
				t.Errorf("v%s %s: re-encoded\n% x\nwant\n% x", v, p.Type(), b2, b)
			}
			t.Logf("v%s %s", v, Describe(got, v))
			_ = reflect.DeepEqual
		}
	}
}
