package engine

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/topic"
)

// errTakenOver ends a connection whose session another connection took
// [MQTT-3.1.4-3]; its will is not published.
var errTakenOver = errors.New("session taken over by a new connection")

// errRefused ends a connection whose CONNECT was refused.
var errRefused = errors.New("connection refused")

// handshake reads CONNECT and answers it. On success the connection has
// its session and CONNACK is queued.
func (c *conn) handshake() error {
	h, body, err := c.rd.Next(func(byte) bool { return true })
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no CONNECT within %s", c.s.cfg.ConnectTimeout)
		}
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return err
	}
	if packet.Type(h>>4) != packet.TypeConnect {
		// [MQTT-3.1.0-1] the first packet must be CONNECT; anything else
		// closes the connection.
		return fmt.Errorf("first packet was %s, not CONNECT", packet.Type(h>>4))
	}
	var cn packet.Connect
	if err := packet.DecodeInto(&cn, h, body, 0); err != nil {
		return c.badConnect(&cn, err)
	}
	c.setVersion(cn.Version)
	c.info.Version = cn.Version
	if code := c.checkConnect(&cn); code != packet.Success {
		return c.refuse(code)
	}
	return c.accept(&cn)
}

// badConnect answers a CONNECT the codec refused.
func (c *conn) badConnect(cn *packet.Connect, err error) error {
	code := packet.CodeOf(err)
	c.s.cfg.Logf("connection from %s refused: %v", c.info.Remote, err)
	switch {
	case code == packet.UnsupportedProtocolVersion && (cn.ProtocolName == "MQTT" || cn.ProtocolName == "MQIsdp"):
		// [MQTT-3.1.2-2] an unsupported level gets CONNACK 0x01 in the
		// 3.1.1 form, which every version can read (what mosquitto does),
		// then the connection closes.
		c.setVersion(packet.V311)
		c.closeWith(&packet.Connack{Code: packet.ConnRefusedProtocolVersion})
	case cn.Version == packet.V5 && cn.ProtocolName == "MQTT":
		// An MQTT 5 CONNECT that is malformed or breaks the protocol may
		// be answered with a CONNACK carrying the reason [MQTT-4.13.1-1].
		// One with another protocol name is not MQTT 5 at all
		// [MQTT-3.1.2-1]: it is closed, below.
		c.setVersion(packet.V5)
		c.closeWith(&packet.Connack{Code: code})
	}
	// [MQTT-3.1.2-1] a wrong protocol name, and 3.1/3.1.1 malformed
	// CONNECTs, close the connection without an answer.
	return fmt.Errorf("%w: %v", errRefused, err)
}

// checkConnect applies what the codec cannot know: identifier rules, the
// will topic, authentication and authorisation.
func (c *conn) checkConnect(cn *packet.Connect) packet.ReasonCode {
	cfg := &c.s.cfg
	switch {
	case cn.ClientID == "" && cn.Version == packet.V31:
		// MQTT 3.1 requires an identifier of 1 to 23 characters.
		return packet.ClientIdentifierNotValid
	case cn.ClientID == "" && cn.Version == packet.V311 && !cn.CleanStart:
		// [MQTT-3.1.3-8] an empty identifier needs a clean session.
		return packet.ClientIdentifierNotValid
	case cn.Version == packet.V31 && len(cn.ClientID) > 23:
		return packet.ClientIdentifierNotValid
	case len(cn.ClientID) > cfg.MaxClientIDLength:
		return packet.ClientIdentifierNotValid
	}
	if cn.Version == packet.V5 && cn.Properties.Has(packet.PropAuthMethod) {
		// [MQTT-4.12.0-1] no extended authentication method is supported.
		return packet.BadAuthenticationMethod
	}
	c.info.ID = cn.ClientID
	c.info.Username, c.info.HasUser = cn.Username, cn.HasUsername
	if code := cfg.Hooks.Authenticate(&c.info, cn.Password, cn.HasPassword); code != packet.Success {
		return code
	}
	if w := cn.Will; w != nil {
		// [MQTT-3.1.3-11] the will topic is a topic name; the will is
		// checked against the ACL now, when it could still be refused,
		// not when it is published.
		if err := topic.ValidateName(w.Topic); err != nil || c.checkTopic(w.Topic) != nil {
			return packet.TopicNameInvalid
		}
		if len(w.Topic) >= 4 && w.Topic[:4] == "$SYS" || !cfg.Hooks.MayPublish(&c.info, w.Topic, w.Retain) {
			return packet.NotAuthorized
		}
	}
	return packet.Success
}

