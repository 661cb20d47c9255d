package packet

import (
	"encoding/binary"
	"math/bits"
	"strings"
)

// PropID identifies an MQTT 5 property [MQTT-2.2.2.2].
type PropID byte

// The MQTT 5 properties.
const (
	PropPayloadFormat        PropID = 0x01
	PropMessageExpiry        PropID = 0x02
	PropContentType          PropID = 0x03
	PropResponseTopic        PropID = 0x08
	PropCorrelationData      PropID = 0x09
	PropSubscriptionID       PropID = 0x0B
	PropSessionExpiry        PropID = 0x11
	PropAssignedClientID     PropID = 0x12
	PropServerKeepAlive      PropID = 0x13
	PropAuthMethod           PropID = 0x15
	PropAuthData             PropID = 0x16
	PropRequestProblemInfo   PropID = 0x17
	PropWillDelay            PropID = 0x18
	PropRequestResponseInfo  PropID = 0x19
	PropResponseInfo         PropID = 0x1A
	PropServerReference      PropID = 0x1C
	PropReasonString         PropID = 0x1F
	PropReceiveMaximum       PropID = 0x21
	PropTopicAliasMaximum    PropID = 0x22
	PropTopicAlias           PropID = 0x23
	PropMaximumQoS           PropID = 0x24
	PropRetainAvailable      PropID = 0x25
	PropUser                 PropID = 0x26
	PropMaximumPacketSize    PropID = 0x27
	PropWildcardSubAvailable PropID = 0x28
	PropSubIDAvailable       PropID = 0x29
	PropSharedSubAvailable   PropID = 0x2A
)

// UserProperty is one name/value pair; a packet may repeat a name, and the
// order is kept [MQTT-3.3.2-18].
type UserProperty struct {
	Key, Value string
}

// Properties holds the MQTT 5 properties of a packet or of a will. A
// property is encoded when its value is non-zero or when it was marked
// present (Mark), so that an explicit zero ("Maximum QoS 0", "Server Keep
// Alive 0") differs from an absent property; decoding marks everything it
// reads.
type Properties struct {
	present uint64 // bit id set: property id was read or marked

	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          string
	ResponseTopic        string
	CorrelationData      []byte
	SubscriptionIDs      []uint32 // PUBLISH may carry several [MQTT-3.3.4-3]; SUBSCRIBE one
	SessionExpiry        uint32
	AssignedClientID     string
	ServerKeepAlive      uint16
	AuthMethod           string
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         string
	ServerReference      string
	ReasonString         string
	ReceiveMaximum       uint16
	TopicAliasMaximum    uint16
	TopicAlias           uint16
	MaximumQoS           byte
	RetainAvailable      byte
	User                 []UserProperty
	MaximumPacketSize    uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte
}

// Mark makes id present even when its value is zero.
func (p *Properties) Mark(id PropID) { p.present |= 1 << id }

// Delete removes id: its value becomes zero and it is no longer present.
func (p *Properties) Delete(id PropID) {
	p.present &^= 1 << id
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat = 0
	case PropMessageExpiry:
		p.MessageExpiry = 0
	case PropContentType:
		p.ContentType = ""
	case PropResponseTopic:
		p.ResponseTopic = ""
	case PropCorrelationData:
		p.CorrelationData = nil
	case PropSubscriptionID:
		p.SubscriptionIDs = nil
	case PropSessionExpiry:
		p.SessionExpiry = 0
	case PropAssignedClientID:
		p.AssignedClientID = ""
	case PropServerKeepAlive:
		p.ServerKeepAlive = 0
	case PropAuthMethod:
		p.AuthMethod = ""
	case PropAuthData:
		p.AuthData = nil
	case PropRequestProblemInfo:
		p.RequestProblemInfo = 0
	case PropWillDelay:
		p.WillDelay = 0
	case PropRequestResponseInfo:
		p.RequestResponseInfo = 0
	case PropResponseInfo:
		p.ResponseInfo = ""
	case PropServerReference:
		p.ServerReference = ""
	case PropReasonString:
		p.ReasonString = ""
	case PropReceiveMaximum:
		p.ReceiveMaximum = 0
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum = 0
	case PropTopicAlias:
		p.TopicAlias = 0
	case PropMaximumQoS:
		p.MaximumQoS = 0
	case PropRetainAvailable:
		p.RetainAvailable = 0
	case PropUser:
		p.User = nil
	case PropMaximumPacketSize:
		p.MaximumPacketSize = 0
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable = 0
	case PropSubIDAvailable:
		p.SubIDAvailable = 0
	case PropSharedSubAvailable:
		p.SharedSubAvailable = 0
	}
}

