package packet

import (
	"bytes"
	"fmt"
	"testing"

	paho5 "github.com/eclipse/paho.golang/packets"
)

// Differential tests against paho.golang's MQTT 5 codec: what we encode,
// paho decodes to the same packet, and what paho encodes, we decode to
// the same packet.
//
// paho.golang loses information in a few places; the cases and the fuzz
// generator keep clear of them, each with the reason beside it:
//   - string and binary properties are plain strings and slices, so an
//     empty one reads as absent (gen.props never makes them empty);
//   - PUBLISH keeps one subscription identifier, not the several
//     [MQTT-3.3.4-3] allows (one at most is generated);
//   - will properties are packed with the CONNECT property set, which
//     drops payload-format, message-expiry, content-type, response-topic
//     and correlation-data (paho5WillLossy);
//   - a DISCONNECT with a remaining length of 0, which 3.14.2.1 allows,
//     fails to decode: Disconnect.Unpack always reads a reason code
//     (paho5CannotDecode).

// dirs says which directions a case runs in.
type dirs uint8

const (
	dirA  dirs = 1 << iota // ours encodes, the other side decodes
	dirB                   // the other side encodes, ours decodes
	dirAB = dirA | dirB
)

func byteP(v byte) *byte    { return &v }
func u16P(v uint16) *uint16 { return &v }
func u32P(v uint32) *uint32 { return &v }
func intP(v int) *int       { return &v }
func userP(u []UserProperty) []paho5.User {
	if len(u) == 0 {
		return nil
	}
	out := make([]paho5.User, len(u))
	for i, x := range u {
		out[i] = paho5.User{Key: x.Key, Value: x.Value}
	}
	return out
}

// propsToPaho5 converts our properties; each present property becomes
// set in paho's form (pointers for numbers, so that zeros survive).
func propsToPaho5(p *Properties) *paho5.Properties {
	pp := &paho5.Properties{
		ContentType:      p.ContentType,
		ResponseTopic:    p.ResponseTopic,
		CorrelationData:  p.CorrelationData,
		AssignedClientID: p.AssignedClientID,
		AuthMethod:       p.AuthMethod,
		AuthData:         p.AuthData,
		ResponseInfo:     p.ResponseInfo,
		ServerReference:  p.ServerReference,
		ReasonString:     p.ReasonString,
		User:             userP(p.User),
	}
	if p.Has(PropPayloadFormat) {
		pp.PayloadFormat = byteP(p.PayloadFormat)
	}
	if p.Has(PropMessageExpiry) {
		pp.MessageExpiry = u32P(p.MessageExpiry)
	}
	if n := len(p.SubscriptionIDs); n > 0 {
		pp.SubscriptionIdentifier = intP(int(p.SubscriptionIDs[n-1]))
	}
	if p.Has(PropSessionExpiry) {
		pp.SessionExpiryInterval = u32P(p.SessionExpiry)
	}
	if p.Has(PropServerKeepAlive) {
		pp.ServerKeepAlive = u16P(p.ServerKeepAlive)
	}
	if p.Has(PropRequestProblemInfo) {
		pp.RequestProblemInfo = byteP(p.RequestProblemInfo)
	}
	if p.Has(PropWillDelay) {
		pp.WillDelayInterval = u32P(p.WillDelay)
	}
	if p.Has(PropRequestResponseInfo) {
		pp.RequestResponseInfo = byteP(p.RequestResponseInfo)
	}
	if p.Has(PropReceiveMaximum) {
		pp.ReceiveMaximum = u16P(p.ReceiveMaximum)
	}
	if p.Has(PropTopicAliasMaximum) {
		pp.TopicAliasMaximum = u16P(p.TopicAliasMaximum)
	}
	if p.Has(PropTopicAlias) {
		pp.TopicAlias = u16P(p.TopicAlias)
	}
	if p.Has(PropMaximumQoS) {
		pp.MaximumQOS = byteP(p.MaximumQoS)
	}
	if p.Has(PropRetainAvailable) {
		pp.RetainAvailable = byteP(p.RetainAvailable)
	}
	if p.Has(PropMaximumPacketSize) {
		pp.MaximumPacketSize = u32P(p.MaximumPacketSize)
	}
	if p.Has(PropWildcardSubAvailable) {
		pp.WildcardSubAvailable = byteP(p.WildcardSubAvailable)
	}
	if p.Has(PropSubIDAvailable) {
		pp.SubIDAvailable = byteP(p.SubIDAvailable)
	}
	if p.Has(PropSharedSubAvailable) {
		pp.SharedSubAvailable = byteP(p.SharedSubAvailable)
	}
	return pp
}

