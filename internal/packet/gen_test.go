package packet

import (
	"fmt"
	"reflect"
	"strings"
)

// This file holds what the differential tests and the fuzz targets share:
// a generator that turns arbitrary bytes into a valid packet, and canon,
// which puts a packet into the one form two equal packets compare equal in.

// gen builds a valid packet from fuzz bytes. Every choice consumes the
// next byte; an exhausted input reads as zeros, so any input, the empty
// one included, yields a packet.
type gen struct {
	b []byte
	v Version
}

func (g *gen) byte() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func (g *gen) bool() bool  { return g.byte()&1 == 1 }
func (g *gen) n(k int) int { return int(g.byte()) % k }
func (g *gen) u16() uint16 { return uint16(g.byte())<<8 | uint16(g.byte()) }
func (g *gen) u32() uint32 { return uint32(g.u16())<<16 | uint32(g.u16()) }
func (g *gen) id() uint16  { return g.u16()%65535 + 1 } // a non-zero packet identifier
func (g *gen) pick(s []ReasonCode) ReasonCode {
	return s[g.n(len(s))]
}

// alphabet holds the pieces strings are made of: ASCII, two- three- and
// four-byte UTF-8, a space and '$'. It has no wildcard and no U+0000, so
// every string is a valid topic name.
var alphabet = []string{"a", "b", "z", "0", "/", "-", "_", ".", "é", "ß", "日本", "🙂", " ", "$"}

// text returns a string of lo to hi pieces of the alphabet.
func (g *gen) text(lo, hi int) string {
	var sb strings.Builder
	for k := lo + g.n(hi-lo+1); k > 0; k-- {
		sb.WriteString(alphabet[g.n(len(alphabet))])
	}
	return sb.String()
}

func (g *gen) topic() string { return g.text(1, 6) }

// filter returns a topic filter of one to three levels, some of them
// wildcards ('#' only last).
func (g *gen) filter() string {
	levels := 1 + g.n(3)
	parts := make([]string, levels)
	for i := range parts {
		switch g.n(4) {
		case 0:
			parts[i] = "+"
		case 1:
			if i == levels-1 {
				parts[i] = "#"
				continue
			}
			fallthrough
		default:
			parts[i] = g.text(1, 3)
		}
	}
	if g.n(8) == 0 {
		return "$share/g/" + strings.Join(parts, "/")
	}
	return strings.Join(parts, "/")
}

func (g *gen) bin(lo, hi int) []byte {
	b := make([]byte, lo+g.n(hi-lo+1))
	for i := range b {
		b[i] = g.byte()
	}
	return b
}

// userKeys is small so that generated user properties repeat names.
var userKeys = []string{"k", "k", "trace", "é", ""}

// props fills the properties allowed in ctx, each present or not by the
// next byte. Values keep to what a receiver accepts (flags 0 or 1, maxima
// at least 1), and two restrictions come from paho.golang, which the
// differential tests compare against:
//   - string and binary properties are never empty: paho.golang stores
//     them as plain strings and slices, where empty means absent;
//   - a PUBLISH carries at most one subscription identifier: paho.golang
//     keeps one (Properties.SubscriptionIdentifier is a single *int).
func (g *gen) props(ctx propCtx) Properties {
	var p Properties
	if g.v != V5 {
		return p
	}
	for _, id := range propOrder {
		in := propTable[id]
		if in.allowed&ctx == 0 || !g.bool() {
			continue
		}
		p.Mark(id)
		switch in.kind {
		case kByte:
			p.setNum(id, uint32(g.byte()&1))
		case kU16:
			v := uint32(g.u16())
			if id == PropReceiveMaximum || id == PropTopicAlias {
				v = max(v, 1)
			}
			p.setNum(id, v)
		case kU32:
			v := g.u32()
			if id == PropMaximumPacketSize {
				v = max(v, 1)
			}
			p.setNum(id, v)
		case kVarint:
			p.SubscriptionIDs = []uint32{g.u32()%MaxRemainingLength + 1}
		case kStr:
			if id == PropResponseTopic {
				p.setStr(id, g.topic())
			} else {
				p.setStr(id, g.text(1, 4))
			}
		case kBin:
			b := g.bin(1, 6)
			if id == PropCorrelationData {
				p.CorrelationData = b
			} else {
				p.AuthData = b
			}
		case kPair:
			for k := 1 + g.n(3); k > 0; k-- {
				p.User = append(p.User, UserProperty{Key: userKeys[g.n(len(userKeys))], Value: g.text(0, 3)})
			}
		}
	}
	return p
}