// Has reports whether id is present: marked, read, or non-zero.
//
// It tests the one field directly rather than through get: the encoder
// asks it of every id several times per packet, and building a propValue
// each time made a PUBLISH with properties slower to encode than to
// decode.
func (p *Properties) Has(id PropID) bool {
	if p.present&(1<<id) != 0 {
		return true
	}
	switch id {
	case PropPayloadFormat:
		return p.PayloadFormat != 0
	case PropMessageExpiry:
		return p.MessageExpiry != 0
	case PropContentType:
		return p.ContentType != ""
	case PropResponseTopic:
		return p.ResponseTopic != ""
	case PropCorrelationData:
		return len(p.CorrelationData) != 0
	case PropSubscriptionID:
		return len(p.SubscriptionIDs) != 0
	case PropSessionExpiry:
		return p.SessionExpiry != 0
	case PropAssignedClientID:
		return p.AssignedClientID != ""
	case PropServerKeepAlive:
		return p.ServerKeepAlive != 0
	case PropAuthMethod:
		return p.AuthMethod != ""
	case PropAuthData:
		return len(p.AuthData) != 0
	case PropRequestProblemInfo:
		return p.RequestProblemInfo != 0
	case PropWillDelay:
		return p.WillDelay != 0
	case PropRequestResponseInfo:
		return p.RequestResponseInfo != 0
	case PropResponseInfo:
		return p.ResponseInfo != ""
	case PropServerReference:
		return p.ServerReference != ""
	case PropReasonString:
		return p.ReasonString != ""
	case PropReceiveMaximum:
		return p.ReceiveMaximum != 0
	case PropTopicAliasMaximum:
		return p.TopicAliasMaximum != 0
	case PropTopicAlias:
		return p.TopicAlias != 0
	case PropMaximumQoS:
		return p.MaximumQoS != 0
	case PropRetainAvailable:
		return p.RetainAvailable != 0
	case PropUser:
		return len(p.User) != 0
	case PropMaximumPacketSize:
		return p.MaximumPacketSize != 0
	case PropWildcardSubAvailable:
		return p.WildcardSubAvailable != 0
	case PropSubIDAvailable:
		return p.SubIDAvailable != 0
	case PropSharedSubAvailable:
		return p.SharedSubAvailable != 0
	}
	return false
}

// Empty reports whether no property is present.
func (p *Properties) Empty() bool {
	return p.present == 0 && p.mask() == 0
}

// allProps has the bit of every property id set.
const allProps = 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropContentType |
	1<<PropResponseTopic | 1<<PropCorrelationData | 1<<PropSubscriptionID | 1<<PropSessionExpiry |
	1<<PropAssignedClientID | 1<<PropServerKeepAlive | 1<<PropAuthMethod | 1<<PropAuthData |
	1<<PropRequestProblemInfo | 1<<PropWillDelay | 1<<PropRequestResponseInfo | 1<<PropResponseInfo |
	1<<PropServerReference | 1<<PropReasonString | 1<<PropReceiveMaximum | 1<<PropTopicAliasMaximum |
	1<<PropTopicAlias | 1<<PropMaximumQoS | 1<<PropRetainAvailable | 1<<PropUser |
	1<<PropMaximumPacketSize | 1<<PropWildcardSubAvailable | 1<<PropSubIDAvailable |
	1<<PropSharedSubAvailable

