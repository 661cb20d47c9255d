package packet

import "strings"

// Subscription is one topic filter of a SUBSCRIBE with its options
// [MQTT-3.8.3.1].
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool // MQTT 5
	RetainAsPublished bool // MQTT 5
	RetainHandling    byte // MQTT 5: 0 send retained, 1 only if new, 2 never
}

func (s Subscription) options(v Version) byte {
	o := s.QoS
	if v == V5 {
		if s.NoLocal {
			o |= 0x04
		}
		if s.RetainAsPublished {
			o |= 0x08
		}
		o |= s.RetainHandling << 4
	}
	return o
}

// Subscribe is the SUBSCRIBE packet [MQTT-3.8].
type Subscribe struct {
	PacketID      uint16
	Properties    Properties
	Subscriptions []Subscription
}

// Type implements Packet.
func (*Subscribe) Type() Type { return TypeSubscribe }

// Append implements Packet.
func (s *Subscribe) Append(dst []byte, v Version) ([]byte, error) {
	var e encErr
	if s.PacketID == 0 {
		// [MQTT-2.2.1-3]
		e.fail(ProtocolError, "SUBSCRIBE with packet identifier 0")
	}
	if len(s.Subscriptions) == 0 {
		// [MQTT-3.8.3-2] at least one topic filter.
		e.fail(ProtocolError, "SUBSCRIBE without a topic filter")
	}
	n := 2
	if v == V5 {
		s.Properties.check(inSubscribe, "SUBSCRIBE", &e)
		n += s.Properties.blockSize()
	}
	for _, sub := range s.Subscriptions {
		e.str("topic filter", sub.Filter)
		if sub.QoS > 2 {
			e.fail(MalformedPacket, "subscription QoS %d; it may be 0, 1 or 2", sub.QoS)
		}
		if v == V5 && sub.RetainHandling > 2 {
			e.fail(ProtocolError, "retain handling %d; it may be 0, 1 or 2", sub.RetainHandling)
		}
		if v == V5 && sub.NoLocal && strings.HasPrefix(sub.Filter, "$share/") {
			// [MQTT-3.8.3-4] no-local on a shared subscription.
			e.fail(ProtocolError, "no-local on shared subscription %q", sub.Filter)
		}
		n += 3 + len(sub.Filter)
	}
	if e.err != nil {
		return dst, e.err
	}
	dst, err := appendHeader(dst, byte(TypeSubscribe)<<4|0x02, n)
	if err != nil {
		return dst, err
	}
	dst = appendU16(dst, s.PacketID)
	if v == V5 {
		dst = s.Properties.appendTo(dst)
	}
	for _, sub := range s.Subscriptions {
		dst = appendStr(dst, sub.Filter)
		dst = append(dst, sub.options(v))
	}
	return dst, nil
}