// propsFromPaho5 is the inverse of propsToPaho5.
func propsFromPaho5(pp *paho5.Properties) Properties {
	var p Properties
	if pp == nil {
		return p
	}
	num := func(id PropID, set bool, v uint32) {
		if set {
			p.setNum(id, v)
			p.Mark(id)
		}
	}
	if pp.PayloadFormat != nil {
		num(PropPayloadFormat, true, uint32(*pp.PayloadFormat))
	}
	if pp.MessageExpiry != nil {
		num(PropMessageExpiry, true, *pp.MessageExpiry)
	}
	if pp.SubscriptionIdentifier != nil {
		num(PropSubscriptionID, true, uint32(*pp.SubscriptionIdentifier))
	}
	if pp.SessionExpiryInterval != nil {
		num(PropSessionExpiry, true, *pp.SessionExpiryInterval)
	}
	if pp.ServerKeepAlive != nil {
		num(PropServerKeepAlive, true, uint32(*pp.ServerKeepAlive))
	}
	if pp.RequestProblemInfo != nil {
		num(PropRequestProblemInfo, true, uint32(*pp.RequestProblemInfo))
	}
	if pp.WillDelayInterval != nil {
		num(PropWillDelay, true, *pp.WillDelayInterval)
	}
	if pp.RequestResponseInfo != nil {
		num(PropRequestResponseInfo, true, uint32(*pp.RequestResponseInfo))
	}
	if pp.ReceiveMaximum != nil {
		num(PropReceiveMaximum, true, uint32(*pp.ReceiveMaximum))
	}
	if pp.TopicAliasMaximum != nil {
		num(PropTopicAliasMaximum, true, uint32(*pp.TopicAliasMaximum))
	}
	if pp.TopicAlias != nil {
		num(PropTopicAlias, true, uint32(*pp.TopicAlias))
	}
	if pp.MaximumQOS != nil {
		num(PropMaximumQoS, true, uint32(*pp.MaximumQOS))
	}
	if pp.RetainAvailable != nil {
		num(PropRetainAvailable, true, uint32(*pp.RetainAvailable))
	}
	if pp.MaximumPacketSize != nil {
		num(PropMaximumPacketSize, true, *pp.MaximumPacketSize)
	}
	if pp.WildcardSubAvailable != nil {
		num(PropWildcardSubAvailable, true, uint32(*pp.WildcardSubAvailable))
	}
	if pp.SubIDAvailable != nil {
		num(PropSubIDAvailable, true, uint32(*pp.SubIDAvailable))
	}
	if pp.SharedSubAvailable != nil {
		num(PropSharedSubAvailable, true, uint32(*pp.SharedSubAvailable))
	}
	p.ContentType = pp.ContentType
	p.ResponseTopic = pp.ResponseTopic
	p.CorrelationData = pp.CorrelationData
	p.AssignedClientID = pp.AssignedClientID
	p.AuthMethod = pp.AuthMethod
	p.AuthData = pp.AuthData
	p.ResponseInfo = pp.ResponseInfo
	p.ServerReference = pp.ServerReference
	p.ReasonString = pp.ReasonString
	for _, u := range pp.User {
		p.User = append(p.User, UserProperty{Key: u.Key, Value: u.Value})
	}
	return p
}