func bit(set bool, id PropID) uint64 {
	if set {
		return 1 << id
	}
	return 0
}

// mask has the bit of every present property set (exactly those for which
// Has is true), found in one pass over the fields: the encoder walks its
// set bits, which come in ascending id order as in propOrder, instead of
// asking Has of all 27 ids on each of its three walks.
func (p *Properties) mask() uint64 {
	m := p.present |
		bit(p.PayloadFormat != 0, PropPayloadFormat) |
		bit(p.MessageExpiry != 0, PropMessageExpiry) |
		bit(p.ContentType != "", PropContentType) |
		bit(p.ResponseTopic != "", PropResponseTopic) |
		bit(len(p.CorrelationData) != 0, PropCorrelationData) |
		bit(len(p.SubscriptionIDs) != 0, PropSubscriptionID) |
		bit(p.SessionExpiry != 0, PropSessionExpiry) |
		bit(p.AssignedClientID != "", PropAssignedClientID) |
		bit(p.ServerKeepAlive != 0, PropServerKeepAlive) |
		bit(p.AuthMethod != "", PropAuthMethod) |
		bit(len(p.AuthData) != 0, PropAuthData) |
		bit(p.RequestProblemInfo != 0, PropRequestProblemInfo) |
		bit(p.WillDelay != 0, PropWillDelay) |
		bit(p.RequestResponseInfo != 0, PropRequestResponseInfo) |
		bit(p.ResponseInfo != "", PropResponseInfo) |
		bit(p.ServerReference != "", PropServerReference) |
		bit(p.ReasonString != "", PropReasonString) |
		bit(p.ReceiveMaximum != 0, PropReceiveMaximum) |
		bit(p.TopicAliasMaximum != 0, PropTopicAliasMaximum) |
		bit(p.TopicAlias != 0, PropTopicAlias) |
		bit(p.MaximumQoS != 0, PropMaximumQoS) |
		bit(p.RetainAvailable != 0, PropRetainAvailable) |
		bit(len(p.User) != 0, PropUser) |
		bit(p.MaximumPacketSize != 0, PropMaximumPacketSize) |
		bit(p.WildcardSubAvailable != 0, PropWildcardSubAvailable) |
		bit(p.SubIDAvailable != 0, PropSubIDAvailable) |
		bit(p.SharedSubAvailable != 0, PropSharedSubAvailable)
	return m & allProps
}

type propKind uint8

const (
	kByte propKind = iota + 1
	kU16
	kU32
	kVarint
	kStr
	kBin
	kPair
)

// propCtx is where a property block appears; each property is allowed in
// some of them [MQTT-2.2.2.2 table 2-4].
type propCtx uint16

const (
	inConnect propCtx = 1 << iota
	inConnack
	inPublish
	inWill
	inAck // PUBACK, PUBREC, PUBREL, PUBCOMP
	inSubscribe
	inSuback
	inUnsubscribe
	inUnsuback
	inDisconnect
	inAuth
)

type propInfo struct {
	name    string // mosquitto's -D name, used in text traces
	json    string // JSON trace key; stable, scripts filter on it
	kind    propKind
	allowed propCtx
}

