package mqttconn

// The reading side of nativeClient: incoming packets, acknowledgements
// both ways, keep alive, and the end of the connection.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/packet"
)

// keepPacket says which packets the reader hands on past the next read:
// their bodies must not be reused.
func keepPacket(h byte) bool {
	switch packet.Type(h >> 4) {
	case packet.TypePublish, packet.TypeSuback, packet.TypeUnsuback:
		return true
	}
	return false
}

// read handles incoming packets until the connection ends. The
// acknowledgements of a batch of PUBLISHes that arrived together go out
// in one write once the batch is handled.
func (c *nativeClient) read() {
	defer close(c.readDone)
	for {
		h, body, err := c.rd.Next(keepPacket)
		if err != nil {
			c.end(c.readErr(err), true)
			return
		}
		p, err := packet.Decode(h, body, c.v)
		if err == nil {
			err = c.handle(p)
		}
		if err != nil {
			c.protocolError(err)
			return
		}
		if len(c.acks) > 0 && !c.rd.Whole() {
			if err := c.flushAcks(); err != nil {
				return
			}
		}
	}
}

func (c *nativeClient) readErr(err error) error {
	select {
	case <-c.quit:
		return nil // we are closing
	default:
	}
	if errors.Is(err, io.EOF) {
		err = io.EOF
	}
	return lost(&c.cfg, err)
}

// protocolError ends the connection over a packet the broker should not
// have sent; MQTT 5 says why first [MQTT-4.13.2-1].
func (c *nativeClient) protocolError(err error) {
	code := packet.ProtocolError
	var pe *packet.Error
	if errors.As(err, &pe) {
		code = pe.Code
	}
	if c.v == packet.V5 {
		if b, e := (&packet.Disconnect{Code: code}).Append(nil, c.v); e == nil {
			c.wmu.Lock()
			_, _ = c.w.Write(b)
			c.wmu.Unlock()
		}
	}
	c.end(&clierr.Error{Kind: clierr.KindNetwork, Op: "connection to " + c.cfg.String(), Err: fmt.Errorf("protocol error from the broker: %w", err)}, true)
}

func (c *nativeClient) handle(p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		return c.received(p)
	case *packet.Ack:
		return c.acked(p)
	case *packet.Suback:
		c.answer(p.PacketID, p)
	case *packet.Unsuback:
		c.answer(p.PacketID, p)
	case *packet.Pingresp:
		c.pingSent.Store(0)
	case *packet.Disconnect:
		msg := fmt.Sprintf("the broker disconnected: %s (0x%02X)", ReasonName(byte(p.Code)), byte(p.Code))
		if p.Properties.ReasonString != "" {
			msg += ": " + p.Properties.ReasonString
		}
		c.end(&clierr.Error{Kind: clierr.KindNetwork, Op: "connection to " + c.cfg.String(), Err: errors.New(msg), Reason: byte(p.Code)}, true)
		return nil
	default:
		// CONNACK twice, AUTH unasked, or a packet only clients send.
		return &packet.Error{Code: packet.ProtocolError, Msg: fmt.Sprintf("unexpected %s", p.Type())}
	}
	return nil
}

func (c *nativeClient) answer(id uint16, p packet.Packet) {
	if op := c.take(id); op != nil && op.reply != nil {
		op.reply <- p
	}
}

// received delivers an incoming PUBLISH and queues its acknowledgement.
func (c *nativeClient) received(p *packet.Publish) error {
	topic := p.Topic
	if alias := p.Properties.TopicAlias; alias != 0 {
		// An alias with a topic sets it up, an empty topic uses it
		// [MQTT-3.3.2-12].
		if topic != "" {
			if c.inAliases == nil {
				c.inAliases = map[uint16]string{}
			}
			c.inAliases[alias] = topic
		} else if topic = c.inAliases[alias]; topic == "" {
			return &packet.Error{Code: packet.ProtocolError, Msg: fmt.Sprintf("topic alias %d was never set up", alias)}
		}
	}
	if p.QoS == 2 {
		if _, seen := c.inQoS2[p.PacketID]; seen {
			// A resend of a message already delivered: acknowledge it
			// again, deliver it once [MQTT-4.3.3-10].
			c.queueAck(packet.TypePubrec, p.PacketID)
			return nil
		}
	}
	// The acknowledgement is queued before the handler runs, so that a
	// Disconnect called meanwhile waits for it, and written after it
	// returns (read flushes the batch).
	switch p.QoS {
	case 1:
		c.queueAck(packet.TypePuback, p.PacketID)
	case 2:
		if c.inQoS2 == nil {
			c.inQoS2 = map[uint16]struct{}{}
		}
		c.inQoS2[p.PacketID] = struct{}{}
		c.queueAck(packet.TypePubrec, p.PacketID)
	}
	if h := c.cfg.OnMessage; h != nil {
		h(c.message(p, topic))
	}
	return nil
}

