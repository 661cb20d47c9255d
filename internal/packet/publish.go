package packet

import (
	"encoding/binary"
	"strings"
)

// Publish is the PUBLISH packet [MQTT-3.3].
type Publish struct {
	Topic      string // may be empty in MQTT 5 when Properties.TopicAlias is set
	PacketID   uint16 // 0 for QoS 0
	QoS        byte
	Retain     bool
	Dup        bool
	Properties Properties
	Payload    []byte
}

// Type implements Packet.
func (*Publish) Type() Type { return TypePublish }

// header is the first byte of the encoded packet.
func (p *Publish) header() byte {
	h := byte(TypePublish)<<4 | p.QoS<<1
	if p.Dup {
		h |= 0x08
	}
	if p.Retain {
		h |= 0x01
	}
	return h
}

// Size is the length of the encoded packet for version v, fixed header
// included: what a Maximum Packet Size is compared with [MQTT-3.1.2-24].
func (p *Publish) Size(v Version) int {
	n := p.bodySize(v)
	return 1 + varintLen(uint32(n)) + n
}

func (p *Publish) bodySize(v Version) int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if v == V5 {
		n += p.Properties.blockSize()
	}
	return n
}

// Append implements Packet.
func (p *Publish) Append(dst []byte, v Version) ([]byte, error) {
	if err := p.check(v); err != nil {
		return dst, err
	}
	dst, err := appendHeader(dst, p.header(), p.bodySize(v))
	if err != nil {
		return dst, err
	}
	dst = appendStr(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendU16(dst, p.PacketID)
	}
	if v == V5 {
		dst = p.Properties.appendTo(dst)
	}
	return append(dst, p.Payload...), nil
}

func (p *Publish) check(v Version) error {
	var e encErr
	switch {
	case p.QoS > 2:
		// [MQTT-3.3.1-4] QoS 3 is malformed.
		e.fail(MalformedPacket, "PUBLISH QoS %d; it may be 0, 1 or 2", p.QoS)
	case p.QoS == 0 && p.Dup:
		// [MQTT-3.3.1-2] DUP is 0 for QoS 0 messages.
		e.fail(MalformedPacket, "PUBLISH at QoS 0 with DUP set")
	case p.QoS > 0 && p.PacketID == 0:
		// [MQTT-2.2.1-3] a QoS 1/2 PUBLISH carries a non-zero packet identifier.
		e.fail(ProtocolError, "PUBLISH at QoS %d without a packet identifier", p.QoS)
	}
	e.str("topic name", p.Topic)
	if strings.ContainsAny(p.Topic, "+#") {
		// [MQTT-3.3.2-2] no wildcards in a topic name.
		e.fail(TopicNameInvalid, "topic name %q contains a wildcard", p.Topic)
	}
	if p.Topic == "" && (v != V5 || !p.Properties.Has(PropTopicAlias)) {
		// [MQTT-4.7.3-1] a topic name is at least one character; MQTT 5
		// allows an empty one only with a topic alias (3.3.2.3.4).
		e.fail(ProtocolError, "PUBLISH without a topic name")
	}
	if v == V5 {
		p.Properties.check(inPublish, "PUBLISH", &e)
	}
	return e.err
}

// publishHeaderLen is how much of a PUBLISH body holds strings (topic and
// properties): the part decode converts to a string once.
func publishHeaderLen(body []byte, qos byte, v Version) int {
	if len(body) < 2 {
		return len(body)
	}
	n := 2 + int(binary.BigEndian.Uint16(body))
	if qos > 0 {
		n += 2
	}
	if v == V5 && n < len(body) {
		if l, k, err := decodeVarint(body[n:]); err == nil {
			n += k + int(l)
		}
	}
	return min(n, len(body))
}

func (p *Publish) decode(header byte, body []byte, v Version) error {
	p.QoS = header >> 1 & 3
	p.Dup = header&0x08 != 0
	p.Retain = header&0x01 != 0
	p.PacketID = 0
	if p.QoS == 3 {
		// [MQTT-3.3.1-4] QoS 3 is malformed.
		return errorf(MalformedPacket, "PUBLISH with QoS 3")
	}
	if p.QoS == 0 && p.Dup {
		// [MQTT-3.3.1-2] DUP must be 0 for QoS 0.
		return errorf(MalformedPacket, "PUBLISH at QoS 0 with DUP set")
	}
	r := newRd(body, publishHeaderLen(body, p.QoS, v))
	// [MQTT-3.3.2-1] the topic name is a UTF-8 string.
	p.Topic = r.str("topic name")
	if p.QoS > 0 {
		p.PacketID = r.u16("packet identifier")
		if r.err == nil && p.PacketID == 0 {
			// [MQTT-2.2.1-3] non-zero packet identifier at QoS 1 and 2.
			return errorf(ProtocolError, "PUBLISH at QoS %d with packet identifier 0", p.QoS)
		}
	}
	if v == V5 {
		r.readProps(&p.Properties, inPublish, "PUBLISH")
	} else {
		p.Properties = Properties{}
	}
	if r.err != nil {
		return r.err
	}
	if strings.ContainsAny(p.Topic, "+#") {
		// [MQTT-3.3.2-2] the topic name must not contain wildcards.
		return errorf(TopicNameInvalid, "PUBLISH topic %q contains a wildcard", p.Topic)
	}
	if p.Topic == "" {
		if v != V5 {
			// [MQTT-4.7.3-1] topic names are at least one character long.
			return errorf(TopicNameInvalid, "PUBLISH with an empty topic name")
		}
		if !p.Properties.Has(PropTopicAlias) {
			// 3.3.2.3.4: an empty topic name without a topic alias is a
			// protocol error.
			return errorf(ProtocolError, "PUBLISH with neither a topic name nor a topic alias")
		}
	}
	p.Payload = r.rest()
	return nil
}