var (
	connackCodes5 = []ReasonCode{Success, UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, UnsupportedProtocolVersion, ClientIdentifierNotValid,
		BadUserNameOrPassword, NotAuthorized, ServerUnavailable, ServerBusy, Banned,
		BadAuthenticationMethod, TopicNameInvalid, PacketTooLarge, QuotaExceeded,
		PayloadFormatInvalid, RetainNotSupported, QoSNotSupported, UseAnotherServer, ServerMoved,
		ConnectionRateExceeded}
	connackCodes3 = []ReasonCode{ConnAccepted, ConnRefusedProtocolVersion, ConnRefusedIdentifierRejected,
		ConnRefusedServerUnavailable, ConnRefusedBadUserNameOrPasswd, ConnRefusedNotAuthorized}
	pubackCodes = []ReasonCode{Success, NoMatchingSubscribers, UnspecifiedError, ImplementationSpecificError,
		NotAuthorized, TopicNameInvalid, PacketIdentifierInUse, QuotaExceeded, PayloadFormatInvalid}
	pubrelCodes  = []ReasonCode{Success, PacketIdentifierNotFound}
	subackCodes5 = []ReasonCode{Success, GrantedQoS1, GrantedQoS2, UnspecifiedError, ImplementationSpecificError,
		NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse, QuotaExceeded,
		SharedSubscriptionsNotSupported, SubscriptionIdentifiersNotSupported, WildcardSubscriptionsNotSupported}
	subackCodes3   = []ReasonCode{Success, GrantedQoS1, GrantedQoS2, SubackFailure311}
	unsubackCodes  = []ReasonCode{Success, NoSubscriptionExisted, UnspecifiedError, ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse}
	disconnectCode = []ReasonCode{Success, DisconnectWithWill, UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, NotAuthorized, ServerBusy, ServerShuttingDown, KeepAliveTimeout,
		SessionTakenOver, TopicFilterInvalid, TopicNameInvalid, ReceiveMaximumExceeded, TopicAliasInvalid,
		PacketTooLarge, MessageRateTooHigh, QuotaExceeded, AdministrativeAction, PayloadFormatInvalid,
		RetainNotSupported, QoSNotSupported, UseAnotherServer, ServerMoved, SharedSubscriptionsNotSupported,
		ConnectionRateExceeded, MaximumConnectTime, SubscriptionIdentifiersNotSupported,
		WildcardSubscriptionsNotSupported}
	authCodes = []ReasonCode{Success, ContinueAuthentication, ReAuthenticate}
)

// genPacket returns a valid packet for version v made from data. The first
// byte picks the type, so a seed per type covers every type.
func genPacket(data []byte, v Version) Packet {
	g := &gen{b: data, v: v}
	types := 15
	if v != V5 {
		types = 14 // no AUTH
	}
	switch t := Type(1 + g.n(types)); t {
	case TypeConnect:
		c := &Connect{ProtocolName: protocolName(v), Version: v, CleanStart: g.bool(), KeepAlive: g.u16(),
			Properties: g.props(inConnect), ClientID: g.text(0, 5)}
		if len(c.Properties.AuthData) > 0 && c.Properties.AuthMethod == "" {
			c.Properties.AuthMethod = "m" // 3.1.2.11.10: no data without a method
		}
		if g.bool() {
			c.Will = &Will{Topic: g.topic(), QoS: byte(g.n(3)), Retain: g.bool(), Properties: g.props(inWill), Payload: g.bin(0, 8)}
		}
		c.HasUsername = g.bool()
		if c.HasUsername {
			c.Username = g.text(0, 4)
		}
		// [MQTT-3.1.2-22] before MQTT 5, no password without a user name.
		c.HasPassword = g.bool() && (v == V5 || c.HasUsername)
		if c.HasPassword {
			c.Password = g.bin(0, 6)
		}
		return c
	case TypeConnack:
		c := &Connack{}
		if v == V5 {
			c.Code = g.pick(connackCodes5)
		} else {
			c.Code = g.pick(connackCodes3)
		}
		// MQTT 3.1 has no session-present flag; a refusal never has one.
		c.SessionPresent = g.bool() && c.Code == Success && v != V31
		c.Properties = g.props(inConnack)
		return c
	case TypePublish:
		p := &Publish{QoS: byte(g.n(3)), Retain: g.bool(), Properties: g.props(inPublish), Topic: g.topic()}
		if p.QoS > 0 {
			p.PacketID = g.id()
			p.Dup = g.bool()
		}
		if p.Properties.Has(PropTopicAlias) && g.bool() {
			p.Topic = "" // 3.3.2.3.4: the alias stands for the topic
		}
		p.Payload = g.bin(0, 24)
		return p
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp:
		a := &Ack{Kind: t, PacketID: g.id()}
		if v == V5 {
			if t == TypePuback || t == TypePubrec {
				a.Code = g.pick(pubackCodes)
			} else {
				a.Code = g.pick(pubrelCodes)
			}
			a.Properties = g.props(inAck)
		}
		return a
	case TypeSubscribe:
		s := &Subscribe{PacketID: g.id(), Properties: g.props(inSubscribe)}
		for k := 1 + g.n(3); k > 0; k-- {
			sub := Subscription{Filter: g.filter(), QoS: byte(g.n(3))}
			if v == V5 {
				// [MQTT-3.8.3-4] no-local is not allowed on a shared subscription.
				sub.NoLocal = g.bool() && !strings.HasPrefix(sub.Filter, "$share/")
				sub.RetainAsPublished = g.bool()
				sub.RetainHandling = byte(g.n(3))
			}
			s.Subscriptions = append(s.Subscriptions, sub)
		}
		return s
	case TypeSuback:
		s := &Suback{PacketID: g.id(), Properties: g.props(inSuback)}
		for k := 1 + g.n(4); k > 0; k-- {
			if v == V5 {
				s.Codes = append(s.Codes, g.pick(subackCodes5))
			} else {
				s.Codes = append(s.Codes, g.pick(subackCodes3))
			}
		}
		return s
	case TypeUnsubscribe:
		u := &Unsubscribe{PacketID: g.id(), Properties: g.props(inUnsubscribe)}
		for k := 1 + g.n(3); k > 0; k-- {
			u.Filters = append(u.Filters, g.filter())
		}
		return u
	case TypeUnsuback:
		u := &Unsuback{PacketID: g.id(), Properties: g.props(inUnsuback)}
		if v == V5 {
			for k := 1 + g.n(3); k > 0; k-- {
				u.Codes = append(u.Codes, g.pick(unsubackCodes))
			}
		}
		return u
	case TypePingreq:
		return &Pingreq{}
	case TypePingresp:
		return &Pingresp{}
	case TypeDisconnect:
		d := &Disconnect{}
		if v == V5 {
			d.Code = g.pick(disconnectCode)
			d.Properties = g.props(inDisconnect)
		}
		return d
	case TypeAuth:
		return &Auth{Code: g.pick(authCodes), Properties: g.props(inAuth)}
	}
	panic("unreachable")
}