// propTable is read-only after initialisation.
var propTable = [PropSharedSubAvailable + 1]propInfo{
	PropPayloadFormat:        {"payload-format-indicator", "payload_format", kByte, inPublish | inWill},
	PropMessageExpiry:        {"message-expiry-interval", "message_expiry_interval", kU32, inPublish | inWill},
	PropContentType:          {"content-type", "content_type", kStr, inPublish | inWill},
	PropResponseTopic:        {"response-topic", "response_topic", kStr, inPublish | inWill},
	PropCorrelationData:      {"correlation-data", "correlation_data", kBin, inPublish | inWill},
	PropSubscriptionID:       {"subscription-identifier", "subscription_identifier", kVarint, inPublish | inSubscribe},
	PropSessionExpiry:        {"session-expiry-interval", "session_expiry_interval", kU32, inConnect | inConnack | inDisconnect},
	PropAssignedClientID:     {"assigned-client-identifier", "assigned_client_identifier", kStr, inConnack},
	PropServerKeepAlive:      {"server-keep-alive", "server_keep_alive", kU16, inConnack},
	PropAuthMethod:           {"authentication-method", "authentication_method", kStr, inConnect | inConnack | inAuth},
	PropAuthData:             {"authentication-data", "authentication_data", kBin, inConnect | inConnack | inAuth},
	PropRequestProblemInfo:   {"request-problem-information", "request_problem_information", kByte, inConnect},
	PropWillDelay:            {"will-delay-interval", "will_delay_interval", kU32, inWill},
	PropRequestResponseInfo:  {"request-response-information", "request_response_information", kByte, inConnect},
	PropResponseInfo:         {"response-information", "response_information", kStr, inConnack},
	PropServerReference:      {"server-reference", "server_reference", kStr, inConnack | inDisconnect},
	PropReasonString:         {"reason-string", "reason_string", kStr, inConnack | inAck | inSuback | inUnsuback | inDisconnect | inAuth},
	PropReceiveMaximum:       {"receive-maximum", "receive_maximum", kU16, inConnect | inConnack},
	PropTopicAliasMaximum:    {"topic-alias-maximum", "topic_alias_maximum", kU16, inConnect | inConnack},
	PropTopicAlias:           {"topic-alias", "topic_alias", kU16, inPublish},
	PropMaximumQoS:           {"maximum-qos", "maximum_qos", kByte, inConnack},
	PropRetainAvailable:      {"retain-available", "retain_available", kByte, inConnack},
	PropUser:                 {"user-property", "user", kPair, inConnect | inConnack | inPublish | inWill | inAck | inSubscribe | inSuback | inUnsubscribe | inUnsuback | inDisconnect | inAuth},
	PropMaximumPacketSize:    {"maximum-packet-size", "maximum_packet_size", kU32, inConnect | inConnack},
	PropWildcardSubAvailable: {"wildcard-subscription-available", "wildcard_subscription_available", kByte, inConnack},
	PropSubIDAvailable:       {"subscription-identifier-available", "subscription_identifier_available", kByte, inConnack},
	PropSharedSubAvailable:   {"shared-subscription-available", "shared_subscription_available", kByte, inConnack},
}

// propOrder lists every property id in ascending order: the order in which
// they are encoded and printed.
var propOrder = [...]PropID{PropPayloadFormat, PropMessageExpiry, PropContentType,
	PropResponseTopic, PropCorrelationData, PropSubscriptionID, PropSessionExpiry,
	PropAssignedClientID, PropServerKeepAlive, PropAuthMethod, PropAuthData,
	PropRequestProblemInfo, PropWillDelay, PropRequestResponseInfo, PropResponseInfo,
	PropServerReference, PropReasonString, PropReceiveMaximum, PropTopicAliasMaximum,
	PropTopicAlias, PropMaximumQoS, PropRetainAvailable, PropUser, PropMaximumPacketSize,
	PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable}

func (id PropID) info() (propInfo, bool) {
	if int(id) >= len(propTable) || propTable[id].kind == 0 {
		return propInfo{}, false
	}
	return propTable[id], true
}

// Name is the property's name as mosquitto's -D option spells it.
func (id PropID) String() string {
	if in, ok := id.info(); ok {
		return in.name
	}
	return "property 0x" + hex2(byte(id))
}

func hex2(b byte) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}

// propValue is one property's value in a kind-neutral form.
type propValue struct {
	num  uint32
	str  string
	bin  []byte
	n    int // count, for the repeatable properties
	user []UserProperty
	ids  []uint32
}

