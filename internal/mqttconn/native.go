package mqttconn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/packet"
)

// nativeClient is a Client on mqtk's own codec (internal/packet) for MQTT
// 3.1, 3.1.1 and 5. One goroutine reads; publishers write from their own
// goroutines under one lock, so a message costs no hand-over between
// goroutines and no allocation beyond its packet. bench dials it: with
// the library clients the load generator needed more CPU per message than
// the broker it measured, and on a machine the two share that decided
// the result (BENCHMARKS.md, "A generator that does not limit the
// broker").
//
// It speaks what a benchmark and a script need: PUBLISH, SUBSCRIBE and
// UNSUBSCRIBE at every QoS, the broker's Receive Maximum, Maximum QoS,
// Maximum Packet Size and Server Keep Alive, topic aliases both ways,
// keep alive, and -D properties. Enhanced authentication (an AUTH
// exchange) it does not: Dial uses a library client for such a config.
type nativeClient struct {
	cfg Config
	w   *watchConn
	v   packet.Version

	// slots holds one token per QoS 1 or 2 PUBLISH awaiting its final
	// acknowledgement: the broker's Receive Maximum [MQTT-4.9.0-2].
	slots chan struct{}

	wmu     sync.Mutex // one writer at a time; guards what follows
	wbuf    []byte
	nextID  uint16
	pending map[uint16]*nativeOp // by packet id [MQTT-2.2.1-3]
	// order holds every publish whose done has not been called, in the
	// order written: QoS 1 and 2 complete in different orders, and
	// callers count on results in publish order.
	order      []*nativeOp
	delivering bool              // a goroutine is calling done callbacks
	aliases    map[uint16]string // outgoing topic aliases the broker has seen
	wrote      atomic.Int64      // when the last packet was written (UnixNano)

	// Owned by the reading goroutine.
	rd        *packet.Reader
	inAliases map[uint16]string
	inQoS2    map[uint16]struct{} // PUBREC sent, PUBREL not yet received
	acks      []byte              // acknowledgements written once the input is drained
	ackCount  int64

	keepAlive time.Duration
	pingSent  atomic.Int64 // when the outstanding PINGREQ went out; 0 when none
	keepTimer *time.Timer

	quit     chan struct{} // closed when the client starts to end
	readDone chan struct{}

	lifecycle
}

// nativeOp is a packet awaiting its answer: a QoS 1 or 2 PUBLISH (done),
// or a SUBSCRIBE or UNSUBSCRIBE (reply).
type nativeOp struct {
	m     *Message
	done  func(error)
	reply chan packet.Packet

	finished bool // under wmu: err is the outcome, done not yet called
	err      error
}

// v3NativeInFlight bounds this client's QoS 1 and 2 publishes in flight
// when the broker announces no limit (3.1 and 3.1.1 cannot).
const v3NativeInFlight = v3InFlight

