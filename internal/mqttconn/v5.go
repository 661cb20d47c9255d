package mqttconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/mqtk/mqtk/internal/clierr"
)

// v5ReceiveMaximum is how many QoS 1 and 2 messages the broker may have
// in flight to us at once.
const v5ReceiveMaximum = 1024

// v5Client is the MQTT 5 Client on paho.golang. paho handles CONNECT,
// SUBSCRIBE, keepalive and the QoS 1/2 state machines; PUBLISH goes through
// our own single writer so that messages queued from one goroutine reach
// the wire in order while many are in flight (paho's Publish blocks for
// the acknowledgement, and its async mode gives no result).
type v5Client struct {
	cfg  Config
	pc   *paho.Client
	conn net.Conn // the thread-safe conn paho also writes to
	sess *state.State

	queue chan *pubReq  // PublishAsync → writer
	acks  chan *pubWait // writer → acker, in wire order
	quit  chan struct{} // closed when the client starts to end
	// quitCtx is cancelled together with closing quit.
	quitCtx    context.Context
	quitCancel context.CancelFunc
	wg         sync.WaitGroup // writer and acker

	// aliases is the topic each outgoing topic alias stands for on this
	// connection. Only the writer touches it: aliases are set up in wire
	// order, so the writer alone knows which ones the broker has seen.
	aliases map[uint16]string
	// inAliases is what the broker's topic aliases stand for. Only the
	// reader goroutine (received) touches it.
	inAliases map[uint16]string

	lifecycle
}

type pubReq struct {
	ctx  context.Context
	m    *Message
	done func(error)
}

// pubWait is one message on the wire waiting for its acknowledgement; ret
// is nil for QoS 0, whose result (err) is known once written.
type pubWait struct {
	m    *Message
	ret  chan packets.ControlPacket
	err  error
	done func(error)
}