func (p *Properties) get(id PropID) propValue {
	switch id {
	case PropPayloadFormat:
		return propValue{num: uint32(p.PayloadFormat)}
	case PropMessageExpiry:
		return propValue{num: p.MessageExpiry}
	case PropContentType:
		return propValue{str: p.ContentType}
	case PropResponseTopic:
		return propValue{str: p.ResponseTopic}
	case PropCorrelationData:
		return propValue{bin: p.CorrelationData}
	case PropSubscriptionID:
		return propValue{ids: p.SubscriptionIDs, n: len(p.SubscriptionIDs)}
	case PropSessionExpiry:
		return propValue{num: p.SessionExpiry}
	case PropAssignedClientID:
		return propValue{str: p.AssignedClientID}
	case PropServerKeepAlive:
		return propValue{num: uint32(p.ServerKeepAlive)}
	case PropAuthMethod:
		return propValue{str: p.AuthMethod}
	case PropAuthData:
		return propValue{bin: p.AuthData}
	case PropRequestProblemInfo:
		return propValue{num: uint32(p.RequestProblemInfo)}
	case PropWillDelay:
		return propValue{num: p.WillDelay}
	case PropRequestResponseInfo:
		return propValue{num: uint32(p.RequestResponseInfo)}
	case PropResponseInfo:
		return propValue{str: p.ResponseInfo}
	case PropServerReference:
		return propValue{str: p.ServerReference}
	case PropReasonString:
		return propValue{str: p.ReasonString}
	case PropReceiveMaximum:
		return propValue{num: uint32(p.ReceiveMaximum)}
	case PropTopicAliasMaximum:
		return propValue{num: uint32(p.TopicAliasMaximum)}
	case PropTopicAlias:
		return propValue{num: uint32(p.TopicAlias)}
	case PropMaximumQoS:
		return propValue{num: uint32(p.MaximumQoS)}
	case PropRetainAvailable:
		return propValue{num: uint32(p.RetainAvailable)}
	case PropUser:
		return propValue{user: p.User, n: len(p.User)}
	case PropMaximumPacketSize:
		return propValue{num: p.MaximumPacketSize}
	case PropWildcardSubAvailable:
		return propValue{num: uint32(p.WildcardSubAvailable)}
	case PropSubIDAvailable:
		return propValue{num: uint32(p.SubIDAvailable)}
	case PropSharedSubAvailable:
		return propValue{num: uint32(p.SharedSubAvailable)}
	}
	return propValue{}
}

// setNum stores a numeric property read from the wire.
func (p *Properties) setNum(id PropID, v uint32) {
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat = byte(v)
	case PropMessageExpiry:
		p.MessageExpiry = v
	case PropSessionExpiry:
		p.SessionExpiry = v
	case PropServerKeepAlive:
		p.ServerKeepAlive = uint16(v)
	case PropRequestProblemInfo:
		p.RequestProblemInfo = byte(v)
	case PropWillDelay:
		p.WillDelay = v
	case PropRequestResponseInfo:
		p.RequestResponseInfo = byte(v)
	case PropReceiveMaximum:
		p.ReceiveMaximum = uint16(v)
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum = uint16(v)
	case PropTopicAlias:
		p.TopicAlias = uint16(v)
	case PropMaximumQoS:
		p.MaximumQoS = byte(v)
	case PropRetainAvailable:
		p.RetainAvailable = byte(v)
	case PropMaximumPacketSize:
		p.MaximumPacketSize = v
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable = byte(v)
	case PropSubIDAvailable:
		p.SubIDAvailable = byte(v)
	case PropSharedSubAvailable:
		p.SharedSubAvailable = byte(v)
	case PropSubscriptionID:
		p.SubscriptionIDs = append(p.SubscriptionIDs, v)
	}
}