func (s *Subscribe) decode(header byte, body []byte, v Version) error {
	*s = Subscribe{}
	// [MQTT-3.8.1-1] SUBSCRIBE's fixed header flags are 0010.
	if err := checkFlags(header, 0x02); err != nil {
		return err
	}
	r := newRd(body, len(body))
	s.PacketID = r.u16("packet identifier")
	if r.err == nil && s.PacketID == 0 {
		// [MQTT-2.2.1-3]
		return errorf(ProtocolError, "SUBSCRIBE with packet identifier 0")
	}
	if v == V5 {
		r.readProps(&s.Properties, inSubscribe, "SUBSCRIBE")
	}
	for r.err == nil && r.left() > 0 {
		// [MQTT-3.8.3-1] topic filters are UTF-8 strings.
		f := r.str("topic filter")
		o := r.u8("subscription options")
		if r.err != nil {
			break
		}
		sub := Subscription{Filter: f, QoS: o & 0x03}
		if sub.QoS == 3 {
			// [MQTT-3-8.3-4] (3.1.1) / 3.8.3.1 (5): QoS 3 is malformed.
			return errorf(MalformedPacket, "SUBSCRIBE asks for QoS 3 on %q", f)
		}
		if v == V5 {
			if o&0xC0 != 0 {
				// [MQTT-3.8.3-5] bits 6 and 7 are reserved.
				return errorf(MalformedPacket, "SUBSCRIBE sets reserved option bits on %q", f)
			}
			sub.NoLocal = o&0x04 != 0
			sub.RetainAsPublished = o&0x08 != 0
			sub.RetainHandling = o >> 4 & 0x03
			if sub.RetainHandling == 3 {
				// 3.8.3.1: retain handling 3 is a protocol error.
				return errorf(ProtocolError, "SUBSCRIBE asks for retain handling 3 on %q", f)
			}
			if sub.NoLocal && strings.HasPrefix(f, "$share/") {
				// [MQTT-3.8.3-4] no-local on a shared subscription is a
				// protocol error.
				return errorf(ProtocolError, "SUBSCRIBE asks for no-local on shared subscription %q", f)
			}
		} else if o&0xFC != 0 {
			// [MQTT-3-8.3-4] (3.1.1) the upper six bits are reserved.
			return errorf(MalformedPacket, "SUBSCRIBE sets reserved option bits on %q", f)
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	if r.err != nil {
		return r.err
	}
	if len(s.Subscriptions) == 0 {
		// [MQTT-3.8.3-2] at least one topic filter/option pair.
		return errorf(ProtocolError, "SUBSCRIBE without a topic filter")
	}
	return nil
}

// validSubackCode reports whether c is a SUBACK code of version v
// (3.9.3 of 3.1.1 and of 5).
func validSubackCode(c ReasonCode, v Version) bool {
	switch c {
	case GrantedQoS1, GrantedQoS2, Success, UnspecifiedError:
		return true
	case ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse,
		QuotaExceeded, SharedSubscriptionsNotSupported, SubscriptionIdentifiersNotSupported,
		WildcardSubscriptionsNotSupported:
		return v == V5
	}
	return false
}

// Suback is the SUBACK packet [MQTT-3.9]: one code per filter, in order.
type Suback struct {
	PacketID   uint16
	Properties Properties
	Codes      []ReasonCode
}

// Type implements Packet.
func (*Suback) Type() Type { return TypeSuback }

// Append implements Packet.
func (s *Suback) Append(dst []byte, v Version) ([]byte, error) {
	var e encErr
	if len(s.Codes) == 0 {
		e.fail(ProtocolError, "SUBACK without a reason code")
	}
	for _, c := range s.Codes {
		if !validSubackCode(c, v) {
			// [MQTT-3.9.3-2] reserved values must not be used.
			e.fail(ProtocolError, "SUBACK code 0x%02X is not one MQTT %s has", byte(c), v)
		}
	}
	n := 2 + len(s.Codes)
	if v == V5 {
		s.Properties.check(inSuback, "SUBACK", &e)
		n += s.Properties.blockSize()
	}
	if e.err != nil {
		return dst, e.err
	}
	dst, err := appendHeader(dst, byte(TypeSuback)<<4, n)
	if err != nil {
		return dst, err
	}
	dst = appendU16(dst, s.PacketID)
	if v == V5 {
		dst = s.Properties.appendTo(dst)
	}
	for _, c := range s.Codes {
		dst = append(dst, byte(c))
	}
	return dst, nil
}

func (s *Suback) decode(header byte, body []byte, v Version) error {
	*s = Suback{}
	if err := checkFlags(header, 0); err != nil {
		return err
	}
	r := newRd(body, len(body))
	s.PacketID = r.u16("packet identifier")
	if v == V5 {
		r.readProps(&s.Properties, inSuback, "SUBACK")
	}
	if r.err != nil {
		return r.err
	}
	codes := r.rest()
	if len(codes) == 0 {
		return errorf(ProtocolError, "SUBACK without a reason code")
	}
	s.Codes = make([]ReasonCode, len(codes))
	for i, c := range codes {
		if !validSubackCode(ReasonCode(c), v) {
			// [MQTT-3.9.3-2] reserved return codes.
			return errorf(ProtocolError, "SUBACK code 0x%02X is not one MQTT %s has", c, v)
		}
		s.Codes[i] = ReasonCode(c)
	}
	return nil
}

// Unsubscribe is the UNSUBSCRIBE packet [MQTT-3.10].
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties
	Filters    []string
}

// Type implements Packet.
func (*Unsubscribe) Type() Type { return TypeUnsubscribe }

// Append implements Packet.
func (u *Unsubscribe) Append(dst []byte, v Version) ([]byte, error) {
	var e encErr
	if u.PacketID == 0 {
		e.fail(ProtocolError, "UNSUBSCRIBE with packet identifier 0")
	}
	if len(u.Filters) == 0 {
		// [MQTT-3.10.3-2] at least one topic filter.
		e.fail(ProtocolError, "UNSUBSCRIBE without a topic filter")
	}
	n := 2
	if v == V5 {
		u.Properties.check(inUnsubscribe, "UNSUBSCRIBE", &e)
		n += u.Properties.blockSize()
	}
	for _, f := range u.Filters {
		e.str("topic filter", f)
		n += 2 + len(f)
	}
	if e.err != nil {
		return dst, e.err
	}
	dst, err := appendHeader(dst, byte(TypeUnsubscribe)<<4|0x02, n)
	if err != nil {
		return dst, err
	}
	dst = appendU16(dst, u.PacketID)
	if v == V5 {
		dst = u.Properties.appendTo(dst)
	}
	for _, f := range u.Filters {
		dst = appendStr(dst, f)
	}
	return dst, nil
}

func (u *Unsubscribe) decode(header byte, body []byte, v Version) error {
	*u = Unsubscribe{}
	// [MQTT-3.10.1-1] UNSUBSCRIBE's fixed header flags are 0010.
	if err := checkFlags(header, 0x02); err != nil {
		return err
	}
	r := newRd(body, len(body))
	u.PacketID = r.u16("packet identifier")
	if r.err == nil && u.PacketID == 0 {
		return errorf(ProtocolError, "UNSUBSCRIBE with packet identifier 0")
	}
	if v == V5 {
		r.readProps(&u.Properties, inUnsubscribe, "UNSUBSCRIBE")
	}
	for r.err == nil && r.left() > 0 {
		// [MQTT-3.10.3-1] topic filters are UTF-8 strings.
		f := r.str("topic filter")
		if r.err == nil {
			u.Filters = append(u.Filters, f)
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(u.Filters) == 0 {
		// [MQTT-3.10.3-2] at least one topic filter.
		return errorf(ProtocolError, "UNSUBSCRIBE without a topic filter")
	}
	return nil
}

func validUnsubackCode(c ReasonCode) bool {
	switch c {
	case Success, NoSubscriptionExisted, UnspecifiedError, ImplementationSpecificError,
		NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse:
		return true
	}
	return false
}

// Unsuback is the UNSUBACK packet [MQTT-3.11]. Before MQTT 5 it carries
// only the packet identifier.
type Unsuback struct {
	PacketID   uint16
	Properties Properties
	Codes      []ReasonCode // MQTT 5: one per filter
}

// Type implements Packet.
func (*Unsuback) Type() Type { return TypeUnsuback }

// Append implements Packet.
func (u *Unsuback) Append(dst []byte, v Version) ([]byte, error) {
	var e encErr
	n := 2
	if v == V5 {
		if len(u.Codes) == 0 {
			e.fail(ProtocolError, "UNSUBACK without a reason code")
		}
		for _, c := range u.Codes {
			if !validUnsubackCode(c) {
				e.fail(ProtocolError, "UNSUBACK code 0x%02X is not an MQTT 5 one", byte(c))
			}
		}
		u.Properties.check(inUnsuback, "UNSUBACK", &e)
		n += u.Properties.blockSize() + len(u.Codes)
	}
	if e.err != nil {
		return dst, e.err
	}
	dst, err := appendHeader(dst, byte(TypeUnsuback)<<4, n)
	if err != nil {
		return dst, err
	}
	dst = appendU16(dst, u.PacketID)
	if v == V5 {
		dst = u.Properties.appendTo(dst)
		for _, c := range u.Codes {
			dst = append(dst, byte(c))
		}
	}
	return dst, nil
}

func (u *Unsuback) decode(header byte, body []byte, v Version) error {
	*u = Unsuback{}
	if err := checkFlags(header, 0); err != nil {
		return err
	}
	r := newRd(body, len(body))
	u.PacketID = r.u16("packet identifier")
	if v != V5 {
		r.end("UNSUBACK")
		return r.err
	}
	r.readProps(&u.Properties, inUnsuback, "UNSUBACK")
	if r.err != nil {
		return r.err
	}
	codes := r.rest()
	if len(codes) == 0 {
		return errorf(ProtocolError, "UNSUBACK without a reason code")
	}
	u.Codes = make([]ReasonCode, len(codes))
	for i, c := range codes {
		if !validUnsubackCode(ReasonCode(c)) {
			return errorf(ProtocolError, "UNSUBACK code 0x%02X is not an MQTT 5 one", c)
		}
		u.Codes[i] = ReasonCode(c)
	}
	return nil
}