// refuse answers a CONNECT with a refusal and closes the connection.
// Before MQTT 5 a CONNECT that breaks the protocol (a will topic with a
// wildcard) has no return code: it is closed without an answer
// [MQTT-3.1.4-1].
func (c *conn) refuse(code packet.ReasonCode) error {
	c.s.cfg.Logf("connection from %s (client %q) refused: %s", c.info.Remote, c.info.ID, code)
	switch {
	case c.version != packet.V5 && (code == packet.TopicNameInvalid || code == packet.MalformedPacket || code == packet.ProtocolError):
		c.closeWith(nil)
	default:
		c.closeWith(&packet.Connack{Code: c.connackCode(code)})
	}
	return fmt.Errorf("%w: %s", errRefused, code)
}

// connackCode maps an MQTT 5 reason to a 3.1/3.1.1 return code
// [MQTT-3.2.2-?]; 3.1.1 has no code above 5.
func (c *conn) connackCode(code packet.ReasonCode) packet.ReasonCode {
	if c.version == packet.V5 {
		return code
	}
	switch code {
	case packet.Success:
		return packet.ConnAccepted
	case packet.UnsupportedProtocolVersion:
		return packet.ConnRefusedProtocolVersion
	case packet.ClientIdentifierNotValid:
		return packet.ConnRefusedIdentifierRejected
	case packet.BadUserNameOrPassword:
		// mosquitto answers a failed login with "not authorized" in
		// 3.1.1 too, and clients written against it expect that.
		return packet.ConnRefusedNotAuthorized
	case packet.ServerUnavailable, packet.ServerBusy, packet.ServerShuttingDown:
		return packet.ConnRefusedServerUnavailable
	}
	return packet.ConnRefusedNotAuthorized
}