func (p *Properties) setStr(id PropID, v string) {
	switch id {
	case PropContentType:
		p.ContentType = v
	case PropResponseTopic:
		p.ResponseTopic = v
	case PropAssignedClientID:
		p.AssignedClientID = v
	case PropAuthMethod:
		p.AuthMethod = v
	case PropResponseInfo:
		p.ResponseInfo = v
	case PropServerReference:
		p.ServerReference = v
	case PropReasonString:
		p.ReasonString = v
	}
}

// fastEmpty is a cheap test for the common case of no properties at all,
// without the per-id walk.
func (p *Properties) fastEmpty() bool {
	return p.present == 0 && p.PayloadFormat == 0 && p.MessageExpiry == 0 && p.ContentType == "" &&
		p.ResponseTopic == "" && len(p.CorrelationData) == 0 && len(p.SubscriptionIDs) == 0 &&
		p.SessionExpiry == 0 && p.AssignedClientID == "" && p.ServerKeepAlive == 0 &&
		p.AuthMethod == "" && len(p.AuthData) == 0 && p.RequestProblemInfo == 0 && p.WillDelay == 0 &&
		p.RequestResponseInfo == 0 && p.ResponseInfo == "" && p.ServerReference == "" &&
		p.ReasonString == "" && p.ReceiveMaximum == 0 && p.TopicAliasMaximum == 0 &&
		p.TopicAlias == 0 && p.MaximumQoS == 0 && p.RetainAvailable == 0 && len(p.User) == 0 &&
		p.MaximumPacketSize == 0 && p.WildcardSubAvailable == 0 && p.SubIDAvailable == 0 &&
		p.SharedSubAvailable == 0
}

// size is the length of the encoded property block without its own
// length prefix.
func (p *Properties) size() int {
	if p.fastEmpty() {
		return 0
	}
	n := 0
	for m := p.mask(); m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		in := propTable[id]
		v := p.get(id)
		switch in.kind {
		case kByte:
			n += 2
		case kU16:
			n += 3
		case kU32:
			n += 5
		case kVarint:
			for _, s := range v.ids {
				n += 1 + varintLen(s)
			}
		case kStr:
			n += 3 + len(v.str)
		case kBin:
			n += 3 + len(v.bin)
		case kPair:
			for _, u := range v.user {
				n += 5 + len(u.Key) + len(u.Value)
			}
		}
	}
	return n
}

// blockSize is size plus the block's variable byte integer length prefix.
func (p *Properties) blockSize() int {
	n := p.size()
	return varintLen(uint32(n)) + n
}

// check validates the properties before they are encoded in ctx: each must
// be allowed there, and its value must be one a receiver accepts.
func (p *Properties) check(ctx propCtx, what string, e *encErr) {
	if p.fastEmpty() {
		return
	}
	for m := p.mask(); m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		in := propTable[id]
		if in.allowed&ctx == 0 {
			e.fail(MalformedPacket, "%s may not carry the %s property", what, in.name)
			return
		}
		v := p.get(id)
		switch in.kind {
		case kStr:
			e.str(in.name, v.str)
		case kBin:
			e.bin(in.name, v.bin)
		case kPair:
			for _, u := range v.user {
				e.str("user property name", u.Key)
				e.str("user property value", u.Value)
			}
		case kVarint:
			if ctx == inSubscribe && len(v.ids) > 1 {
				e.fail(ProtocolError, "SUBSCRIBE may carry one subscription identifier, not %d", len(v.ids))
			}
		}
		if err := checkValue(id, v, ctx); err != nil {
			e.fail(err.Code, "%s", err.Msg)
		}
	}
}

// valueRules has the bit of every property checkValue has a rule for, so
// that the decoder skips building a propValue for the others.
const valueRules = 1<<PropPayloadFormat | 1<<PropRequestProblemInfo | 1<<PropRequestResponseInfo |
	1<<PropMaximumQoS | 1<<PropRetainAvailable | 1<<PropWildcardSubAvailable | 1<<PropSubIDAvailable |
	1<<PropSharedSubAvailable | 1<<PropReceiveMaximum | 1<<PropMaximumPacketSize | 1<<PropTopicAlias |
	1<<PropSubscriptionID | 1<<PropResponseTopic