func (c *nativeClient) message(p *packet.Publish, topic string) *Message {
	m := &Message{Topic: topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Dup: p.Dup,
		PacketID: p.PacketID, Received: time.Now()}
	if c.v != packet.V5 {
		return m
	}
	pp := &p.Properties
	if pp.Has(packet.PropPayloadFormat) {
		f := pp.PayloadFormat
		m.PayloadFormat = &f
	}
	if pp.Has(packet.PropMessageExpiry) {
		e := pp.MessageExpiry
		m.MessageExpiry = &e
	}
	m.TopicAlias = pp.TopicAlias
	m.ResponseTopic = pp.ResponseTopic
	m.CorrelationData = pp.CorrelationData
	m.ContentType = pp.ContentType
	for _, u := range pp.User {
		m.UserProperties = append(m.UserProperties, UserProperty{Key: u.Key, Value: u.Value})
	}
	for _, id := range pp.SubscriptionIDs {
		m.SubscriptionIDs = append(m.SubscriptionIDs, int(id))
	}
	return m
}

// queueAck adds an acknowledgement to the batch read flushes; until then
// Disconnect waits for it (lifecycle.unacked).
func (c *nativeClient) queueAck(kind packet.Type, id uint16) {
	a := packet.Ack{Kind: kind, PacketID: id}
	if b, err := a.Append(c.acks, c.v); err == nil {
		c.acks = b
		c.ackCount++
		c.unacked.Add(1)
	}
}

func (c *nativeClient) flushAcks() error {
	c.wmu.Lock()
	err := c.writeLocked(c.acks)
	c.wmu.Unlock()
	c.unacked.Add(-c.ackCount)
	c.acks, c.ackCount = c.acks[:0], 0
	return err
}

// acked handles PUBACK, PUBREC, PUBREL and PUBCOMP.
func (c *nativeClient) acked(a *packet.Ack) error {
	switch a.Kind {
	case packet.TypePubrel:
		// [MQTT-4.3.3-11] PUBCOMP, also for an id we no longer know.
		delete(c.inQoS2, a.PacketID)
		c.queueAck(packet.TypePubcomp, a.PacketID)
		return nil
	case packet.TypePubrec:
		if a.Code < 0x80 {
			// [MQTT-4.3.3-3] PUBREL follows a successful PUBREC; the
			// message stays in flight until PUBCOMP.
			c.wmu.Lock()
			_, known := c.pending[a.PacketID]
			c.wmu.Unlock()
			rel := packet.Ack{Kind: packet.TypePubrel, PacketID: a.PacketID}
			if !known && c.v == packet.V5 {
				rel.Code = packet.PacketIdentifierNotFound
			}
			if b, err := rel.Append(c.acks, c.v); err == nil {
				c.acks = b
			}
			return nil
		}
	}
	c.wmu.Lock()
	op := c.pending[a.PacketID]
	if op == nil || op.done == nil {
		c.wmu.Unlock()
		return nil // an answer to what we gave up on, or a stray one
	}
	delete(c.pending, a.PacketID)
	op.finished, op.err = true, ackResult(op.m, byte(a.Code), a.Properties.ReasonString)
	c.wmu.Unlock()
	<-c.slots
	c.deliver()
	return nil
}