// accept sets up the session and sends CONNACK.
func (c *conn) accept(cn *packet.Connect) error {
	cfg := &c.s.cfg
	ack := &packet.Connack{}
	v5 := cn.Version == packet.V5
	if cn.ClientID == "" {
		// [MQTT-3.1.3-6] the server assigns an identifier, and tells an
		// MQTT 5 client [MQTT-3.2.2-16].
		c.info.ID = c.s.assignID()
		if v5 {
			ack.Properties.AssignedClientID = c.info.ID
		}
	}
	// Keep alive: a value over the broker's maximum is lowered, and an
	// MQTT 5 client is told the one in force [MQTT-3.2.2-21]. 3.1.1 has
	// no way to say so: mosquitto refuses such a client with "identifier
	// rejected", and so does the engine.
	if !v5 && cfg.MaxKeepalive < 65535 && (cn.KeepAlive > cfg.MaxKeepalive || cn.KeepAlive == 0) {
		return c.refuse(packet.ClientIdentifierNotValid)
	}
	c.keepAlive = cn.KeepAlive
	if c.keepAlive > cfg.MaxKeepalive || (c.keepAlive == 0 && cfg.MaxKeepalive < 65535 && v5) {
		c.keepAlive = cfg.MaxKeepalive
		if v5 {
			ack.Properties.ServerKeepAlive = c.keepAlive
			ack.Properties.Mark(packet.PropServerKeepAlive)
		}
	}
	expiry := uint32(0)
	switch {
	case v5:
		expiry = c.s.capExpiry(cn.Properties.SessionExpiry)
		if expiry != cn.Properties.SessionExpiry {
			ack.Properties.SessionExpiry = expiry
			ack.Properties.Mark(packet.PropSessionExpiry)
		}
	case !cn.CleanStart:
		expiry = c.s.capExpiry(0xFFFFFFFF)
	}
	c.recvMax = int(cfg.MaxInflight)
	c.problem = true
	if v5 {
		c.recvMax = 65535
		if cn.Properties.Has(packet.PropReceiveMaximum) {
			c.recvMax = int(cn.Properties.ReceiveMaximum) // [MQTT-3.3.4-9]
		}
		c.maxOut = cn.Properties.MaximumPacketSize
		c.aliasMax = min(cn.Properties.TopicAliasMaximum, cfg.TopicAliasOut)
		c.problem = !cn.Properties.Has(packet.PropRequestProblemInfo) || cn.Properties.RequestProblemInfo == 1
		if cfg.ReceiveMaximum < 65535 {
			// Absent means 65535 (3.2.2.3.3).
			ack.Properties.ReceiveMaximum = cfg.ReceiveMaximum
		}
		ack.Properties.MaximumPacketSize = cfg.MaxPacketSize
		ack.Properties.TopicAliasMaximum = cfg.TopicAliasMaximum
	}
	var will *Message
	var willDelay uint32
	if w := cn.Will; w != nil {
		will = &Message{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, From: c.info.ID}
		if v5 {
			will.Props = w.Properties
			willDelay = w.Properties.WillDelay
			will.Props.Delete(packet.PropWillDelay)
		}
	}

	s := c.s
	// Held until the session is attached, so that the end of a session
	// this CONNECT replaces or resumes cannot come in between.
	defer s.lockID(c.info.ID)()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return c.refuse(packet.ServerUnavailable)
	}
	old := s.sessions[c.info.ID]
	var takenWill *Message // the will of a connection this one takes over
	if cfg.MaxClients > 0 && (old == nil || !old.online()) && s.onlineLocked() >= cfg.MaxClients {
		s.mu.Unlock()
		// Server busy (3.1.1: server unavailable): the client may retry.
		return c.refuse(packet.ServerBusy)
	}
	if old != nil {
		old.mu.Lock()
		if old.owner.HasUser != c.info.HasUser || old.owner.Username != c.info.Username {
			// A session belongs to the user who made it: another user's
			// CONNECT with its client id must not take over its queue or
			// cut its connection.
			old.mu.Unlock()
			s.mu.Unlock()
			return c.refuse(packet.NotAuthorized)
		}
		if oc := old.c; oc != nil {
			// [MQTT-3.1.4-3] take-over: the existing connection is closed,
			// MQTT 5 clients told why. Its will is published as for any
			// connection that ends without DISCONNECT [MQTT-3.1.2-8]
			// (MQTT 5 3.1.4: "that Will Message is published as
			// described in section 3.1.2.5"): at once when its delay is
			// 0 or the session ends with the take-over (clean start, or
			// no session expiry); otherwise the new connection came
			// within the delay and the will is not sent. mosquitto does
			// the same.
			old.c = nil
			old.connected.Store(false)
			if old.will != nil && (old.willDelay == 0 || cn.CleanStart || old.expiry == 0) {
				takenWill = old.will
			}
			old.will = nil
			oc.takenOver()
		}
		if old.willTimer != nil {
			// A will waiting for its delay is cancelled by the new
			// connection (3.1.3.2.2).
			old.willTimer.Stop()
			old.willTimer = nil
			old.will = nil
		}
		if old.expireTimer != nil {
			old.expireTimer.Stop()
			old.expireTimer = nil
		}
		old.mu.Unlock()
	}
	resume := old != nil && !cn.CleanStart && !old.gone
	se := old
	if !resume {
		if old != nil {
			old.mu.Lock()
			old.gone = true
			old.inflight, old.queue = nil, nil
			old.mu.Unlock()
		}
		se = &session{s: s, id: c.info.ID, owner: c.info}
		s.sessions[c.info.ID] = se
	}
	wasStored := old != nil && old.expiry > 0
	se.mu.Lock()
	se.expiry = expiry
	se.will, se.willDelay = will, willDelay
	se.version = c.version
	rec := se.recordLocked()
	se.mu.Unlock()
	s.mu.Unlock()
	if takenWill != nil {
		takenWill.Created = s.now()
		if err := s.Publish(takenWill, true); err != nil {
			cfg.Logf("will of %q not published: %v", c.info.ID, err)
		}
	}
	if old != nil && !resume {
		// [MQTT-3.1.2-4] a clean start discards the old session's
		// subscriptions.
		s.router.subs.RemoveClient(c.info.ID)
	}
	if st := cfg.Store; st != nil {
		var ops []Op
		if wasStored && !resume {
			ops = append(ops, Op{Kind: DeleteSession, Client: c.info.ID})
		}
		if expiry > 0 {
			ops = append(ops, Op{Kind: PutSession, Client: c.info.ID, Session: rec})
		} else if wasStored && resume {
			ops = append(ops, Op{Kind: DeleteSession, Client: c.info.ID})
		}
		if len(ops) > 0 {
			if err := st.Apply(ops); err != nil {
				c.s.cfg.Logf("session of %q not stored: %v", c.info.ID, err)
				if !resume {
					s.mu.Lock()
					if s.sessions[c.info.ID] == se {
						delete(s.sessions, c.info.ID)
					}
					s.mu.Unlock()
				}
				return c.refuse(packet.ServerUnavailable)
			}
		}
	}
	c.se = se
	// [MQTT-3.2.2-2] session present when resumed; never on 3.1, which
	// has no such flag, and never with a clean start [MQTT-3.2.2-1].
	ack.SessionPresent = resume && cn.Version != packet.V31
	c.send(ack)
	c.s.count.connects.Add(1)
	se.attach(c)
	return nil
}

// onlineLocked counts connected sessions; called with s.mu held.
func (s *Server) onlineLocked() int {
	n := 0
	for _, se := range s.sessions {
		if se.online() {
			n++
		}
	}
	return n
}

// takenOver closes a connection whose session a new connection took.
func (c *conn) takenOver() {
	if c.versionLocked() == packet.V5 {
		c.closeWith(&packet.Disconnect{Code: packet.SessionTakenOver})
		return
	}
	// 3.1.1 has no DISCONNECT from the server: just close.
	c.closeWith(nil)
}