// genSeeds returns fuzz seeds that make every packet type of version v,
// each with all-zero choices (minimal packets), all-0xFF choices (every
// flag and property set) and a mixed pattern.
func genSeeds(v Version) [][]byte {
	types := 15
	if v != V5 {
		types = 14
	}
	var seeds [][]byte
	for t := range types {
		zero := make([]byte, 200)
		ones := make([]byte, 200)
		mixed := make([]byte, 200)
		for i := range ones {
			ones[i] = 0xFF
			mixed[i] = byte(i*37 + t*11)
		}
		zero[0], ones[0], mixed[0] = byte(t), byte(t)+byte(types), byte(t)
		seeds = append(seeds, zero, ones, mixed)
	}
	return seeds
}

// canon returns a deep copy of p in canonical form, so that two packets
// that encode the same compare equal with reflect.DeepEqual: a property is
// marked present exactly when it is present (Has), empty slices are nil,
// and a CONNECT names its protocol and level.
func canon(p Packet, v Version) Packet {
	switch p := p.(type) {
	case *Connect:
		c := *p
		if c.Version == 0 {
			c.Version = v
		}
		if c.ProtocolName == "" {
			c.ProtocolName = protocolName(c.Version)
		}
		c.Properties = canonProps(c.Properties)
		c.Password = canonBytes(c.Password)
		if c.Will != nil {
			w := *c.Will
			w.Payload = canonBytes(w.Payload)
			w.Properties = canonProps(w.Properties)
			c.Will = &w
		}
		return &c
	case *Connack:
		c := *p
		c.Properties = canonProps(c.Properties)
		return &c
	case *Publish:
		c := *p
		c.Properties = canonProps(c.Properties)
		c.Payload = canonBytes(c.Payload)
		return &c
	case *Ack:
		c := *p
		c.Properties = canonProps(c.Properties)
		return &c
	case *Subscribe:
		c := *p
		c.Properties = canonProps(c.Properties)
		c.Subscriptions = append([]Subscription(nil), c.Subscriptions...)
		return &c
	case *Suback:
		c := *p
		c.Properties = canonProps(c.Properties)
		c.Codes = append([]ReasonCode(nil), c.Codes...)
		return &c
	case *Unsubscribe:
		c := *p
		c.Properties = canonProps(c.Properties)
		c.Filters = append([]string(nil), c.Filters...)
		return &c
	case *Unsuback:
		c := *p
		c.Properties = canonProps(c.Properties)
		c.Codes = append([]ReasonCode(nil), c.Codes...)
		return &c
	case *Disconnect:
		c := *p
		c.Properties = canonProps(c.Properties)
		return &c
	case *Auth:
		c := *p
		c.Properties = canonProps(c.Properties)
		return &c
	case *Pingreq, *Pingresp:
		return p
	}
	panic(fmt.Sprintf("canon: unknown packet %T", p))
}

func canonProps(p Properties) Properties {
	var mask uint64
	for _, id := range propOrder {
		if p.Has(id) {
			mask |= 1 << id
		}
	}
	p.present = mask
	p.CorrelationData = canonBytes(p.CorrelationData)
	p.AuthData = canonBytes(p.AuthData)
	p.SubscriptionIDs = append([]uint32(nil), p.SubscriptionIDs...)
	p.User = append([]UserProperty(nil), p.User...)
	return p
}

func canonBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// samePacket reports whether a and b are the same packet for version v,
// and describes both when they are not.
func samePacket(a, b Packet, v Version) (bool, string) {
	ca, cb := canon(a, v), canon(b, v)
	if reflect.DeepEqual(ca, cb) {
		return true, ""
	}
	return false, fmt.Sprintf("got  %s\n     %+v\nwant %s\n     %+v", Describe(a, v), ca, Describe(b, v), cb)
}