func dialV5(ctx context.Context, cfg Config, id string) (Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	w, err := openConn(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Will != nil && willDropped(cfg.Will) {
		w.fixConnect = willPropsFix(cfg.Will)
	}
	c := &v5Client{
		cfg:   cfg,
		conn:  packets.NewThreadSafeConn(w),
		sess:  state.NewInMemory(),
		queue: make(chan *pubReq, 16),
		quit:  make(chan struct{}),
	}
	c.initLifecycle()
	c.quitCtx, c.quitCancel = context.WithCancel(context.Background())
	// paho's pinger counts from the zero time, so it sends a PINGREQ the
	// moment CONNACK arrives: one needless round trip for every
	// connection (10,000 of them in bench conn). The CONNECT exchange is
	// traffic, so the first ping is due one keepalive after it.
	pinger := paho.NewDefaultPinger()
	pinger.PacketSent()
	pinger.PacketReceived()
	c.pc = paho.NewClient(paho.ClientConfig{
		ClientID:          id,
		Conn:              c.conn,
		PingHandler:       pinger,
		Session:           ackCounting{State: c.sess, unacked: &c.unacked},
		PacketTimeout:     time.Minute,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){c.received},
		OnServerDisconnect: func(d *paho.Disconnect) {
			msg := fmt.Sprintf("the broker disconnected: %s (0x%02X)", ReasonName(d.ReasonCode), d.ReasonCode)
			if d.Properties != nil && d.Properties.ReasonString != "" {
				msg += ": " + d.Properties.ReasonString
			}
			c.end(&clierr.Error{Kind: clierr.KindNetwork, Op: "connection to " + cfg.String(), Err: errors.New(msg), Reason: d.ReasonCode}, true)
		},
		OnClientError: func(err error) { c.end(lost(&c.cfg, err), true) },
		AuthHandler:   authHandler(&cfg),
	})

	cp := &paho.Connect{
		ClientID:   id,
		CleanStart: !cfg.NoClean, // [MQTT-3.1.2-4]
		KeepAlive:  uint16(cfg.KeepAlive / time.Second),
	}
	cp.Properties = connectProps(&cfg)
	if cfg.Username != "" {
		cp.Username, cp.UsernameFlag = cfg.Username, true
	}
	if cfg.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(cfg.Password), true
	}
	if w := cfg.Will; w != nil {
		cp.WillMessage = &paho.WillMessage{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain}
		cp.WillProperties = &paho.WillProperties{
			WillDelayInterval: w.DelayInterval,
			PayloadFormat:     w.PayloadFormat,
			MessageExpiry:     w.MessageExpiry,
			ContentType:       w.ContentType,
			ResponseTopic:     w.ResponseTopic,
			CorrelationData:   w.CorrelationData,
			User:              pahoUser(w.UserProperties),
		}
	}
	ca, err := c.pc.Connect(ctx, cp)
	if err != nil {
		c.quitCancel()
		if ca != nil && ca.ReasonCode >= 0x80 {
			rs := ""
			if ca.Properties != nil {
				rs = ca.Properties.ReasonString
			}
			return nil, refused(&cfg, ca.ReasonCode, rs)
		}
		if rc, ok := w.connack311(); ok && rc != 0 {
			return nil, refusedV311(&cfg, rc)
		}
		if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			err = ctx.Err()
		}
		return nil, diagnose(&cfg, err, w, w.st)
	}
	_ = w.SetDeadline(time.Time{})

	c.info = Info{
		Version:         V5,
		ClientID:        id,
		SessionPresent:  ca.SessionPresent,
		MaximumQoS:      2,
		RetainAvailable: true,
		Addr:            cfg.Addr(),
	}
	if p := ca.Properties; p != nil {
		if p.AssignedClientID != "" {
			c.info.ClientID = p.AssignedClientID
		}
		if p.ReceiveMaximum != nil {
			c.info.ReceiveMaximum = *p.ReceiveMaximum
		}
		if p.MaximumPacketSize != nil {
			c.info.MaximumPacketSize = *p.MaximumPacketSize
		}
		if p.MaximumQoS != nil {
			c.info.MaximumQoS = *p.MaximumQoS
		}
		c.info.RetainAvailable = p.RetainAvailable
		if p.TopicAliasMaximum != nil {
			c.info.TopicAliasMaximum = *p.TopicAliasMaximum
		}
		if p.ServerKeepAlive != nil {
			c.info.ServerKeepAlive = time.Duration(*p.ServerKeepAlive) * time.Second
		}
		c.info.ServerReference = p.ServerReference
		c.info.ResponseInfo = p.ResponseInfo
	}
	// When the acker's queue is full the writer waits for the oldest
	// acknowledgement, which is already on its way: a small queue costs no
	// throughput and keeps idle connections cheap.
	c.acks = make(chan *pubWait, 256)
	c.wg.Add(2)
	go c.writer()
	go c.acker()
	return c, nil
}

// received hands one incoming PUBLISH to Config.OnMessage.
// ackCounting is paho's session state, counting the acknowledgements it
// writes for received messages (see lifecycle.unacked).
type ackCounting struct {
	*state.State
	unacked *atomic.Int64
}

func (s ackCounting) Ack(pb *packets.Publish) error {
	err := s.State.Ack(pb)
	if pb.QoS > 0 {
		s.unacked.Add(-1)
	}
	return err
}