// toPaho5 converts one of our packets to paho.golang's. The result's
// Content.WriteTo writes it with the right fixed header.
func toPaho5(p Packet) paho5.Packet {
	switch p := p.(type) {
	case *Connect:
		c := &paho5.Connect{
			ProtocolName:    p.ProtocolName,
			ProtocolVersion: byte(p.Version),
			CleanStart:      p.CleanStart,
			KeepAlive:       p.KeepAlive,
			Properties:      propsToPaho5(&p.Properties),
			ClientID:        p.ClientID,
			UsernameFlag:    p.HasUsername,
			Username:        p.Username,
			PasswordFlag:    p.HasPassword,
			Password:        p.Password,
		}
		if w := p.Will; w != nil {
			c.WillFlag = true
			c.WillTopic = w.Topic
			c.WillMessage = w.Payload
			c.WillQOS = w.QoS
			c.WillRetain = w.Retain
			c.WillProperties = propsToPaho5(&w.Properties)
		}
		return c
	case *Connack:
		return &paho5.Connack{SessionPresent: p.SessionPresent, ReasonCode: byte(p.Code), Properties: propsToPaho5(&p.Properties)}
	case *Publish:
		return &paho5.Publish{Topic: p.Topic, PacketID: p.PacketID, QoS: p.QoS, Retain: p.Retain, Duplicate: p.Dup,
			Properties: propsToPaho5(&p.Properties), Payload: p.Payload}
	case *Ack:
		props := propsToPaho5(&p.Properties)
		switch p.Kind {
		case TypePuback:
			return &paho5.Puback{PacketID: p.PacketID, ReasonCode: byte(p.Code), Properties: props}
		case TypePubrec:
			return &paho5.Pubrec{PacketID: p.PacketID, ReasonCode: byte(p.Code), Properties: props}
		case TypePubrel:
			return &paho5.Pubrel{PacketID: p.PacketID, ReasonCode: byte(p.Code), Properties: props}
		case TypePubcomp:
			return &paho5.Pubcomp{PacketID: p.PacketID, ReasonCode: byte(p.Code), Properties: props}
		}
	case *Subscribe:
		s := &paho5.Subscribe{PacketID: p.PacketID, Properties: propsToPaho5(&p.Properties)}
		for _, sub := range p.Subscriptions {
			s.Subscriptions = append(s.Subscriptions, paho5.SubOptions{Topic: sub.Filter, QoS: sub.QoS,
				NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling})
		}
		return s
	case *Suback:
		s := &paho5.Suback{PacketID: p.PacketID, Properties: propsToPaho5(&p.Properties)}
		for _, c := range p.Codes {
			s.Reasons = append(s.Reasons, byte(c))
		}
		return s
	case *Unsubscribe:
		return &paho5.Unsubscribe{PacketID: p.PacketID, Properties: propsToPaho5(&p.Properties), Topics: p.Filters}
	case *Unsuback:
		u := &paho5.Unsuback{PacketID: p.PacketID, Properties: propsToPaho5(&p.Properties)}
		for _, c := range p.Codes {
			u.Reasons = append(u.Reasons, byte(c))
		}
		return u
	case *Pingreq:
		return &paho5.Pingreq{}
	case *Pingresp:
		return &paho5.Pingresp{}
	case *Disconnect:
		return &paho5.Disconnect{ReasonCode: byte(p.Code), Properties: propsToPaho5(&p.Properties)}
	case *Auth:
		return &paho5.Auth{ReasonCode: byte(p.Code), Properties: propsToPaho5(&p.Properties)}
	}
	panic(fmt.Sprintf("toPaho5: %T", p))
}

