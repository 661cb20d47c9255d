package packet

// Connect is the CONNECT packet [MQTT-3.1].
type Connect struct {
	// ProtocolName is "MQTT" (3.1.1, 5) or "MQIsdp" (3.1). Left empty when
	// encoding, it follows Version.
	ProtocolName string
	// Version is the protocol level. Left zero when encoding, the version
	// passed to Append is used.
	Version     Version
	CleanStart  bool // "clean session" in 3.1 and 3.1.1
	KeepAlive   uint16
	Properties  Properties
	ClientID    string
	Will        *Will // nil: no will
	HasUsername bool
	Username    string
	HasPassword bool
	Password    []byte
}

// Will is the will message of a CONNECT.
type Will struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties Properties // MQTT 5 will properties
}

// Type implements Packet.
func (*Connect) Type() Type { return TypeConnect }

func protocolName(v Version) string {
	if v == V31 {
		return "MQIsdp"
	}
	return "MQTT"
}

// Append implements Packet.
func (c *Connect) Append(dst []byte, v Version) ([]byte, error) {
	if c.Version != 0 {
		v = c.Version
	}
	name := c.ProtocolName
	if name == "" {
		name = protocolName(v)
	}
	var e encErr
	e.str("protocol name", name)
	e.str("client identifier", c.ClientID)
	if c.HasUsername {
		e.str("user name", c.Username)
	}
	if c.HasPassword {
		e.bin("password", c.Password)
		if v != V5 && !c.HasUsername {
			// [MQTT-3.1.2-22] (3.1.1): no password without a user name.
			e.fail(MalformedPacket, "a password without a user name needs MQTT 5")
		}
	}
	n := 2 + len(name) + 1 + 1 + 2 + 2 + len(c.ClientID)
	if v == V5 {
		c.Properties.check(inConnect, "CONNECT", &e)
		n += c.Properties.blockSize()
	}
	flags := byte(0)
	if c.CleanStart {
		flags |= 0x02
	}
	if w := c.Will; w != nil {
		e.str("will topic", w.Topic)
		e.bin("will payload", w.Payload)
		if w.QoS > 2 {
			// [MQTT-3.1.2-12] will QoS 3 is not allowed.
			e.fail(MalformedPacket, "will QoS %d; it may be 0, 1 or 2", w.QoS)
		}
		flags |= 0x04 | w.QoS<<3
		if w.Retain {
			flags |= 0x20
		}
		if v == V5 {
			w.Properties.check(inWill, "the will", &e)
			n += w.Properties.blockSize()
		}
		n += 2 + len(w.Topic) + 2 + len(w.Payload)
	}
	if c.HasUsername {
		flags |= 0x80
		n += 2 + len(c.Username)
	}
	if c.HasPassword {
		flags |= 0x40
		n += 2 + len(c.Password)
	}
	if e.err != nil {
		return dst, e.err
	}
	dst, err := appendHeader(dst, byte(TypeConnect)<<4, n)
	if err != nil {
		return dst, err
	}
	dst = appendStr(dst, name)
	dst = append(dst, byte(v), flags)
	dst = appendU16(dst, c.KeepAlive)
	if v == V5 {
		dst = c.Properties.appendTo(dst)
	}
	dst = appendStr(dst, c.ClientID)
	if w := c.Will; w != nil {
		if v == V5 {
			dst = w.Properties.appendTo(dst)
		}
		dst = appendStr(dst, w.Topic)
		dst = appendBin(dst, w.Payload)
	}
	if c.HasUsername {
		dst = appendStr(dst, c.Username)
	}
	if c.HasPassword {
		dst = appendBin(dst, c.Password)
	}
	return dst, nil
}