func (c *v5Client) received(pr paho.PublishReceived) (bool, error) {
	if pr.Packet.QoS > 0 {
		c.unacked.Add(1) // paho acknowledges once the handlers return
	}
	if c.cfg.OnMessage == nil {
		return true, nil
	}
	p := pr.Packet
	topic := p.Topic
	if pp := p.Properties; pp != nil && pp.TopicAlias != nil {
		// Only with -D connect topic-alias-maximum may the broker send
		// aliases; paho leaves them to us. An alias with a topic sets it
		// up, an empty topic uses it [MQTT-3.3.2-12].
		if topic != "" {
			if c.inAliases == nil {
				c.inAliases = map[uint16]string{}
			}
			c.inAliases[*pp.TopicAlias] = topic
		} else {
			topic = c.inAliases[*pp.TopicAlias]
		}
	}
	m := &Message{
		Topic:    topic,
		Payload:  p.Payload,
		QoS:      p.QoS,
		Retain:   p.Retain,
		Dup:      p.Duplicate(),
		PacketID: p.PacketID,
		Received: time.Now(),
	}
	if pp := p.Properties; pp != nil {
		m.PayloadFormat = pp.PayloadFormat
		m.MessageExpiry = pp.MessageExpiry
		if pp.TopicAlias != nil {
			m.TopicAlias = *pp.TopicAlias
		}
		m.ResponseTopic = pp.ResponseTopic
		m.CorrelationData = pp.CorrelationData
		m.ContentType = pp.ContentType
		for _, u := range pp.User {
			m.UserProperties = append(m.UserProperties, UserProperty{Key: u.Key, Value: u.Value})
		}
		if pp.SubscriptionIdentifier != nil {
			m.SubscriptionIDs = []int{*pp.SubscriptionIdentifier}
		}
	}
	c.cfg.OnMessage(m)
	return true, nil
}

func (c *v5Client) Publish(ctx context.Context, m *Message) error {
	return publishAndWait(ctx, c, m)
}

func (c *v5Client) PublishAsync(ctx context.Context, m *Message, done func(error)) {
	if m.QoS > 2 {
		done(clierr.Usagef("qos %d out of range 0..2", m.QoS))
		return
	}
	if m.QoS > c.info.MaximumQoS {
		done(&clierr.Error{Kind: clierr.KindRejected, Op: "publish to " + m.Topic,
			Err: fmt.Errorf("the broker's maximum qos is %d", c.info.MaximumQoS), Reason: 0x9B})
		return
	}
	if m.TopicAlias > c.info.TopicAliasMaximum {
		// [MQTT-3.3.2-9] an alias above the broker's maximum is a protocol
		// error that would cost the whole connection.
		done(&clierr.Error{Kind: clierr.KindRejected, Op: "publish to " + m.Topic, Reason: 0x94,
			Err: fmt.Errorf("topic alias %d is above the broker's maximum of %d", m.TopicAlias, c.info.TopicAliasMaximum)})
		return
	}
	if m.Retain && !c.info.RetainAvailable {
		done(&clierr.Error{Kind: clierr.KindRejected, Op: "publish to " + m.Topic,
			Err: errors.New("the broker does not support retained messages"), Reason: 0x9A})
		return
	}
	if !c.enter() {
		done(c.closedErr())
		return
	}
	defer c.leave()
	select {
	case c.queue <- &pubReq{ctx: ctx, m: m, done: done}:
	case <-ctx.Done():
		done(ctx.Err())
	case <-c.quit:
		done(c.closedErr())
	}
}

// writer puts queued messages on the wire one at a time, in queue order.
// For QoS 1 and 2 it first takes a slot in the session, which blocks while
// the broker's receive maximum is reached [MQTT-4.9.0-2].
func (c *v5Client) writer() {
	defer c.wg.Done()
	defer close(c.acks)
	for {
		select {
		case r := <-c.queue:
			c.acks <- c.write(r)
		case <-c.quit:
			// No new sender can start once closed is set; wait for those
			// already in PublishAsync, then fail whatever they queued.
			c.mu.Lock()
			for c.senders > 0 {
				c.cond.Wait()
			}
			c.mu.Unlock()
			for {
				select {
				case r := <-c.queue:
					c.acks <- &pubWait{m: r.m, err: c.closedErr(), done: r.done}
				default:
					return
				}
			}
		}
	}
}