// fromPaho5 converts a paho.golang packet to ours.
func fromPaho5(p paho5.Packet) Packet {
	switch p := p.(type) {
	case *paho5.Connect:
		c := &Connect{
			ProtocolName: p.ProtocolName,
			Version:      Version(p.ProtocolVersion),
			CleanStart:   p.CleanStart,
			KeepAlive:    p.KeepAlive,
			Properties:   propsFromPaho5(p.Properties),
			ClientID:     p.ClientID,
			HasUsername:  p.UsernameFlag,
			Username:     p.Username,
			HasPassword:  p.PasswordFlag,
			Password:     p.Password,
		}
		if p.WillFlag {
			c.Will = &Will{Topic: p.WillTopic, Payload: p.WillMessage, QoS: p.WillQOS, Retain: p.WillRetain,
				Properties: propsFromPaho5(p.WillProperties)}
		}
		return c
	case *paho5.Connack:
		return &Connack{SessionPresent: p.SessionPresent, Code: ReasonCode(p.ReasonCode), Properties: propsFromPaho5(p.Properties)}
	case *paho5.Publish:
		return &Publish{Topic: p.Topic, PacketID: p.PacketID, QoS: p.QoS, Retain: p.Retain, Dup: p.Duplicate,
			Properties: propsFromPaho5(p.Properties), Payload: p.Payload}
	case *paho5.Puback:
		return &Ack{Kind: TypePuback, PacketID: p.PacketID, Code: ReasonCode(p.ReasonCode), Properties: propsFromPaho5(p.Properties)}
	case *paho5.Pubrec:
		return &Ack{Kind: TypePubrec, PacketID: p.PacketID, Code: ReasonCode(p.ReasonCode), Properties: propsFromPaho5(p.Properties)}
	case *paho5.Pubrel:
		return &Ack{Kind: TypePubrel, PacketID: p.PacketID, Code: ReasonCode(p.ReasonCode), Properties: propsFromPaho5(p.Properties)}
	case *paho5.Pubcomp:
		return &Ack{Kind: TypePubcomp, PacketID: p.PacketID, Code: ReasonCode(p.ReasonCode), Properties: propsFromPaho5(p.Properties)}
	case *paho5.Subscribe:
		s := &Subscribe{PacketID: p.PacketID, Properties: propsFromPaho5(p.Properties)}
		for _, o := range p.Subscriptions {
			s.Subscriptions = append(s.Subscriptions, Subscription{Filter: o.Topic, QoS: o.QoS, NoLocal: o.NoLocal,
				RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling})
		}
		return s
	case *paho5.Suback:
		s := &Suback{PacketID: p.PacketID, Properties: propsFromPaho5(p.Properties)}
		for _, c := range p.Reasons {
			s.Codes = append(s.Codes, ReasonCode(c))
		}
		return s
	case *paho5.Unsubscribe:
		return &Unsubscribe{PacketID: p.PacketID, Properties: propsFromPaho5(p.Properties), Filters: p.Topics}
	case *paho5.Unsuback:
		u := &Unsuback{PacketID: p.PacketID, Properties: propsFromPaho5(p.Properties)}
		for _, c := range p.Reasons {
			u.Codes = append(u.Codes, ReasonCode(c))
		}
		return u
	case *paho5.Pingreq:
		return &Pingreq{}
	case *paho5.Pingresp:
		return &Pingresp{}
	case *paho5.Disconnect:
		return &Disconnect{Code: ReasonCode(p.ReasonCode), Properties: propsFromPaho5(p.Properties)}
	case *paho5.Auth:
		return &Auth{Code: ReasonCode(p.ReasonCode), Properties: propsFromPaho5(p.Properties)}
	}
	panic(fmt.Sprintf("fromPaho5: %T", p))
}

// paho5CannotDecode reports why paho.golang cannot decode our encoding of
// p although it is valid, or "".
func paho5CannotDecode(p Packet) string {
	if d, ok := p.(*Disconnect); ok && d.Code == Success && d.Properties.Empty() {
		// 3.14.2.1 allows a remaining length of 0; paho's Unpack reads a
		// reason code regardless and fails with EOF.
		return "paho.golang cannot decode a 0-length DISCONNECT"
	}
	return ""
}

// paho5WillLossy removes from a paho CONNECT the will properties paho
// would silently drop when it encodes: it packs will properties with
// Pack(CONNECT), which writes none of the five PUBLISH-only ones.
func paho5WillLossy(p paho5.Packet) {
	if c, ok := p.(*paho5.Connect); ok && c.WillProperties != nil {
		w := c.WillProperties
		w.PayloadFormat, w.MessageExpiry, w.ContentType, w.ResponseTopic, w.CorrelationData = nil, nil, "", "", nil
	}
}

// checkPaho5 runs p through both directions.
func checkPaho5(t *testing.T, p Packet, d dirs) {
	t.Helper()
	if d&dirA != 0 && paho5CannotDecode(p) == "" {
		b, err := Encode(p, V5)
		if err != nil {
			t.Fatalf("A: encode: %v", err)
		}
		cp, err := paho5.ReadPacket(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("A: paho.golang cannot decode % x: %v", b, err)
		}
		if ok, diff := samePacket(fromPaho5(cp.Content), p, V5); !ok {
			t.Errorf("A: paho.golang decoded % x as another packet:\n%s", b, diff)
		}
	}
	if d&dirB != 0 {
		pp := toPaho5(p)
		paho5WillLossy(pp)
		want := fromPaho5(pp)
		var buf bytes.Buffer
		if _, err := pp.WriteTo(&buf); err != nil {
			t.Fatalf("B: paho.golang encode: %v", err)
		}
		wire := bytes.Clone(buf.Bytes())
		got, err := NewReader(&buf, 0).ReadPacket(V5)
		if err != nil {
			t.Fatalf("B: cannot decode paho.golang's % x: %v", wire, err)
		}
		if ok, diff := samePacket(got, want, V5); !ok {
			t.Errorf("B: decoded paho.golang's % x as another packet:\n%s", wire, diff)
		}
	}
}