func (c *Connect) decode(header byte, body []byte, _ Version) error {
	*c = Connect{}
	if err := checkFlags(header, 0); err != nil {
		return err
	}
	// No shared string conversion for CONNECT: it would hold the
	// password, and every string a server keeps from CONNECT (the client
	// id, the user name) would keep it alive for the whole connection.
	// Each string is converted on its own; CONNECT comes once.
	r := newRd(body, 0)
	c.ProtocolName = r.str("protocol name")
	c.Version = Version(r.u8("protocol level"))
	if r.err != nil {
		return r.err
	}
	// [MQTT-3.1.2-1] the protocol name must be "MQTT" (3.1.1, 5) or
	// "MQIsdp" (3.1); [MQTT-3.1.2-2] a level the server does not support is
	// answered with "unsupported protocol version" (3.1.1: return code 1).
	switch {
	case c.ProtocolName == "MQTT" && (c.Version == V311 || c.Version == V5):
	case c.ProtocolName == "MQIsdp" && c.Version == V31:
	default:
		return errorf(UnsupportedProtocolVersion, "protocol %q level %d is not MQTT 3.1, 3.1.1 or 5", c.ProtocolName, byte(c.Version))
	}
	v := c.Version
	flags := r.u8("connect flags")
	c.KeepAlive = r.u16("keep alive")
	if r.err != nil {
		return r.err
	}
	// [MQTT-3.1.2-3] the reserved flag must be 0.
	if flags&0x01 != 0 {
		return errorf(MalformedPacket, "CONNECT reserved flag is set")
	}
	c.CleanStart = flags&0x02 != 0
	willFlag := flags&0x04 != 0
	willQoS := flags >> 3 & 3
	willRetain := flags&0x20 != 0
	c.HasPassword = flags&0x40 != 0
	c.HasUsername = flags&0x80 != 0
	if !willFlag && (willQoS != 0 || willRetain) {
		// [MQTT-3.1.2-11] [MQTT-3.1.2-13] without a will, will QoS and
		// will retain are 0.
		return errorf(MalformedPacket, "CONNECT sets will QoS or will retain without a will")
	}
	if willQoS == 3 {
		// [MQTT-3.1.2-12] will QoS 3 is malformed.
		return errorf(MalformedPacket, "CONNECT will QoS is 3")
	}
	if v != V5 && c.HasPassword && !c.HasUsername {
		// [MQTT-3.1.2-22] (3.1.1) a password flag without the user name
		// flag is not allowed; MQTT 5 lifted the rule.
		return errorf(MalformedPacket, "CONNECT has a password but no user name")
	}
	if v == V5 {
		r.readProps(&c.Properties, inConnect, "CONNECT")
		if r.err == nil && len(c.Properties.AuthData) > 0 && !c.Properties.Has(PropAuthMethod) {
			// 3.1.2.11.10: authentication data without a method is a
			// protocol error.
			return errorf(ProtocolError, "CONNECT has authentication data but no authentication method")
		}
	}
	// [MQTT-3.1.3-3] the client identifier is the first field of the payload.
	c.ClientID = r.str("client identifier")
	if willFlag {
		w := &Will{QoS: willQoS, Retain: willRetain}
		if v == V5 {
			r.readProps(&w.Properties, inWill, "the will")
		}
		// [MQTT-3.1.3-11] the will topic is a UTF-8 string.
		w.Topic = r.str("will topic")
		w.Payload = r.bin("will payload")
		c.Will = w
	}
	if c.HasUsername {
		// [MQTT-3.1.3-12] the user name is a UTF-8 string.
		c.Username = r.str("user name")
	}
	if c.HasPassword {
		c.Password = r.bin("password")
	}
	r.end("CONNECT payload")
	return r.err
}

// Connack is the CONNACK packet [MQTT-3.2]. For 3.1 and 3.1.1, Code is the
// return code (ConnAccepted, ConnRefused…).
type Connack struct {
	SessionPresent bool
	Code           ReasonCode
	Properties     Properties
}

// Type implements Packet.
func (*Connack) Type() Type { return TypeConnack }

// Append implements Packet. MQTT 3.1 has no session-present flag, so it is
// never sent to a 3.1 client.
func (c *Connack) Append(dst []byte, v Version) ([]byte, error) {
	var e encErr
	n := 2
	if v == V5 {
		c.Properties.check(inConnack, "CONNACK", &e)
		n += c.Properties.blockSize()
	}
	if e.err != nil {
		return dst, e.err
	}
	dst, err := appendHeader(dst, byte(TypeConnack)<<4, n)
	if err != nil {
		return dst, err
	}
	flags := byte(0)
	// [MQTT-3.2.2-6] a refusal never says a session is present.
	if c.SessionPresent && v != V31 && c.Code == Success {
		flags = 1
	}
	dst = append(dst, flags, byte(c.Code))
	if v == V5 {
		dst = c.Properties.appendTo(dst)
	}
	return dst, nil
}

func (c *Connack) decode(header byte, body []byte, v Version) error {
	*c = Connack{}
	if err := checkFlags(header, 0); err != nil {
		return err
	}
	r := newRd(body, len(body))
	flags := r.u8("acknowledge flags")
	c.Code = ReasonCode(r.u8("reason code"))
	if r.err != nil {
		return r.err
	}
	if flags&0xfe != 0 && v != V31 {
		// [MQTT-3.2.2-1] bits 7-1 of the acknowledge flags are reserved.
		return errorf(MalformedPacket, "CONNACK reserved flags set (0x%02x)", flags)
	}
	c.SessionPresent = flags&1 != 0 && v != V31
	if v == V5 {
		if c.SessionPresent && c.Code != Success {
			// [MQTT-3.2.2-6] a refusal must not say a session is present.
			return errorf(ProtocolError, "CONNACK refuses (0x%02X) yet says a session is present", byte(c.Code))
		}
		r.readProps(&c.Properties, inConnack, "CONNACK")
	}
	r.end("CONNACK")
	return r.err
}
