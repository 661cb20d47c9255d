// Package packet is mqtk's MQTT codec: it encodes and decodes every control
// packet of MQTT 3.1, 3.1.1 and 5 with every MQTT 5 property, validates
// strictly, and reports what is wrong with the reason code the
// specification asks for. The broker's engine reads and writes through it,
// and the one packet printer (Describe, Summarize) serves both the clients'
// -d trace and the broker's --trace.
//
// Decoding is allocation-lean: a decoded packet keeps slices of the body it
// was decoded from (the payload, binary properties) and all of its strings
// share one conversion of the packet's header, so a PUBLISH costs the same
// few allocations whatever properties it carries. The caller therefore must
// not reuse a body after decoding a packet that keeps references to it; the
// Reader hands out fresh bodies for exactly those packet types.
package packet

import (
	"fmt"
)

// Version is the protocol level byte of CONNECT.
type Version byte

// The protocol versions mqtk speaks.
const (
	V31  Version = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5"
	}
	return fmt.Sprintf("level %d", byte(v))
}

// Type is a control packet type, the high nibble of the fixed header.
type Type byte

// The control packet types [MQTT-2.1.2].
const (
	TypeConnect     Type = 1
	TypeConnack     Type = 2
	TypePublish     Type = 3
	TypePuback      Type = 4
	TypePubrec      Type = 5
	TypePubrel      Type = 6
	TypePubcomp     Type = 7
	TypeSubscribe   Type = 8
	TypeSuback      Type = 9
	TypeUnsubscribe Type = 10
	TypeUnsuback    Type = 11
	TypePingreq     Type = 12
	TypePingresp    Type = 13
	TypeDisconnect  Type = 14
	TypeAuth        Type = 15
)

var typeNames = [16]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
	"PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if t < 16 {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE(%d)", byte(t))
}

// Packet is one decoded or to-be-encoded control packet.
type Packet interface {
	// Type is the packet's control packet type.
	Type() Type
	// Append appends the whole encoded packet (fixed header included) for
	// protocol version v to dst. It validates what a receiver would refuse,
	// so mqtk never sends a packet its own decoder calls malformed.
	Append(dst []byte, v Version) ([]byte, error)
}

// Encode returns p encoded for version v in a new slice.
func Encode(p Packet, v Version) ([]byte, error) {
	return p.Append(nil, v)
}

// New returns an empty packet of type t for decoding into, or nil for the
// reserved type 0.
func New(t Type) Packet {
	switch t {
	case TypeConnect:
		return new(Connect)
	case TypeConnack:
		return new(Connack)
	case TypePublish:
		return new(Publish)
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp:
		return &Ack{Kind: t}
	case TypeSubscribe:
		return new(Subscribe)
	case TypeSuback:
		return new(Suback)
	case TypeUnsubscribe:
		return new(Unsubscribe)
	case TypeUnsuback:
		return new(Unsuback)
	case TypePingreq:
		return new(Pingreq)
	case TypePingresp:
		return new(Pingresp)
	case TypeDisconnect:
		return new(Disconnect)
	case TypeAuth:
		return new(Auth)
	}
	return nil
}

// decoder is implemented by every packet type: decode the body of a packet
// whose fixed header byte was header.
type decoder interface {
	Packet
	decode(header byte, body []byte, v Version) error
}

// Decode decodes the body of one packet whose first byte is header. For
// CONNECT, v is ignored (the packet names its own version); for every other
// type it is the connection's version. The result keeps references into
// body. On a CONNECT whose protocol name or level is unsupported, Decode
// returns the partly filled *Connect with the error, so that a server can
// answer in the client's version.
func Decode(header byte, body []byte, v Version) (Packet, error) {
	t := Type(header >> 4)
	p := New(t)
	if p == nil {
		// [MQTT-2.1.2] type 0 is reserved: a malformed packet.
		return nil, errorf(MalformedPacket, "reserved packet type 0")
	}
	if err := p.(decoder).decode(header, body, v); err != nil {
		if t == TypeConnect {
			return p, err
		}
		return nil, err
	}
	return p, nil
}

// DecodeInto decodes into an existing packet of the right type, for read
// loops that reuse one value per type. It returns an error if header's type
// is not p's; a zero Ack accepts any of PUBACK, PUBREC, PUBREL, PUBCOMP.
func DecodeInto(p Packet, header byte, body []byte, v Version) error {
	if t := Type(header >> 4); t >= TypePuback && t <= TypePubcomp {
		// A zero Ack takes whichever acknowledgement type comes.
		if a, ok := p.(*Ack); ok && a.Kind == 0 {
			a.Kind = t
		}
	}
	if p.Type() != Type(header>>4) {
		return fmt.Errorf("packet: decode %s into %s", Type(header>>4), p.Type())
	}
	return p.(decoder).decode(header, body, v)
}

// flagsFor is the fixed header's low nibble every type but PUBLISH must
// carry; a different value makes the packet malformed [MQTT-2.1.3-1]
// (3.1.1 [MQTT-2.2.2-1], [MQTT-2.2.2-2]).
func checkFlags(header byte, want byte) error {
	if header&0x0f != want {
		return errorf(MalformedPacket, "%s with fixed header flags 0x%x, want 0x%x", Type(header>>4), header&0x0f, want)
	}
	return nil
}

// appendHeader appends the fixed header for a body of n bytes.
func appendHeader(dst []byte, first byte, n int) ([]byte, error) {
	if n > MaxRemainingLength {
		return dst, errorf(PacketTooLarge, "packet body of %d bytes is over MQTT's limit of %d", n, MaxRemainingLength)
	}
	dst = append(dst, first)
	return appendVarint(dst, uint32(n)), nil
}

// MaxRemainingLength is the largest remaining length a variable byte
// integer can carry (268,435,455 bytes).
const MaxRemainingLength = 268435455