// paho5Cases holds every packet type and every property, explicit zeros
// that mean something included.
func paho5Cases() []struct {
	name string
	p    Packet
	d    dirs
} {
	users := []UserProperty{{"k", "1"}, {"k", "2"}, {"a", ""}, {"k", "3"}} // repeated names, in order
	var connProps Properties
	connProps.SessionExpiry = 0xFFFFFFFF
	connProps.ReceiveMaximum = 1
	connProps.MaximumPacketSize = 268435460
	connProps.TopicAliasMaximum = 0
	connProps.Mark(PropTopicAliasMaximum)
	connProps.RequestProblemInfo = 0
	connProps.Mark(PropRequestProblemInfo)
	connProps.RequestResponseInfo = 1
	connProps.AuthMethod = "SCRAM-SHA-256"
	connProps.AuthData = []byte{0, 1, 0xFE, 0xFF}
	connProps.User = users

	var willAll Properties
	willAll.WillDelay = 0
	willAll.Mark(PropWillDelay)
	willAll.PayloadFormat = 0
	willAll.Mark(PropPayloadFormat)
	willAll.MessageExpiry = 3600
	willAll.ContentType = "application/json"
	willAll.ResponseTopic = "replies/é"
	willAll.CorrelationData = []byte{0, 0xFF}
	willAll.User = []UserProperty{{"w", "1"}, {"w", "2"}}
	willSome := Properties{WillDelay: 30, User: []UserProperty{{"w", "1"}, {"w", "2"}}}

	var connackAll Properties
	connackAll.SessionExpiry = 0
	connackAll.Mark(PropSessionExpiry)
	connackAll.ReceiveMaximum = 65535
	connackAll.MaximumQoS = 0
	connackAll.Mark(PropMaximumQoS)
	connackAll.RetainAvailable = 0
	connackAll.Mark(PropRetainAvailable)
	connackAll.MaximumPacketSize = 1
	connackAll.AssignedClientID = "auto-7F3A"
	connackAll.TopicAliasMaximum = 10
	connackAll.ReasonString = "welcome"
	connackAll.User = users
	connackAll.WildcardSubAvailable = 0
	connackAll.Mark(PropWildcardSubAvailable)
	connackAll.SubIDAvailable = 1
	connackAll.SharedSubAvailable = 0
	connackAll.Mark(PropSharedSubAvailable)
	connackAll.ServerKeepAlive = 0
	connackAll.Mark(PropServerKeepAlive)
	connackAll.ResponseInfo = "resp/"
	connackAll.ServerReference = "other:1883"
	connackAll.AuthMethod = "SCRAM-SHA-256"
	connackAll.AuthData = []byte("server-final")

	var pubAll Properties
	pubAll.PayloadFormat = 0
	pubAll.Mark(PropPayloadFormat)
	pubAll.MessageExpiry = 0
	pubAll.Mark(PropMessageExpiry)
	pubAll.ContentType = "text/plain; charset=utf-8"
	pubAll.ResponseTopic = "replies/1"
	pubAll.CorrelationData = []byte{0xDE, 0xAD, 0, 0xBE, 0xEF}
	pubAll.SubscriptionIDs = []uint32{268435455} // paho keeps one identifier
	pubAll.TopicAlias = 65535
	pubAll.User = users

	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	ackProps := Properties{ReasonString: "because", User: users}

	return []struct {
		name string
		p    Packet
		d    dirs
	}{
		{"connect/minimal", &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true}, dirAB},
		{"connect/all-properties-and-will", &Connect{ProtocolName: "MQTT", Version: V5, KeepAlive: 65535, Properties: connProps,
			ClientID: "client-é", Will: &Will{Topic: "will/topic", Payload: binary, QoS: 2, Retain: true, Properties: willAll},
			HasUsername: true, Username: "alice", HasPassword: true, Password: []byte{0, 1, 2}},
			dirA}, // paho drops the PUBLISH-only will properties when it encodes
		{"connect/will-delay-and-user", &Connect{ProtocolName: "MQTT", Version: V5, KeepAlive: 10, ClientID: "c",
			Will: &Will{Topic: "w", Payload: []byte("bye"), QoS: 1, Properties: willSome}}, dirAB},
		{"connect/will-no-payload", &Connect{ProtocolName: "MQTT", Version: V5, ClientID: "c",
			Will: &Will{Topic: "w"}}, dirAB},
		{"connect/username-only", &Connect{ProtocolName: "MQTT", Version: V5, ClientID: "c", HasUsername: true, Username: "u"}, dirAB},
		{"connect/password-only", &Connect{ProtocolName: "MQTT", Version: V5, ClientID: "c", HasPassword: true, Password: []byte("p")}, dirAB},
		{"connect/empty-username-and-password", &Connect{ProtocolName: "MQTT", Version: V5, HasUsername: true, HasPassword: true}, dirAB},
		{"connack/all-properties", &Connack{SessionPresent: true, Properties: connackAll}, dirAB},
		{"connack/refused", &Connack{Code: NotAuthorized, Properties: Properties{ReasonString: "no"}}, dirAB},
		{"connack/plain", &Connack{}, dirAB},
		{"publish/qos0-empty-payload", &Publish{Topic: "a"}, dirAB},
		{"publish/qos1-all-properties-binary-payload", &Publish{Topic: "sensors/日本/🙂", QoS: 1, PacketID: 1, Properties: pubAll, Payload: binary}, dirAB},
		{"publish/qos2-dup-retain", &Publish{Topic: "t", QoS: 2, PacketID: 65535, Dup: true, Retain: true, Payload: []byte("x")}, dirAB},
		{"publish/alias-only", &Publish{QoS: 1, PacketID: 9, Properties: Properties{TopicAlias: 1}, Payload: []byte("y")}, dirAB},
		{"publish/payload-format-1", &Publish{Topic: "t", Properties: Properties{PayloadFormat: 1, MessageExpiry: 1, SubscriptionIDs: []uint32{1}}}, dirAB},
		{"puback/success-short", &Ack{Kind: TypePuback, PacketID: 1}, dirAB},
		{"puback/code", &Ack{Kind: TypePuback, PacketID: 2, Code: NoMatchingSubscribers}, dirAB},
		{"puback/properties", &Ack{Kind: TypePuback, PacketID: 3, Code: QuotaExceeded, Properties: ackProps}, dirAB},
		{"puback/success-with-properties", &Ack{Kind: TypePuback, PacketID: 4, Properties: ackProps}, dirAB},
		{"pubrec/properties", &Ack{Kind: TypePubrec, PacketID: 5, Code: PayloadFormatInvalid, Properties: ackProps}, dirAB},
		{"pubrec/success", &Ack{Kind: TypePubrec, PacketID: 5}, dirAB},
		{"pubrel/not-found", &Ack{Kind: TypePubrel, PacketID: 6, Code: PacketIdentifierNotFound, Properties: ackProps}, dirAB},
		{"pubrel/success", &Ack{Kind: TypePubrel, PacketID: 6}, dirAB},
		{"pubcomp/properties", &Ack{Kind: TypePubcomp, PacketID: 65535, Properties: ackProps}, dirAB},
		{"pubcomp/not-found", &Ack{Kind: TypePubcomp, PacketID: 7, Code: PacketIdentifierNotFound}, dirAB},
		{"subscribe/options", &Subscribe{PacketID: 10, Properties: Properties{SubscriptionIDs: []uint32{128}, User: users},
			Subscriptions: []Subscription{
				{Filter: "a/+/c", QoS: 0},
				{Filter: "#", QoS: 1, NoLocal: true},
				{Filter: "x/y", QoS: 2, RetainAsPublished: true, RetainHandling: 1},
				{Filter: "$share/g/t", QoS: 1, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "é/日本", NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
			}}, dirAB},
		{"subscribe/plain", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "t"}}}, dirAB},
		{"suback/codes", &Suback{PacketID: 10, Properties: ackProps, Codes: []ReasonCode{Success, GrantedQoS1, GrantedQoS2,
			UnspecifiedError, ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse,
			QuotaExceeded, SharedSubscriptionsNotSupported, SubscriptionIdentifiersNotSupported, WildcardSubscriptionsNotSupported}}, dirAB},
		{"unsubscribe/properties", &Unsubscribe{PacketID: 11, Properties: Properties{User: users}, Filters: []string{"a/+/c", "#", "$share/g/t"}}, dirAB},
		{"unsuback/codes", &Unsuback{PacketID: 11, Properties: ackProps, Codes: []ReasonCode{Success, NoSubscriptionExisted,
			UnspecifiedError, ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse}}, dirAB},
		{"pingreq", &Pingreq{}, dirAB},
		{"pingresp", &Pingresp{}, dirAB},
		{"disconnect/normal", &Disconnect{}, dirB}, // paho cannot decode the 0-length form (paho5CannotDecode)
		{"disconnect/with-will", &Disconnect{Code: DisconnectWithWill}, dirAB},
		{"disconnect/session-expiry-0", &Disconnect{Properties: func() Properties {
			var p Properties
			p.Mark(PropSessionExpiry)
			return p
		}()}, dirAB},
		{"disconnect/all-properties", &Disconnect{Code: ServerMoved, Properties: Properties{SessionExpiry: 60,
			ReasonString: "moved", ServerReference: "other:1883", User: users}}, dirAB},
		{"auth/success-short", &Auth{}, dirAB},
		{"auth/continue", &Auth{Code: ContinueAuthentication, Properties: Properties{AuthMethod: "SCRAM-SHA-256",
			AuthData: []byte{1, 2, 3}, ReasonString: "more", User: users}}, dirAB},
		{"auth/reauthenticate", &Auth{Code: ReAuthenticate, Properties: Properties{AuthMethod: "m"}}, dirAB},
	}
}