// checkValue applies the value rules of one property, shared by the
// encoder and the decoder. A property with a rule here must have its bit
// in valueRules.
func checkValue(id PropID, v propValue, ctx propCtx) *Error {
	switch id {
	case PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo, PropMaximumQoS,
		PropRetainAvailable, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable:
		// [MQTT-3.1.2-?] each of these is 0 or 1; any other value is a
		// protocol error (3.1.2.11.6, 3.1.2.11.7, 3.2.2.3.4, 3.2.2.3.5,
		// 3.2.2.3.11-13, 3.3.2.3.2).
		if v.num > 1 {
			return errorf(ProtocolError, "%s is %d; it may only be 0 or 1", id, v.num)
		}
	case PropReceiveMaximum:
		// 3.1.2.11.3 / 3.2.2.3.3: a Receive Maximum of 0 is a protocol error.
		if v.num == 0 {
			return errorf(ProtocolError, "receive-maximum is 0; it must be at least 1")
		}
	case PropMaximumPacketSize:
		// 3.1.2.11.4 / 3.2.2.3.6: a Maximum Packet Size of 0 is a protocol error.
		if v.num == 0 {
			return errorf(ProtocolError, "maximum-packet-size is 0; it must be at least 1")
		}
	case PropTopicAlias:
		// [MQTT-3.3.2-8] a Topic Alias of 0 is not permitted.
		if v.num == 0 {
			return errorf(TopicAliasInvalid, "topic-alias is 0; aliases start at 1")
		}
	case PropSubscriptionID:
		// 3.3.2.3.8 / 3.8.2.1.2: a Subscription Identifier of 0 is a
		// protocol error.
		for _, s := range v.ids {
			if s == 0 {
				return errorf(ProtocolError, "subscription-identifier is 0; it must be 1 to 268435455")
			}
		}
	case PropResponseTopic:
		// [MQTT-3.3.2-14] the Response Topic is a topic name: no wildcards.
		if strings.ContainsAny(v.str, "+#") {
			return errorf(ProtocolError, "response-topic %q contains a wildcard", v.str)
		}
		if v.str == "" {
			return errorf(ProtocolError, "response-topic is empty")
		}
	}
	return nil
}

// appendTo appends the property block with its length prefix.
func (p *Properties) appendTo(dst []byte) []byte {
	n := p.size()
	dst = appendVarint(dst, uint32(n))
	if n == 0 {
		return dst
	}
	for m := p.mask(); m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		v := p.get(id)
		switch propTable[id].kind {
		case kByte:
			dst = append(dst, byte(id), byte(v.num))
		case kU16:
			dst = append(dst, byte(id))
			dst = appendU16(dst, uint16(v.num))
		case kU32:
			dst = append(dst, byte(id))
			dst = appendU32(dst, v.num)
		case kVarint:
			for _, s := range v.ids {
				dst = append(dst, byte(id))
				dst = appendVarint(dst, s)
			}
		case kStr:
			dst = append(dst, byte(id))
			dst = appendStr(dst, v.str)
		case kBin:
			dst = append(dst, byte(id))
			dst = appendBin(dst, v.bin)
		case kPair:
			for _, u := range v.user {
				dst = append(dst, byte(id))
				dst = appendStr(dst, u.Key)
				dst = appendStr(dst, u.Value)
			}
		}
	}
	return dst
}