func dialNative(ctx context.Context, cfg Config, id string) (Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	w, err := openConn(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	v := packet.Version(cfg.Version)
	c := &nativeClient{
		cfg:      cfg,
		w:        w,
		v:        v,
		pending:  map[uint16]*nativeOp{},
		rd:       packet.NewReader(w, 0),
		quit:     make(chan struct{}),
		readDone: make(chan struct{}),
	}
	c.initLifecycle()
	cp, err := c.connectPacket(id)
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	ca, err := c.handshake(ctx, cp)
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	_ = w.SetDeadline(time.Time{})
	c.info = Info{
		Version:         cfg.Version,
		ClientID:        id,
		SessionPresent:  ca.SessionPresent,
		MaximumQoS:      2,
		RetainAvailable: true,
		Addr:            cfg.Addr(),
	}
	inFlight := v3NativeInFlight
	c.keepAlive = cfg.KeepAlive
	if v == packet.V5 {
		p := &ca.Properties
		if p.AssignedClientID != "" {
			c.info.ClientID = p.AssignedClientID
		}
		inFlight = 65535
		if p.Has(packet.PropReceiveMaximum) {
			c.info.ReceiveMaximum = p.ReceiveMaximum
			inFlight = int(p.ReceiveMaximum)
		}
		if p.Has(packet.PropMaximumPacketSize) {
			c.info.MaximumPacketSize = p.MaximumPacketSize
		}
		if p.Has(packet.PropMaximumQoS) {
			c.info.MaximumQoS = p.MaximumQoS
		}
		if p.Has(packet.PropRetainAvailable) {
			c.info.RetainAvailable = p.RetainAvailable != 0
		}
		c.info.TopicAliasMaximum = p.TopicAliasMaximum
		if p.Has(packet.PropServerKeepAlive) {
			// [MQTT-3.2.2-21] the server's keep alive replaces ours.
			c.info.ServerKeepAlive = time.Duration(p.ServerKeepAlive) * time.Second
			c.keepAlive = c.info.ServerKeepAlive
		}
		c.info.ServerReference = p.ServerReference
		c.info.ResponseInfo = p.ResponseInfo
	}
	c.slots = make(chan struct{}, inFlight)
	c.wrote.Store(time.Now().UnixNano())
	if c.keepAlive > 0 {
		c.keepTimer = time.AfterFunc(c.keepAlive, c.keepAliveTick)
	}
	go c.read()
	return c, nil
}

// connectPacket is the CONNECT for cfg: as the library clients send it,
// with mqtk's receive maximum and what -D connect and -x asked for.
func (c *nativeClient) connectPacket(id string) (*packet.Connect, error) {
	cfg := &c.cfg
	cp := &packet.Connect{
		ClientID:    id,
		CleanStart:  !cfg.NoClean, // [MQTT-3.1.2-4]
		KeepAlive:   uint16(cfg.KeepAlive / time.Second),
		HasUsername: cfg.Username != "",
		Username:    cfg.Username,
		HasPassword: cfg.Password != "",
		Password:    []byte(cfg.Password),
	}
	if w := cfg.Will; w != nil {
		cp.Will = &packet.Will{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain}
		if c.v == packet.V5 {
			cp.Will.Properties = w.packetProps()
		}
	}
	if c.v != packet.V5 {
		return cp, nil
	}
	pp, p := &cfg.Props, &cp.Properties
	p.ReceiveMaximum = v5ReceiveMaximum // [MQTT-3.3.4-9] what the broker may have in flight to us
	if pp.ReceiveMaximum != nil {
		p.ReceiveMaximum = *pp.ReceiveMaximum
	}
	p.Mark(packet.PropReceiveMaximum)
	if se := sessionExpiry(cfg); se != 0 {
		p.SessionExpiry = se
		p.Mark(packet.PropSessionExpiry)
	}
	if pp.MaximumPacketSize != nil {
		p.MaximumPacketSize = *pp.MaximumPacketSize
		p.Mark(packet.PropMaximumPacketSize)
	}
	if pp.TopicAliasMaximum != nil {
		p.TopicAliasMaximum = *pp.TopicAliasMaximum
		p.Mark(packet.PropTopicAliasMaximum)
	}
	if pp.RequestResponseInfo != nil {
		p.RequestResponseInfo = *pp.RequestResponseInfo
		p.Mark(packet.PropRequestResponseInfo)
	}
	if pp.RequestProblemInfo != nil {
		p.RequestProblemInfo = *pp.RequestProblemInfo
		p.Mark(packet.PropRequestProblemInfo)
	}
	p.User = packetUser(pp.ConnectUser)
	if pp.MaximumPacketSize != nil {
		c.rd.SetMaxPacketSize(int(*pp.MaximumPacketSize))
	}
	return cp, nil
}

// handshake sends CONNECT and reads CONNACK, within ctx's deadline (set on
// the connection by openConn).
func (c *nativeClient) handshake(ctx context.Context, cp *packet.Connect) (*packet.Connack, error) {
	cfg := &c.cfg
	b, err := cp.Append(nil, c.v)
	if err != nil {
		return nil, clierr.Usagef("cannot encode CONNECT: %v", err)
	}
	// A cancelled ctx (Ctrl-C) cuts the wait short.
	stop := context.AfterFunc(ctx, func() { _ = c.w.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.w.Write(b); err != nil {
		return nil, diagnose(cfg, c.ctxCause(ctx, err), c.w, c.w.st)
	}
	h, body, err := c.rd.Next(nil)
	if err != nil {
		return nil, diagnose(cfg, c.ctxCause(ctx, err), c.w, c.w.st)
	}
	if packet.Type(h>>4) != packet.TypeConnack {
		return nil, diagnose(cfg, fmt.Errorf("the broker answered CONNECT with %s, not CONNACK", packet.Type(h>>4)), c.w, c.w.st)
	}
	p, err := packet.Decode(h, body, c.v)
	if err != nil {
		if c.v == packet.V5 && len(body) == 2 && body[1] != 0 {
			// A broker that knows only 3.1.1 refuses level 5 with a
			// two-byte CONNACK.
			return nil, refusedV311(cfg, body[1])
		}
		return nil, diagnose(cfg, fmt.Errorf("malformed CONNACK: %w", err), c.w, c.w.st)
	}
	ca := p.(*packet.Connack)
	switch {
	case c.v == packet.V5 && ca.Code >= 0x80:
		return nil, refused(cfg, byte(ca.Code), ca.Properties.ReasonString)
	case c.v != packet.V5 && ca.Code != 0:
		code, ok := v3Reasons[byte(ca.Code)]
		if !ok {
			code = 0x80
		}
		return nil, refused(cfg, code, "")
	}
	return ca, nil
}

// ctxCause says a connection step failed because ctx ended, when it did.
func (c *nativeClient) ctxCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// packetProps are w's MQTT 5 will properties as the codec writes them.
func (w *Will) packetProps() packet.Properties {
	var p packet.Properties
	if w.DelayInterval != nil {
		p.WillDelay = *w.DelayInterval
		p.Mark(packet.PropWillDelay)
	}
	setMessageProps(&p, w.PayloadFormat, w.MessageExpiry, w.ContentType, w.ResponseTopic, w.CorrelationData, w.UserProperties)
	return p
}

// setMessageProps sets the properties a will and a PUBLISH have in
// common; nil and empty values stay out.
func setMessageProps(p *packet.Properties, format *byte, expiry *uint32, contentType, responseTopic string, correlation []byte, user []UserProperty) {
	if format != nil {
		p.PayloadFormat = *format
		p.Mark(packet.PropPayloadFormat)
	}
	if expiry != nil {
		p.MessageExpiry = *expiry
		p.Mark(packet.PropMessageExpiry)
	}
	p.ContentType = contentType
	p.ResponseTopic = responseTopic
	if correlation != nil {
		p.CorrelationData = correlation
		p.Mark(packet.PropCorrelationData)
	}
	p.User = packetUser(user)
}

func packetUser(u []UserProperty) []packet.UserProperty {
	if len(u) == 0 {
		return nil
	}
	out := make([]packet.UserProperty, len(u))
	for i, p := range u {
		out[i] = packet.UserProperty{Key: p.Key, Value: p.Value}
	}
	return out
}

func (c *nativeClient) Publish(ctx context.Context, m *Message) error {
	return publishAndWait(ctx, c, m)
}

// checkPublish refuses what the broker said in CONNACK it does not take.
func (c *nativeClient) checkPublish(m *Message) error {
	op := "publish to " + m.Topic
	switch {
	case m.QoS > 2:
		return clierr.Usagef("qos %d out of range 0..2", m.QoS)
	case m.QoS > c.info.MaximumQoS:
		return &clierr.Error{Kind: clierr.KindRejected, Op: op, Reason: 0x9B,
			Err: fmt.Errorf("the broker's maximum qos is %d", c.info.MaximumQoS)}
	case m.TopicAlias > c.info.TopicAliasMaximum:
		// [MQTT-3.3.2-9] an alias above the broker's maximum is a
		// protocol error that would cost the whole connection.
		return &clierr.Error{Kind: clierr.KindRejected, Op: op, Reason: 0x94,
			Err: fmt.Errorf("topic alias %d is above the broker's maximum of %d", m.TopicAlias, c.info.TopicAliasMaximum)}
	case m.Retain && !c.info.RetainAvailable:
		return &clierr.Error{Kind: clierr.KindRejected, Op: op, Reason: 0x9A,
			Err: errors.New("the broker does not support retained messages")}
	}
	return nil
}

func (c *nativeClient) PublishAsync(ctx context.Context, m *Message, done func(error)) {
	if err := c.checkPublish(m); err != nil {
		done(err)
		return
	}
	if m.QoS > 0 {
		if err := c.takeSlot(ctx, c.slots, c.quit); err != nil {
			done(err)
			return
		}
	}
	if !c.enter() {
		c.release(m.QoS)
		done(c.closedErr())
		return
	}
	err := c.writePublish(m, done)
	c.leave()
	if err != nil {
		c.release(m.QoS)
		done(err)
		return
	}
	if m.QoS == 0 {
		c.deliver()
	}
}

// deliver calls the done callbacks of finished publishes, oldest first,
// stopping at the first one still waiting. One goroutine at a time does
// it; a callback may publish again.
func (c *nativeClient) deliver() {
	c.wmu.Lock()
	if c.delivering {
		c.wmu.Unlock()
		return
	}
	c.delivering = true
	for len(c.order) > 0 && c.order[0].finished {
		op := c.order[0]
		c.order[0] = nil
		c.order = c.order[1:]
		c.wmu.Unlock()
		op.done(op.err)
		c.wmu.Lock()
	}
	c.delivering = false
	c.wmu.Unlock()
}

// release gives back the in-flight slot a QoS 1 or 2 publish took.
func (c *nativeClient) release(qos byte) {
	if qos > 0 {
		<-c.slots
	}
}

// writePublish puts m on the wire and, for QoS 1 and 2, records it until
// its acknowledgement.
func (c *nativeClient) writePublish(m *Message, done func(error)) error {
	p := &packet.Publish{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Payload: m.Payload}
	if c.v == packet.V5 {
		setPublishProps(&p.Properties, m)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// Once the broker has seen what an alias stands for, the alias alone
	// names the topic (MQTT 5 section 3.3.2.3.4).
	alias := m.TopicAlias
	if alias != 0 && c.aliases[alias] == m.Topic {
		p.Topic = ""
	}
	if m.QoS > 0 {
		id, ok := c.allocID()
		if !ok {
			return &clierr.Error{Kind: clierr.KindOther, Op: "publish to " + m.Topic, Err: errors.New("all 65,535 packet identifiers are in use")}
		}
		p.PacketID = id
	}
	b, err := p.Append(c.wbuf[:0], c.v)
	if err != nil {
		return &clierr.Error{Kind: clierr.KindUsage, Op: "publish to " + m.Topic, Err: err}
	}
	c.wbuf = b
	if max := c.info.MaximumPacketSize; max > 0 && uint32(len(b)) > max {
		// [MQTT-3.1.2-25] nothing larger than the broker's maximum.
		return &clierr.Error{Kind: clierr.KindRejected, Op: "publish to " + m.Topic, Reason: 0x95,
			Err: fmt.Errorf("the message is %d bytes on the wire, over the broker's maximum packet size of %d", len(b), max)}
	}
	op := &nativeOp{m: m, done: done, finished: m.QoS == 0}
	if m.QoS > 0 {
		c.pending[p.PacketID] = op
	}
	if err := c.writeLocked(b); err != nil {
		delete(c.pending, p.PacketID)
		return err
	}
	c.order = append(c.order, op)
	if alias != 0 && p.Topic != "" {
		if c.aliases == nil {
			c.aliases = map[uint16]string{}
		}
		c.aliases[alias] = m.Topic
	}
	return nil
}

func setPublishProps(p *packet.Properties, m *Message) {
	setMessageProps(p, m.PayloadFormat, m.MessageExpiry, m.ContentType, m.ResponseTopic, m.CorrelationData, m.UserProperties)
	p.TopicAlias = m.TopicAlias
}

// allocID returns a packet identifier not in use, under wmu.
func (c *nativeClient) allocID() (uint16, bool) {
	for range 65535 {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1 // [MQTT-2.2.1-3] non-zero
		}
		if _, used := c.pending[c.nextID]; !used {
			return c.nextID, true
		}
	}
	return 0, false
}

// writeLocked writes whole packets, under wmu. A failed write ends the
// client: the stream may hold half a packet.
func (c *nativeClient) writeLocked(b []byte) error {
	if _, err := c.w.Write(b); err != nil {
		e := lost(&c.cfg, err)
		go c.end(e, true) // end takes wmu-free paths only, but not under our lock
		return e
	}
	c.wrote.Store(time.Now().UnixNano())
	return nil
}

func (c *nativeClient) Subscribe(ctx context.Context, subs []Subscription) ([]byte, error) {
	p := &packet.Subscribe{}
	for _, s := range subs {
		p.Subscriptions = append(p.Subscriptions, packet.Subscription{
			Filter: s.Filter, QoS: s.QoS, NoLocal: s.NoLocal,
			RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling,
		})
		if s.SubscriptionID != 0 && len(p.Properties.SubscriptionIDs) == 0 && c.v == packet.V5 {
			p.Properties.SubscriptionIDs = []uint32{uint32(s.SubscriptionID)}
		}
	}
	if c.v == packet.V5 {
		p.Properties.User = packetUser(c.cfg.Props.SubscribeUser)
	}
	r, err := c.request(ctx, "subscribe", func(id uint16) packet.Packet { p.PacketID = id; return p })
	if err != nil {
		return nil, err
	}
	sa, ok := r.(*packet.Suback)
	if !ok {
		return nil, &clierr.Error{Kind: clierr.KindNetwork, Op: "subscribe", Err: fmt.Errorf("the broker answered SUBSCRIBE with %s", r.Type())}
	}
	codes := make([]byte, len(sa.Codes))
	for i, rc := range sa.Codes {
		codes[i] = byte(rc)
	}
	return codes, nil
}

func (c *nativeClient) Unsubscribe(ctx context.Context, filters ...string) error {
	p := &packet.Unsubscribe{Filters: filters}
	if c.v == packet.V5 {
		p.Properties.User = packetUser(c.cfg.Props.UnsubscribeUser)
	}
	r, err := c.request(ctx, "unsubscribe", func(id uint16) packet.Packet { p.PacketID = id; return p })
	if err != nil {
		return err
	}
	ua, ok := r.(*packet.Unsuback)
	if !ok {
		return &clierr.Error{Kind: clierr.KindNetwork, Op: "unsubscribe", Err: fmt.Errorf("the broker answered UNSUBSCRIBE with %s", r.Type())}
	}
	for i, code := range ua.Codes {
		if code >= 0x80 && i < len(filters) {
			return &clierr.Error{Kind: clierr.KindRejected, Op: "unsubscribe from " + filters[i], Reason: byte(code),
				Err: fmt.Errorf("the broker refused: %s (0x%02X)", ReasonName(byte(code)), byte(code))}
		}
	}
	return nil
}

// request sends the packet make builds around a fresh packet identifier
// and waits for the answer with that identifier.
func (c *nativeClient) request(ctx context.Context, op string, build func(id uint16) packet.Packet) (packet.Packet, error) {
	if !c.enter() {
		return nil, c.closedErr()
	}
	reply := make(chan packet.Packet, 1)
	c.wmu.Lock()
	id, ok := c.allocID()
	var err error
	if !ok {
		err = &clierr.Error{Kind: clierr.KindOther, Op: op, Err: errors.New("all 65,535 packet identifiers are in use")}
	} else {
		var b []byte
		b, err = build(id).Append(c.wbuf[:0], c.v)
		if err != nil {
			err = &clierr.Error{Kind: clierr.KindUsage, Op: op, Err: err}
		} else {
			c.wbuf = b
			c.pending[id] = &nativeOp{reply: reply}
			if err = c.writeLocked(b); err != nil {
				delete(c.pending, id)
			}
		}
	}
	c.wmu.Unlock()
	c.leave()
	if err != nil {
		return nil, err
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		c.take(id)
		return nil, ctx.Err()
	case <-c.quit:
		return nil, c.closedErr()
	}
}

// take removes and returns the operation waiting on id.
func (c *nativeClient) take(id uint16) *nativeOp {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	op := c.pending[id]
	delete(c.pending, id)
	return op
}