func TestPaho5(t *testing.T) {
	for _, tc := range paho5Cases() {
		t.Run(tc.name, func(t *testing.T) {
			checkPaho5(t, tc.p, tc.d)
		})
	}
}

// TestPaho5CasesCoverEverything keeps the table honest: every packet type
// and every property appears in some case that paho decodes (direction A).
func TestPaho5CasesCoverEverything(t *testing.T) {
	types := map[Type]bool{}
	var props uint64
	for _, tc := range paho5Cases() {
		if tc.d&dirA == 0 {
			continue
		}
		types[tc.p.Type()] = true
		for _, ps := range propsOf(tc.p) {
			for _, id := range propOrder {
				if ps.Has(id) {
					props |= 1 << id
				}
			}
		}
	}
	for tt := TypeConnect; tt <= TypeAuth; tt++ {
		if !types[tt] {
			t.Errorf("no case for %s", tt)
		}
	}
	for _, id := range propOrder {
		if props&(1<<id) == 0 {
			t.Errorf("no case carries %s", id)
		}
	}
}

// propsOf returns the property blocks of p.
func propsOf(p Packet) []*Properties {
	switch p := p.(type) {
	case *Connect:
		if p.Will != nil {
			return []*Properties{&p.Properties, &p.Will.Properties}
		}
		return []*Properties{&p.Properties}
	case *Connack:
		return []*Properties{&p.Properties}
	case *Publish:
		return []*Properties{&p.Properties}
	case *Ack:
		return []*Properties{&p.Properties}
	case *Subscribe:
		return []*Properties{&p.Properties}
	case *Suback:
		return []*Properties{&p.Properties}
	case *Unsubscribe:
		return []*Properties{&p.Properties}
	case *Unsuback:
		return []*Properties{&p.Properties}
	case *Disconnect:
		return []*Properties{&p.Properties}
	case *Auth:
		return []*Properties{&p.Properties}
	}
	return nil
}

// FuzzRoundTripPaho5 generates a valid MQTT 5 packet from the fuzz input
// and runs it through both directions.
func FuzzRoundTripPaho5(f *testing.F) {
	for _, s := range genSeeds(V5) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkPaho5(t, genPacket(data, V5), dirAB)
	})
}