// readProps decodes a property block for ctx into p, which is reset first.
// Its errors follow [MQTT-2.2.2.2]: an identifier not valid for the packet
// is a malformed packet; a property other than User Property and (in
// PUBLISH) Subscription Identifier given twice is a protocol error.
func (r *rd) readProps(p *Properties, ctx propCtx, what string) {
	*p = Properties{}
	if r.err != nil {
		return
	}
	// Read by hand rather than with r.varint, whose label would have to
	// be built (and allocated) for every packet to name the packet type.
	l, k, err := decodeVarint(r.b[r.pos:])
	if err != nil {
		if k == 0 {
			r.fail(MalformedPacket, "packet ends inside its %s property length", what)
		} else {
			r.fail(MalformedPacket, "%s property length: %v", what, err)
		}
		return
	}
	r.pos += k
	n := int(l)
	if n > r.left() {
		r.fail(MalformedPacket, "%s property length %d is longer than the rest of the packet (%d bytes)", what, n, r.left())
		return
	}
	end := r.pos + n
	// Read the block through a reader that stops at its end, so a property
	// cannot run into what follows it.
	sub := rd{b: r.b[:end], s: r.s, pos: r.pos}
	if len(sub.s) > end {
		sub.s = sub.s[:end]
	}
	for sub.pos < end && sub.err == nil {
		start := sub.pos
		raw := sub.varint("property identifier")
		if sub.err != nil {
			break
		}
		// Every identifier is one byte (2.2.2.2); a longer one must not be
		// truncated into a valid one (0x81 0x02 is 257, not 0x01).
		id := PropID(raw)
		in, ok := id.info()
		if !ok || in.allowed&ctx == 0 || raw > 0xFF {
			sub.fail(MalformedPacket, "%s carries property 0x%02X, which it may not", what, raw)
			break
		}
		if id == PropUser && p.User == nil {
			// One allocation for all the user properties of the block.
			p.User = make([]UserProperty, 0, countUser(sub.b[start:end]))
		}
		repeatable := id == PropUser || (id == PropSubscriptionID && ctx == inPublish)
		if !repeatable && p.present&(1<<id) != 0 {
			sub.fail(ProtocolError, "%s carries the %s property twice", what, in.name)
			break
		}
		p.present |= 1 << id
		switch in.kind {
		case kByte:
			p.setNum(id, uint32(sub.u8(in.name)))
		case kU16:
			p.setNum(id, uint32(sub.u16(in.name)))
		case kU32:
			p.setNum(id, sub.u32(in.name))
		case kVarint:
			p.setNum(id, sub.varint(in.name))
		case kStr:
			p.setStr(id, sub.str(in.name))
		case kBin:
			b := sub.bin(in.name)
			if id == PropCorrelationData {
				p.CorrelationData = b
			} else {
				p.AuthData = b
			}
		case kPair:
			k := sub.str("user property name")
			v := sub.str("user property value")
			if sub.err == nil {
				p.User = append(p.User, UserProperty{Key: k, Value: v})
			}
		}
		if sub.err == nil && valueRules&(1<<id) != 0 {
			if err := checkValue(id, p.get(id), ctx); err != nil {
				sub.err = err
			}
		}
	}
	if sub.err != nil {
		r.err = sub.err
		return
	}
	r.pos = end
}

// countUser counts the User Properties in b, the rest of a property block
// from an identifier on, so that decoding allocates their slice once. It
// stops where it cannot walk on; the decoder reports what is wrong there.
func countUser(b []byte) int {
	n := 0
	for len(b) > 0 {
		id, k, err := decodeVarint(b)
		if err != nil || id > 0xFF {
			break
		}
		b = b[k:]
		in, ok := PropID(id).info()
		if !ok {
			break
		}
		size := 0
		switch in.kind {
		case kByte:
			size = 1
		case kU16:
			size = 2
		case kU32:
			size = 4
		case kVarint:
			if _, size, err = decodeVarint(b); err != nil {
				return n
			}
		case kStr, kBin:
			if len(b) < 2 {
				return n
			}
			size = 2 + int(binary.BigEndian.Uint16(b))
		case kPair:
			n++
			if len(b) < 2 {
				return n
			}
			size = 2 + int(binary.BigEndian.Uint16(b))
			if len(b) < size+2 {
				return n
			}
			size += 2 + int(binary.BigEndian.Uint16(b[size:]))
		}
		if size > len(b) {
			return n
		}
		b = b[size:]
	}
	return n
}