func (c *v5Client) write(r *pubReq) *pubWait {
	pw := &pubWait{m: r.m, done: r.done}
	pb := toPacket(r.m)
	// Once a PUBLISH has told the broker what an alias stands for, the
	// following ones on that topic send the alias with an empty topic
	// name (MQTT 5 section 3.3.2.3.4): the saving aliases exist for. A
	// new topic on the same alias is sent in full and remaps it.
	// Receivers see the full topic either way.
	alias, aliased := r.m.TopicAlias, false
	if alias != 0 && c.aliases[alias] == r.m.Topic {
		pb.Topic, aliased = "", true
	}
	sent := func() {
		if alias != 0 && !aliased {
			if c.aliases == nil {
				c.aliases = map[uint16]string{}
			}
			c.aliases[alias] = r.m.Topic
		}
	}
	if pb.QoS == 0 {
		if _, err := pb.WriteTo(c.conn); err != nil {
			pw.err = lost(&c.cfg, err)
			return pw
		}
		sent()
		return pw
	}
	// Waiting for a slot ends with the caller's ctx or with the client.
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	stop := context.AfterFunc(c.quitCtx, cancel)
	defer stop()
	ret := make(chan packets.ControlPacket, 1)
	if err := c.sess.AddToSession(ctx, pb, ret); err != nil {
		if r.ctx.Err() != nil {
			pw.err = r.ctx.Err()
		} else {
			pw.err = c.closedErr()
		}
		return pw
	}
	// From here the session owns the message and ret will hear about it,
	// unless the connection ends first (the acker watches for that).
	if _, err := pb.WriteTo(c.conn); err != nil {
		pw.err = lost(&c.cfg, err)
		return pw
	}
	sent()
	pw.ret = ret
	return pw
}

// acker reports results in the order the messages went on the wire. The
// broker acknowledges in that order too [MQTT-4.6.0-2], so waiting in turn
// costs nothing.
func (c *v5Client) acker() {
	defer c.wg.Done()
	for pw := range c.acks {
		err := pw.err
		if err == nil && pw.ret != nil {
			select {
			case resp := <-pw.ret:
				err = c.ackResult(pw.m, resp)
			case <-c.pc.Done():
				select {
				case resp := <-pw.ret:
					err = c.ackResult(pw.m, resp)
				default:
					err = &clierr.Error{Kind: clierr.KindNetwork, Op: "publish to " + pw.m.Topic,
						Err: errors.New("the connection ended before the broker acknowledged the message")}
				}
			}
		}
		pw.done(err)
	}
}

func (c *v5Client) ackResult(m *Message, resp packets.ControlPacket) error {
	var code byte
	var rs string
	switch p := resp.Content.(type) {
	case *packets.Puback:
		code = p.ReasonCode
		if p.Properties != nil {
			rs = p.Properties.ReasonString
		}
	case *packets.Pubrec:
		code = p.ReasonCode
		if p.Properties != nil {
			rs = p.Properties.ReasonString
		}
	case *packets.Pubcomp:
		code = p.ReasonCode
		if p.Properties != nil {
			rs = p.Properties.ReasonString
		}
	default:
		return &clierr.Error{Kind: clierr.KindNetwork, Op: "publish to " + m.Topic,
			Err: errors.New("the connection ended before the broker acknowledged the message")}
	}
	if code < 0x80 {
		return nil
	}
	msg := fmt.Sprintf("the broker refused the message: %s (0x%02X)", ReasonName(code), code)
	if rs != "" {
		msg += ": " + rs
	}
	return &clierr.Error{Kind: clierr.KindRejected, Op: "publish to " + m.Topic, Err: errors.New(msg), Reason: code}
}

func toPacket(m *Message) *packets.Publish {
	pb := &packets.Publish{
		Topic:   m.Topic,
		Payload: m.Payload,
		QoS:     m.QoS,
		Retain:  m.Retain,
		Properties: &packets.Properties{
			PayloadFormat:   m.PayloadFormat,
			MessageExpiry:   m.MessageExpiry,
			ResponseTopic:   m.ResponseTopic,
			CorrelationData: m.CorrelationData,
			ContentType:     m.ContentType,
		},
	}
	if m.TopicAlias != 0 {
		a := m.TopicAlias
		pb.Properties.TopicAlias = &a
	}
	for _, u := range m.UserProperties {
		pb.Properties.User = append(pb.Properties.User, packets.User{Key: u.Key, Value: u.Value})
	}
	return pb
}

