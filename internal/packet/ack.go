package packet

// Ack is PUBACK, PUBREC, PUBREL or PUBCOMP [MQTT-3.4]–[MQTT-3.7]: a packet
// identifier and, in MQTT 5, a reason code and properties.
type Ack struct {
	Kind       Type // TypePuback, TypePubrec, TypePubrel or TypePubcomp
	PacketID   uint16
	Code       ReasonCode
	Properties Properties
}

// Type implements Packet.
func (a *Ack) Type() Type { return a.Kind }

func (a *Ack) flags() byte {
	if a.Kind == TypePubrel {
		return 0x02 // [MQTT-3.6.1-1]
	}
	return 0
}

// validAckCode reports whether c may stand in an ack of kind t
// (3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1).
func validAckCode(t Type, c ReasonCode) bool {
	switch t {
	case TypePuback, TypePubrec:
		switch c {
		case Success, NoMatchingSubscribers, UnspecifiedError, ImplementationSpecificError,
			NotAuthorized, TopicNameInvalid, PacketIdentifierInUse, QuotaExceeded, PayloadFormatInvalid:
			return true
		}
	case TypePubrel, TypePubcomp:
		return c == Success || c == PacketIdentifierNotFound
	}
	return false
}

// Append implements Packet. MQTT 5 acks take the shortest form the
// specification allows: no reason code for success without properties,
// no property length when there are none (3.4.2.1).
func (a *Ack) Append(dst []byte, v Version) ([]byte, error) {
	if a.Kind < TypePuback || a.Kind > TypePubcomp {
		return dst, errorf(MalformedPacket, "Ack of type %s", a.Kind)
	}
	var e encErr
	if a.PacketID == 0 {
		// [MQTT-2.2.1-3] acks carry the non-zero identifier they answer.
		e.fail(ProtocolError, "%s with packet identifier 0", a.Kind)
	}
	n := 2
	if v == V5 {
		if !validAckCode(a.Kind, a.Code) {
			e.fail(ProtocolError, "%s cannot carry reason code 0x%02X", a.Kind, byte(a.Code))
		}
		a.Properties.check(inAck, a.Kind.String(), &e)
		switch {
		case !a.Properties.fastEmpty() && !a.Properties.Empty():
			n += 1 + a.Properties.blockSize()
		case a.Code != Success:
			n++
		}
	} else if a.Code != Success {
		e.fail(ProtocolError, "%s has no reason code before MQTT 5", a.Kind)
	}
	if e.err != nil {
		return dst, e.err
	}
	dst, err := appendHeader(dst, byte(a.Kind)<<4|a.flags(), n)
	if err != nil {
		return dst, err
	}
	dst = appendU16(dst, a.PacketID)
	if n > 2 {
		dst = append(dst, byte(a.Code))
	}
	if n > 3 {
		dst = a.Properties.appendTo(dst)
	}
	return dst, nil
}

func (a *Ack) decode(header byte, body []byte, v Version) error {
	a.Kind = Type(header >> 4)
	a.Code = Success
	a.Properties = Properties{}
	// [MQTT-3.6.1-1] PUBREL's flags are 0010; the others' 0000.
	if err := checkFlags(header, a.flags()); err != nil {
		return err
	}
	r := newRd(body, len(body))
	a.PacketID = r.u16("packet identifier")
	if r.err != nil {
		return r.err
	}
	if a.PacketID == 0 {
		// [MQTT-2.2.1-3] a packet identifier is never 0.
		return errorf(ProtocolError, "%s with packet identifier 0", a.Kind)
	}
	if v != V5 {
		// 3.1.1: the remaining length is exactly 2.
		r.end(a.Kind.String())
		return r.err
	}
	if r.left() == 0 {
		return nil // 3.4.2.1: no reason code means success
	}
	a.Code = ReasonCode(r.u8("reason code"))
	if !validAckCode(a.Kind, a.Code) {
		return errorf(ProtocolError, "%s with reason code 0x%02X, which it cannot carry", a.Kind, byte(a.Code))
	}
	if r.left() > 0 {
		r.readProps(&a.Properties, inAck, a.Kind.String())
	}
	r.end(a.Kind.String())
	return r.err
}
