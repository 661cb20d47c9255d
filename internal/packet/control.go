package packet

// Pingreq is the PINGREQ packet [MQTT-3.12].
type Pingreq struct{}

// Pingresp is the PINGRESP packet [MQTT-3.13].
type Pingresp struct{}

// Type implements Packet.
func (*Pingreq) Type() Type { return TypePingreq }

// Type implements Packet.
func (*Pingresp) Type() Type { return TypePingresp }

// Append implements Packet.
func (*Pingreq) Append(dst []byte, _ Version) ([]byte, error) {
	return append(dst, byte(TypePingreq)<<4, 0), nil
}

// Append implements Packet.
func (*Pingresp) Append(dst []byte, _ Version) ([]byte, error) {
	return append(dst, byte(TypePingresp)<<4, 0), nil
}

func decodeEmpty(header byte, body []byte) error {
	if err := checkFlags(header, 0); err != nil {
		return err
	}
	if len(body) != 0 {
		return errorf(MalformedPacket, "%s with a %d-byte body; it has none", Type(header>>4), len(body))
	}
	return nil
}

func (*Pingreq) decode(header byte, body []byte, _ Version) error {
	return decodeEmpty(header, body)
}

func (*Pingresp) decode(header byte, body []byte, _ Version) error {
	return decodeEmpty(header, body)
}

func validDisconnectCode(c ReasonCode) bool {
	switch c {
	case Success, DisconnectWithWill, UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, NotAuthorized, ServerBusy, ServerShuttingDown,
		KeepAliveTimeout, SessionTakenOver, TopicFilterInvalid, TopicNameInvalid,
		ReceiveMaximumExceeded, TopicAliasInvalid, PacketTooLarge, MessageRateTooHigh,
		QuotaExceeded, AdministrativeAction, PayloadFormatInvalid, RetainNotSupported,
		QoSNotSupported, UseAnotherServer, ServerMoved, SharedSubscriptionsNotSupported,
		ConnectionRateExceeded, MaximumConnectTime, SubscriptionIdentifiersNotSupported,
		WildcardSubscriptionsNotSupported:
		return true
	}
	return false
}

// Disconnect is the DISCONNECT packet [MQTT-3.14]. Before MQTT 5 it has no
// body.
type Disconnect struct {
	Code       ReasonCode
	Properties Properties
}

// Type implements Packet.
func (*Disconnect) Type() Type { return TypeDisconnect }

// Append implements Packet. Like acks, it takes the shortest form
// (3.14.2.1).
func (d *Disconnect) Append(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		if d.Code != Success {
			return dst, errorf(ProtocolError, "DISCONNECT has no reason code before MQTT 5")
		}
		return append(dst, byte(TypeDisconnect)<<4, 0), nil
	}
	var e encErr
	if !validDisconnectCode(d.Code) {
		e.fail(ProtocolError, "DISCONNECT cannot carry reason code 0x%02X", byte(d.Code))
	}
	d.Properties.check(inDisconnect, "DISCONNECT", &e)
	if e.err != nil {
		return dst, e.err
	}
	n := 0
	switch {
	case !d.Properties.Empty():
		n = 1 + d.Properties.blockSize()
	case d.Code != Success:
		n = 1
	}
	dst, err := appendHeader(dst, byte(TypeDisconnect)<<4, n)
	if err != nil {
		return dst, err
	}
	if n > 0 {
		dst = append(dst, byte(d.Code))
	}
	if n > 1 {
		dst = d.Properties.appendTo(dst)
	}
	return dst, nil
}

func (d *Disconnect) decode(header byte, body []byte, v Version) error {
	*d = Disconnect{}
	if v != V5 {
		// 3.14.1 (3.1.1): flags 0000 and no body.
		return decodeEmpty(header, body)
	}
	if err := checkFlags(header, 0); err != nil {
		return err
	}
	if len(body) == 0 {
		return nil // 3.14.2.1: no reason code means normal disconnection
	}
	r := newRd(body, len(body))
	d.Code = ReasonCode(r.u8("reason code"))
	if !validDisconnectCode(d.Code) {
		return errorf(ProtocolError, "DISCONNECT with reason code 0x%02X, which it cannot carry", byte(d.Code))
	}
	if r.left() > 0 {
		r.readProps(&d.Properties, inDisconnect, "DISCONNECT")
	}
	r.end("DISCONNECT")
	return r.err
}

// Auth is the MQTT 5 AUTH packet [MQTT-3.15].
type Auth struct {
	Code       ReasonCode // Success, ContinueAuthentication or ReAuthenticate
	Properties Properties
}

// Type implements Packet.
func (*Auth) Type() Type { return TypeAuth }

func validAuthCode(c ReasonCode) bool {
	return c == Success || c == ContinueAuthentication || c == ReAuthenticate
}

// Append implements Packet.
func (a *Auth) Append(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		return dst, errorf(ProtocolError, "AUTH needs MQTT 5")
	}
	var e encErr
	if !validAuthCode(a.Code) {
		// [MQTT-3.15.2-1] AUTH carries one of three codes.
		e.fail(ProtocolError, "AUTH cannot carry reason code 0x%02X", byte(a.Code))
	}
	a.Properties.check(inAuth, "AUTH", &e)
	if e.err != nil {
		return dst, e.err
	}
	n := 0
	if a.Code != Success || !a.Properties.Empty() {
		n = 1 + a.Properties.blockSize()
	}
	dst, err := appendHeader(dst, byte(TypeAuth)<<4, n)
	if err != nil {
		return dst, err
	}
	if n > 0 {
		dst = append(dst, byte(a.Code))
		dst = a.Properties.appendTo(dst)
	}
	return dst, nil
}

func (a *Auth) decode(header byte, body []byte, v Version) error {
	*a = Auth{}
	if v != V5 {
		// [MQTT-2.2.1-?] (3.1.1 table 2.1): type 15 is reserved before MQTT 5.
		return errorf(MalformedPacket, "packet type 15 (AUTH) exists only in MQTT 5")
	}
	// [MQTT-3.15.1-1] AUTH's flags are 0000.
	if err := checkFlags(header, 0); err != nil {
		return err
	}
	if len(body) == 0 {
		return nil // 3.15.2.1: no reason code means success
	}
	r := newRd(body, len(body))
	a.Code = ReasonCode(r.u8("reason code"))
	if !validAuthCode(a.Code) {
		// [MQTT-3.15.2-1]
		return errorf(ProtocolError, "AUTH with reason code 0x%02X, which it cannot carry", byte(a.Code))
	}
	if r.left() > 0 {
		r.readProps(&a.Properties, inAuth, "AUTH")
	}
	r.end("AUTH")
	return r.err
}