func (c *v5Client) Subscribe(ctx context.Context, subs []Subscription) ([]byte, error) {
	s := &paho.Subscribe{}
	for _, sub := range subs {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{
			Topic: sub.Filter, QoS: sub.QoS, NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling,
		})
		if sub.SubscriptionID != 0 && s.Properties == nil {
			id := sub.SubscriptionID
			s.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: &id}
		}
	}
	if u := c.cfg.Props.SubscribeUser; len(u) > 0 {
		if s.Properties == nil {
			s.Properties = &paho.SubscribeProperties{}
		}
		s.Properties.User = pahoUser(u)
	}
	sctx, stop := c.untilLost(ctx)
	defer stop()
	sa, err := c.pc.Subscribe(sctx, s)
	if sa != nil {
		// paho reports refused filters as an error; the caller decides on
		// the codes, as the Client contract says.
		return sa.Reasons, nil
	}
	if err != nil {
		return nil, c.opErr("subscribe", err)
	}
	return nil, c.opErr("subscribe", errors.New("no SUBACK"))
}

func (c *v5Client) Unsubscribe(ctx context.Context, filters ...string) error {
	uctx, stop := c.untilLost(ctx)
	defer stop()
	u := &paho.Unsubscribe{Topics: filters}
	if up := c.cfg.Props.UnsubscribeUser; len(up) > 0 {
		u.Properties = &paho.UnsubscribeProperties{User: pahoUser(up)}
	}
	ua, err := c.pc.Unsubscribe(uctx, u)
	if err != nil && ua != nil {
		for i, code := range ua.Reasons {
			if code >= 0x80 && i < len(filters) {
				return &clierr.Error{Kind: clierr.KindRejected, Op: "unsubscribe from " + filters[i], Reason: code,
					Err: fmt.Errorf("the broker refused: %s (0x%02X)", ReasonName(code), code)}
			}
		}
	}
	if err != nil {
		return c.opErr("unsubscribe", err)
	}
	return nil
}

// untilLost returns ctx, also cancelled when the client ends. paho waits
// for a SUBACK or UNSUBACK until its PacketTimeout (a minute) even after
// the connection dropped: its session forgets the request without waking
// the waiter when the session does not outlive the connection, and keeps
// it for a later connection when it does.
func (c *v5Client) untilLost(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.quitCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (c *v5Client) opErr(op string, err error) error {
	if (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && c.quitCtx.Err() == nil {
		return err
	}
	if errors.Is(err, paho.ErrInvalidArguments) {
		// paho checked the request against what CONNACK said the broker
		// supports (wildcards, shared subscriptions, subscription ids).
		return &clierr.Error{Kind: clierr.KindRejected, Op: op, Err: err}
	}
	select {
	case <-c.quit:
		return c.closedErr()
	default:
	}
	return &clierr.Error{Kind: clierr.KindNetwork, Op: op, Err: err}
}

func (c *v5Client) Disconnect(ctx context.Context) error {
	c.endOnce.Do(func() {
		c.markClosed(nil)
		close(c.quit)
		c.quitCancel()
		// [MQTT-3.14.4-1] DISCONNECT, then close, after the
		// acknowledgements of what was received. paho waits for its
		// goroutines before returning.
		c.waitAcks(ackWait)
		_ = c.pc.Disconnect(disconnectPacket(&c.cfg))
		go c.finish(nil, false)
	})
	return c.waitDone(ctx)
}

// end starts shutting the client down after the connection was lost.
func (c *v5Client) end(err error, wasLost bool) {
	c.endOnce.Do(func() {
		c.markClosed(err)
		close(c.quit)
		c.quitCancel()
		go c.finish(err, wasLost)
	})
}

func (c *v5Client) finish(err error, wasLost bool) {
	<-c.pc.Done()
	c.wg.Wait()
	_ = c.sess.Close()
	close(c.done)
	if wasLost && c.cfg.OnConnectionLost != nil {
		c.cfg.OnConnectionLost(err)
	}
}