// ackResult is a publish's outcome from its acknowledgement's reason code.
func ackResult(m *Message, code byte, reasonString string) error {
	if code < 0x80 {
		return nil
	}
	msg := fmt.Sprintf("the broker refused the message: %s (0x%02X)", ReasonName(code), code)
	if reasonString != "" {
		msg += ": " + reasonString
	}
	return &clierr.Error{Kind: clierr.KindRejected, Op: "publish to " + m.Topic, Err: errors.New(msg), Reason: code}
}

// keepAliveTick sends PINGREQ when nothing was written for a keep-alive
// interval [MQTT-3.1.2-23], and ends the connection when the previous one
// went unanswered that long.
func (c *nativeClient) keepAliveTick() {
	select {
	case <-c.quit:
		return
	default:
	}
	now := time.Now()
	if sent := c.pingSent.Load(); sent != 0 && now.Sub(time.Unix(0, sent)) >= c.keepAlive {
		c.end(&clierr.Error{Kind: clierr.KindNetwork, Op: "connection to " + c.cfg.String(),
			Err: fmt.Errorf("no PINGRESP within the %s keep alive", c.keepAlive)}, true)
		_ = c.w.Close()
		return
	}
	next := c.keepAlive - now.Sub(time.Unix(0, c.wrote.Load()))
	if next <= 0 {
		// Marked before the write: a PINGRESP may be read before the
		// write returns, and must find the mark to clear.
		c.pingSent.CompareAndSwap(0, now.UnixNano())
		b, _ := (&packet.Pingreq{}).Append(nil, c.v)
		c.wmu.Lock()
		err := c.writeLocked(b)
		c.wmu.Unlock()
		if err != nil {
			return
		}
		next = c.keepAlive
	}
	c.keepTimer.Reset(next)
}

func (c *nativeClient) Disconnect(ctx context.Context) error {
	c.endOnce.Do(func() {
		c.markClosed(nil)
		close(c.quit)
		// [MQTT-3.14.4-1] DISCONNECT, then close, after the
		// acknowledgements of what was received.
		c.waitAcks(ackWait)
		d := &packet.Disconnect{}
		if c.v == packet.V5 {
			pp := &c.cfg.Props
			if pp.DisconnectSessionExpiry != nil {
				d.Properties.SessionExpiry = *pp.DisconnectSessionExpiry
				d.Properties.Mark(packet.PropSessionExpiry)
			}
			d.Properties.ReasonString = pp.DisconnectReason
			d.Properties.User = packetUser(pp.DisconnectUser)
		}
		if b, err := d.Append(nil, c.v); err == nil {
			c.wmu.Lock()
			_, _ = c.w.Write(b)
			c.wmu.Unlock()
		}
		go c.finish(nil, false)
	})
	return c.waitDone(ctx)
}

// end starts shutting the client down after the connection was lost or
// the broker broke the protocol.
func (c *nativeClient) end(err error, wasLost bool) {
	c.endOnce.Do(func() {
		c.markClosed(err)
		close(c.quit)
		go c.finish(err, wasLost)
	})
}

// finish closes the connection, fails what is still waiting for an
// acknowledgement, and reports the end.
func (c *nativeClient) finish(err error, wasLost bool) {
	if c.keepTimer != nil {
		c.keepTimer.Stop()
	}
	_ = c.w.Close()
	<-c.readDone
	// No publisher starts once closed is set; wait for those under way.
	c.mu.Lock()
	for c.senders > 0 {
		c.cond.Wait()
	}
	c.mu.Unlock()
	c.wmu.Lock()
	for id, op := range c.pending {
		delete(c.pending, id)
		if op.done == nil {
			continue // a SUBSCRIBE or UNSUBSCRIBE: its waiter watches quit
		}
		<-c.slots
		op.finished = true
		op.err = &clierr.Error{Kind: clierr.KindNetwork, Op: "publish to " + op.m.Topic,
			Err: errors.New("the connection ended before the broker acknowledged the message")}
	}
	c.wmu.Unlock()
	c.deliver()
	close(c.done)
	if wasLost && c.cfg.OnConnectionLost != nil {
		c.cfg.OnConnectionLost(err)
	}
}
