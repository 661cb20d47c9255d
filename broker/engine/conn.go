package engine

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/topic"
)

// conn is one client connection. Its reader goroutine (serve) owns the
// read side and the inbound topic aliases; the write side is shared.
type conn struct {
	s    *Server
	nc   net.Conn
	info Client
	rd   *packet.Reader
	done func(error) // told once how the connection ended

	// Parking (see poller). raw is nil for a connection that cannot be
	// parked (TLS, WebSocket, not Linux); fd is its socket's number,
	// fixed for its life. The fields below state are the goroutine's
	// own: whichever goroutine runs the connection (state running) may
	// use them, and handing over through state orders the accesses.
	raw     syscall.RawConn
	fd      int32
	state   atomic.Int32 // running or parked
	poll    *poller      // where it was last parked
	kaTimer *time.Timer  // wakes a parked connection when its keep alive runs out
	lastIn  time.Time    // when the last packet was handled: keep alive counts from here
	active  bool         // a packet came after CONNECT

	// Set while CONNECT is handled, then read-only.
	version   packet.Version
	se        *session
	keepAlive uint16
	recvMax   int    // the client's Receive Maximum
	maxOut    uint32 // the client's Maximum Packet Size; 0 none
	aliasMax  uint16 // aliases we may assign towards the client
	problem   bool   // the client accepts reason strings and user properties [MQTT-3.1.2-29]

	aliasIn map[uint16]string // reader goroutine only [MQTT-3.3.2-12]

	wmu          sync.Mutex // guards the write side below
	wbuf         []byte     // encoded packets waiting to be written
	inBuf        int        // packets in wbuf
	pending      int        // packets queued or being written
	progress     time.Time  // when a write last completed (or the first packet was queued)
	slow         bool       // publishers stopped waiting for it; see congested
	held         []queued   // QoS 0 publishes waiting for room while slow: the newest, oldest dropped first
	writeStalled bool       // a write timed out: the client is not reading
	flushing     bool       // a flush goroutine runs
	dead         bool       // no more writes: closed or failed
	closeDone    bool       // close the socket once wbuf is written
	drained      chan struct{}
	aliasOut     map[string]uint16
	flushed      chan struct{} // closed when the last flush ends after closeDone
}

func newConn(s *Server, nc net.Conn, info Client, done func(error)) *conn {
	if info.Remote == "" && nc.RemoteAddr() != nil {
		info.Remote = nc.RemoteAddr().String()
	}
	rd := packet.NewReader(nc, int(s.cfg.MaxPacketSize))
	rd.SetInitialSize(s.cfg.ReadBuffer)
	c := &conn{s: s, nc: nc, info: info, rd: rd, done: done, fd: -1}
	if s.cfg.ParkAfter > 0 {
		if raw := socketOf(nc); raw != nil {
			if err := raw.Control(func(fd uintptr) { c.fd = int32(fd) }); err == nil {
				c.raw = raw
			}
		}
	}
	return c
}

// Unbuffered is implemented by a net.Conn wrapper (a counter) whose Read
// and Write are exactly those of the socket it returns, with nothing read
// ahead: the engine may then watch that socket itself while the
// connection is idle, and write to it without waiting. A wrapper that
// must see every byte (a tracer) returns nil. TLS and WebSocket
// connections read ahead and are never parked.
type Unbuffered interface {
	Unbuffered() net.Conn
}

// errDisconnect ends serve without a will: the client said goodbye;
// errWill ends it with the will (DISCONNECT 0x04).
var (
	errDisconnect = errors.New("client disconnected")
	errWill       = errors.New("client disconnected with its will")
)

// The states of a connection's goroutine (conn.state).
const (
	running int32 = iota // a goroutine runs the connection
	parked               // none does: the poller or the keep-alive timer will wake it
)

// run is the body of a connection's goroutine, from CONNECT (start) or
// resumed after the connection was parked. It ends the connection unless
// it parks it again.
func (c *conn) run(start bool) {
	var err error
	park := false
	defer func() {
		if park {
			return // another goroutine carries on, or will
		}
		// A fault on one connection's input must not take the whole
		// broker down: it ends that connection, and says why.
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
		c.end(err)
	}()
	if start {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.ConnectTimeout))
		if err = c.handshake(); err != nil {
			return
		}
		c.lastIn = time.Now()
	} else if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	park, err = c.loop()
}

// end is the connection's last act: the will, the socket, the books.
func (c *conn) end(err error) {
	if c.se != nil {
		// [MQTT-3.1.2-8] the will goes out when the connection ends for
		// any reason but a normal DISCONNECT (or a server shutdown).
		c.se.detach(c, !errors.Is(err, errDisconnect) && !c.s.isClosing())
	}
	c.finish()
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	if c.poll != nil {
		c.poll.forget(c)
	}
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	c.s.connWG.Done()
	if c.done != nil {
		c.done(err)
	}
}

// loop reads and handles packets until the connection ends (an error) or
// is parked (true).
func (c *conn) loop() (bool, error) {
	for {
		if !c.rd.Whole() {
			c.kick() // about to wait for input: answer what came first
		}
		var deadline time.Time
		if c.keepAlive > 0 {
			// [MQTT-3.1.2-24] one and a half keep alive periods of silence
			// end the connection.
			deadline = c.lastIn.Add(time.Duration(c.keepAlive) * 1500 * time.Millisecond)
		}
		if c.rd.Buffered() == 0 {
			// Wait for the next packet's first bytes; a connection that can
			// be parked waits only ParkAfter. Waiting in Fill, not Next,
			// means a deadline that expires here splits no packet.
			wait := deadline
			if c.raw != nil {
				// A connection that has sent nothing since CONNECT parks
				// sooner: when thousands connect at once (a fleet coming
				// back after an outage), their goroutine stacks would
				// otherwise all be held for a whole ParkAfter, which is
				// most of the broker's peak memory (BENCHMARKS.md).
				after := c.s.cfg.ParkAfter
				if !c.active {
					after /= 10
				}
				if at := time.Now().Add(after); wait.IsZero() || at.Before(wait) {
					wait = at
				}
			}
			_ = c.nc.SetReadDeadline(wait)
			if err := c.rd.Fill(); err != nil {
				if c.raw != nil && errors.Is(err, os.ErrDeadlineExceeded) && (deadline.IsZero() || time.Now().Before(deadline)) {
					if c.park(deadline) {
						return true, nil
					}
					continue
				}
				return false, c.readFailed(err)
			}
		}
		if !c.rd.Whole() {
			_ = c.nc.SetReadDeadline(deadline)
		}
		h, body, err := c.rd.Next(keepsBody)
		if err != nil {
			return false, c.readFailed(err)
		}
		c.s.count.netIn.Add(uint64(wireSize(len(body))))
		if !c.current() {
			return false, errTakenOver
		}
		if err := c.handle(h, body); err != nil {
			return false, err
		}
		c.lastIn, c.active = time.Now(), true
		if c.raw == nil && c.rd.Buffered() == 0 {
			c.rd.Release() // an idle connection holds no read buffer
		}
	}
}

// park lets the connection's goroutine go until its socket is readable,
// its keep alive (deadline) runs out or it is closed. It reports false if
// the socket cannot be watched; the connection then stays with its
// goroutine for good.
func (c *conn) park(deadline time.Time) bool {
	p := c.s.poller()
	if p == nil {
		c.raw = nil
		return false
	}
	c.poll = p
	c.rd.Release()
	c.wmu.Lock()
	if len(c.wbuf) == 0 && !c.flushing {
		c.wbuf = nil // an idle connection holds no write buffer either
	}
	c.wmu.Unlock()
	if !deadline.IsZero() && c.kaTimer == nil {
		// Made (stopped) before the state changes hands, so that the
		// goroutine that wakes the connection sees the field.
		c.kaTimer = time.AfterFunc(time.Hour, c.wake)
		c.kaTimer.Stop()
	}
	c.s.count.parks.Add(1)
	c.s.count.parked.Add(1)
	c.state.Store(parked)
	if !deadline.IsZero() {
		c.kaTimer.Reset(time.Until(deadline))
	}
	if p.park(c) {
		return true
	}
	if !c.state.CompareAndSwap(parked, running) {
		return true // woken meanwhile (closed, or the timer): that goroutine runs it
	}
	c.s.count.parked.Add(-1)
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	c.raw = nil
	return false
}

// wake gives a parked connection a goroutine again.
func (c *conn) wake() {
	if c.state.CompareAndSwap(parked, running) {
		c.s.count.parked.Add(-1)
		go c.run(false)
	}
}

// closeSocket closes the socket from outside the connection's goroutine
// and wakes the connection if it is parked, so that it ends.
func (c *conn) closeSocket() {
	_ = c.nc.Close()
	c.wake()
}

// keepsBody says which packets' bodies the engine keeps: a PUBLISH's
// payload lives on in the message. Every other packet after CONNECT holds
// only numbers and strings, which the codec copies, so it is decoded from
// the reader's own buffer.
func keepsBody(h byte) bool { return packet.Type(h>>4) == packet.TypePublish }

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// readFailed turns a read error into the connection's end, telling an MQTT
// 5 client why when the protocol has a word for it.
func (c *conn) readFailed(err error) error {
	var pe *packet.Error
	if errors.As(err, &pe) {
		c.protocolError(pe.Code, pe.Msg)
		return err
	}
	c.wmu.Lock()
	stalled := c.writeStalled
	c.wmu.Unlock()
	if stalled {
		return fmt.Errorf("client is not reading: a write to it waited %s", c.s.cfg.WriteTimeout)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if c.version == packet.V5 {
			c.closeWith(&packet.Disconnect{Code: packet.KeepAliveTimeout})
		}
		// [MQTT-3.1.2-24]
		return fmt.Errorf("keepalive expired: nothing from the client in 1.5 x %d s", c.keepAlive)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return io.EOF
	}
	return err
}

// protocolError ends the connection for a packet that breaks the protocol:
// MQTT 5 clients get a DISCONNECT with the reason [MQTT-4.13.1-1], earlier
// versions have no such packet and are simply closed [MQTT-4.8.0-1].
func (c *conn) protocolError(code packet.ReasonCode, why string) {
	c.s.cfg.Logf("client %q (%s): %s: %s", c.info.ID, c.info.Remote, code, why)
	if c.version == packet.V5 {
		d := &packet.Disconnect{Code: code}
		if c.problem {
			d.Properties.ReasonString = why
		}
		c.closeWith(d)
	}
}

// handle processes one packet after CONNECT.
func (c *conn) handle(h byte, body []byte) error {
	switch packet.Type(h >> 4) {
	case packet.TypePublish:
		var p packet.Publish
		if err := packet.DecodeInto(&p, h, body, c.version); err != nil {
			return c.bad(err)
		}
		return c.onPublish(&p)
	case packet.TypePuback, packet.TypePubrec, packet.TypePubcomp:
		var a packet.Ack
		if err := packet.DecodeInto(&a, h, body, c.version); err != nil {
			return c.bad(err)
		}
		if !c.se.acked(a.Kind, a.PacketID, a.Code) {
			// An acknowledgement for nothing in flight: mosquitto ignores
			// it, and so does the engine (the message may have expired).
			return nil
		}
		if a.Kind == packet.TypePubrec && a.Code < 0x80 {
			c.send(&packet.Ack{Kind: packet.TypePubrel, PacketID: a.PacketID})
		}
		return nil
	case packet.TypePubrel:
		var a packet.Ack
		if err := packet.DecodeInto(&a, h, body, c.version); err != nil {
			return c.bad(err)
		}
		comp := &packet.Ack{Kind: packet.TypePubcomp, PacketID: a.PacketID}
		if !c.se.released(a.PacketID) && c.version == packet.V5 {
			// [MQTT-4.3.3-?] PUBREL for an unknown identifier: PUBCOMP
			// 0x92 in MQTT 5; 3.1.1 has no code, and answers PUBCOMP.
			comp.Code = packet.PacketIdentifierNotFound
		}
		c.send(comp)
		return nil
	case packet.TypeSubscribe:
		var p packet.Subscribe
		if err := packet.DecodeInto(&p, h, body, c.version); err != nil {
			return c.bad(err)
		}
		return c.onSubscribe(&p)
	case packet.TypeUnsubscribe:
		var p packet.Unsubscribe
		if err := packet.DecodeInto(&p, h, body, c.version); err != nil {
			return c.bad(err)
		}
		return c.onUnsubscribe(&p)
	case packet.TypePingreq:
		var p packet.Pingreq
		if err := packet.DecodeInto(&p, h, body, c.version); err != nil {
			return c.bad(err)
		}
		c.send(&packet.Pingresp{}) // [MQTT-3.12.4-1]
		return nil
	case packet.TypeDisconnect:
		var d packet.Disconnect
		if err := packet.DecodeInto(&d, h, body, c.version); err != nil {
			return c.bad(err)
		}
		return c.onDisconnect(&d)
	case packet.TypeConnect:
		// [MQTT-3.1.0-2] a second CONNECT is a protocol error.
		return c.bad(&packet.Error{Code: packet.ProtocolError, Msg: "second CONNECT on one connection"})
	case packet.TypeAuth:
		if c.version != packet.V5 {
			return c.bad(&packet.Error{Code: packet.MalformedPacket, Msg: "packet type 15 before MQTT 5"})
		}
		// [MQTT-4.12.0-?] no extended authentication method was agreed at
		// CONNECT, so any AUTH is a protocol error.
		return c.bad(&packet.Error{Code: packet.ProtocolError, Msg: "AUTH without an authentication method"})
	default:
		// CONNACK, SUBACK, UNSUBACK, PINGRESP and type 0 are never sent by
		// a client.
		return c.bad(&packet.Error{Code: packet.ProtocolError, Msg: packet.Type(h>>4).String() + " from a client"})
	}
}

func (c *conn) bad(err error) error {
	var pe *packet.Error
	if errors.As(err, &pe) {
		c.protocolError(pe.Code, pe.Msg)
	}
	return err
}

// onPublish handles a PUBLISH from the client.
func (c *conn) onPublish(p *packet.Publish) error {
	cfg := &c.s.cfg
	c.s.count.msgsIn[p.QoS].Add(1)
	c.s.count.bytesIn[p.QoS].Add(uint64(len(p.Payload)))
	if c.version == packet.V5 {
		// [MQTT-3.3.4-6] a client does not send subscription identifiers.
		if p.Properties.Has(packet.PropSubscriptionID) {
			return c.bad(&packet.Error{Code: packet.ProtocolError, Msg: "PUBLISH from a client carries a subscription identifier"})
		}
		if p.Properties.Has(packet.PropTopicAlias) {
			a := p.Properties.TopicAlias
			if a > cfg.TopicAliasMaximum {
				// [MQTT-3.3.2-9] an alias above our Topic Alias Maximum.
				return c.bad(&packet.Error{Code: packet.TopicAliasInvalid,
					Msg: fmt.Sprintf("topic alias %d is over the maximum of %d", a, cfg.TopicAliasMaximum)})
			}
			if p.Topic == "" {
				t, ok := c.aliasIn[a]
				if !ok {
					// 3.3.2.3.4: an alias never set is a protocol error.
					return c.bad(&packet.Error{Code: packet.ProtocolError, Msg: fmt.Sprintf("topic alias %d was never set", a)})
				}
				p.Topic = t
			} else {
				if c.aliasIn == nil {
					c.aliasIn = map[uint16]string{}
				}
				c.aliasIn[a] = p.Topic // [MQTT-3.3.2-12]
			}
			p.Properties.Delete(packet.PropTopicAlias)
		}
	}
	if p.QoS == 2 && c.version == packet.V5 && !c.se.awaiting(p.PacketID) && c.se.pendingIn() >= int(cfg.ReceiveMaximum) {
		// [MQTT-3.3.4-7] more unacknowledged QoS 2 publishes than our
		// Receive Maximum; a resend of one already counted is not one more
		// [MQTT-3.3.4-8].
		return c.bad(&packet.Error{Code: packet.ReceiveMaximumExceeded,
			Msg: fmt.Sprintf("more than %d QoS 2 publishes awaiting PUBREL", cfg.ReceiveMaximum)})
	}
	code := packet.Success
	// A topic over the broker's length or depth limits is refused like
	// one the ACL denies: acknowledged, not delivered.
	allowed := c.checkTopic(p.Topic) == nil && !strings.HasPrefix(p.Topic, "$SYS") &&
		cfg.Hooks.MayPublish(&c.info, p.Topic, p.Retain)
	if !allowed {
		code = packet.NotAuthorized
	}
	route := allowed
	if p.QoS == 2 && !c.se.received(p.PacketID) {
		// [MQTT-4.3.3-?] a resent QoS 2 PUBLISH whose PUBREC was sent is
		// not delivered again.
		route = false
	}
	if route {
		m := &Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain,
			Props: p.Properties, Created: c.s.now(), From: c.info.ID}
		if cfg.MaxMessageExpiry > 0 {
			lim := uint32(cfg.MaxMessageExpiry / time.Second)
			if !m.Props.Has(packet.PropMessageExpiry) || m.Props.MessageExpiry > lim {
				m.Props.MessageExpiry = lim
			}
		}
		var err error
		if m.Retain {
			err = c.s.retain(m, true)
		}
		if err == nil {
			err = c.s.route(m)
		}
		if err != nil {
			// The message could not be made durable: refuse it rather
			// than acknowledge what a crash would lose. MQTT 5 says so in
			// the acknowledgement; 3.1.1 has no way to but closing.
			c.s.cfg.Logf("publish from %q on %q refused: %v", c.info.ID, p.Topic, err)
			if p.QoS == 2 {
				c.se.released(p.PacketID)
			}
			if c.version != packet.V5 || p.QoS == 0 {
				if c.version == packet.V5 {
					c.protocolError(packet.UnspecifiedError, "the broker could not store the message")
				}
				return err
			}
			kind := packet.TypePuback
			if p.QoS == 2 {
				kind = packet.TypePubrec
			}
			ack := &packet.Ack{Kind: kind, PacketID: p.PacketID, Code: packet.UnspecifiedError}
			if c.problem {
				ack.Properties.ReasonString = "the broker could not store the message"
			}
			c.send(ack)
			return nil
		}
	}
	switch p.QoS {
	case 1:
		// [MQTT-3.3.4-1] PUBACK; an unauthorised publish is acknowledged
		// too [MQTT-3.3.5-2], with 0x87 in MQTT 5.
		c.send(&packet.Ack{Kind: packet.TypePuback, PacketID: p.PacketID, Code: c.v5code(code)})
	case 2:
		if code != packet.Success && c.version == packet.V5 {
			c.se.released(p.PacketID) // the exchange ends with the error PUBREC
		}
		c.send(&packet.Ack{Kind: packet.TypePubrec, PacketID: p.PacketID, Code: c.v5code(code)})
	}
	return nil
}

// v5code returns code for MQTT 5 and Success before it, which has no
// reason codes in acknowledgements.
func (c *conn) v5code(code packet.ReasonCode) packet.ReasonCode {
	if c.version == packet.V5 {
		return code
	}
	return packet.Success
}

// checkTopic applies the broker's limits to a topic name or filter.
func (c *conn) checkTopic(t string) error {
	cfg := &c.s.cfg
	if len(t) > cfg.MaxTopicLength {
		return fmt.Errorf("topic of %d bytes is over the broker's limit of %d", len(t), cfg.MaxTopicLength)
	}
	if strings.Count(t, "/")+1 > cfg.MaxTopicLevels {
		return fmt.Errorf("topic has more than %d levels", cfg.MaxTopicLevels)
	}
	return nil
}

// onSubscribe handles SUBSCRIBE: each filter gets its own code in SUBACK
// [MQTT-3.8.4-6], and retained messages follow the SUBACK
// [MQTT-3.3.1-9].
func (c *conn) onSubscribe(p *packet.Subscribe) error {
	var subID uint32
	if ids := p.Properties.SubscriptionIDs; len(ids) > 0 {
		subID = ids[0]
	}
	codes := make([]packet.ReasonCode, len(p.Subscriptions))
	type sendRetained struct {
		filter string
		o      subOpts
	}
	var retained []sendRetained
	var ops []Op
	c.se.mu.Lock()
	persistent := c.se.persistentLocked()
	c.se.mu.Unlock()
	for i, sub := range p.Subscriptions {
		code := packet.ReasonCode(sub.QoS) // granted QoS: we support 2
		_, inner, shared := topic.ParseShared(sub.Filter)
		switch {
		case topic.ValidateFilter(sub.Filter) != nil:
			// [MQTT-3.8.4-?] an invalid filter gets its own failure code.
			code = packet.TopicFilterInvalid
		case c.checkTopic(sub.Filter) != nil || !c.s.cfg.Hooks.MaySubscribe(&c.info, inner):
			// The ACL judges the filter without $share/GROUP/, so a user
			// who may read public/# may share it.
			code = packet.NotAuthorized
		}
		if code >= 0x80 {
			codes[i] = c.subackFailure(code)
			c.s.count.subscribeDenied.Add(1)
			continue
		}
		o := subOpts{qos: sub.QoS, noLocal: sub.NoLocal, rap: sub.RetainAsPublished, rh: sub.RetainHandling, id: subID}
		replaced, err := c.s.router.subs.Subscribe(sub.Filter, c.info.ID, o)
		if err != nil {
			codes[i] = c.subackFailure(packet.TopicFilterInvalid)
			continue
		}
		codes[i] = code
		if persistent {
			ops = append(ops, Op{Kind: PutSub, Client: c.info.ID, Sub: o.record(sub.Filter)})
		}
		// [MQTT-3.3.1-9..11] retain handling: 0 always, 1 only for a new
		// subscription, 2 never; shared subscriptions get no retained
		// messages [MQTT-3.8.4-?].
		if !shared && (o.rh == 0 || (o.rh == 1 && !replaced)) {
			retained = append(retained, sendRetained{inner, o})
		}
	}
	if st := c.s.cfg.Store; st != nil && len(ops) > 0 {
		// A subscription of a lasting session is durable before its SUBACK.
		if err := st.Apply(ops); err != nil {
			c.s.cfg.Logf("subscribe of %q not stored: %v", c.info.ID, err)
			for i, sub := range p.Subscriptions {
				if codes[i] < 0x80 {
					c.s.router.subs.Unsubscribe(sub.Filter, c.info.ID)
					codes[i] = c.subackFailure(packet.UnspecifiedError)
				}
			}
			retained = nil
		}
	}
	c.send(&packet.Suback{PacketID: p.PacketID, Codes: codes})
	now := c.s.now()
	for _, r := range retained {
		for _, m := range c.s.router.retainedFor(r.filter, now) {
			// [MQTT-3.3.1-8] retained ones keep the flag; this goroutine
			// writes them (kick) before it next waits for input.
			d := delivery{qos: r.o.qos, retain: true, later: true}
			if r.o.id != 0 {
				d.ids = []uint32{r.o.id}
			}
			c.se.deliver(m, d, 0)
		}
	}
	return nil
}

// subackFailure maps an MQTT 5 failure code to the version's SUBACK code:
// 3.1.1 has only 0x80 [MQTT-3.9.3-?].
func (c *conn) subackFailure(code packet.ReasonCode) packet.ReasonCode {
	if c.version == packet.V5 {
		return code
	}
	return packet.SubackFailure311
}

func (c *conn) onUnsubscribe(p *packet.Unsubscribe) error {
	codes := make([]packet.ReasonCode, len(p.Filters))
	for i, f := range p.Filters {
		// [MQTT-3.10.4-1] the filter is compared character by character.
		if c.s.router.subs.Unsubscribe(f, c.info.ID) {
			codes[i] = packet.Success
			if st := c.s.cfg.Store; st != nil {
				if err := st.Apply([]Op{{Kind: DeleteSub, Client: c.info.ID, Sub: SubRecord{Filter: f}}}); err != nil {
					c.s.cfg.Logf("unsubscribe of %q not stored: %v", c.info.ID, err)
				}
			}
		} else {
			codes[i] = packet.NoSubscriptionExisted
		}
	}
	ack := &packet.Unsuback{PacketID: p.PacketID}
	if c.version == packet.V5 {
		ack.Codes = codes
	}
	c.send(ack) // [MQTT-3.10.4-4]
	return nil
}

func (c *conn) onDisconnect(d *packet.Disconnect) error {
	if c.version == packet.V5 && d.Properties.Has(packet.PropSessionExpiry) {
		c.se.mu.Lock()
		was := c.se.expiry
		if was == 0 && d.Properties.SessionExpiry != 0 {
			c.se.mu.Unlock()
			// [MQTT-3.14.2-2] a session that was to end with the
			// connection cannot be made to last at DISCONNECT.
			return c.bad(&packet.Error{Code: packet.ProtocolError, Msg: "DISCONNECT sets a session expiry after CONNECT set none"})
		}
		c.se.expiry = c.s.capExpiry(d.Properties.SessionExpiry)
		rec := c.se.recordLocked()
		c.se.mu.Unlock()
		if st := c.s.cfg.Store; st != nil {
			if rec.Expiry > 0 {
				st.Lazy([]Op{{Kind: PutSession, Client: rec.ID, Session: rec}})
			} else if was > 0 {
				st.Lazy([]Op{{Kind: DeleteSession, Client: rec.ID}})
			}
		}
	}
	if d.Code == packet.DisconnectWithWill {
		// 3.14.2.1: 0x04 asks for the will to be published.
		return errWill
	}
	// [MQTT-3.14.4-3] a normal DISCONNECT discards the will.
	return errDisconnect
}

// capExpiry applies the broker's ceiling to a session expiry interval.
func (s *Server) capExpiry(v uint32) uint32 {
	if s.cfg.MaxSessionExpiry <= 0 {
		if s.cfg.Exact {
			return 0 // an explicit 0: every session ends with its connection
		}
		return v
	}
	lim := s.cfg.MaxSessionExpiry / time.Second
	if lim > 0xFFFFFFFE {
		return v
	}
	if time.Duration(v) > lim {
		return uint32(lim)
	}
	return v
}

// send queues p, from the connection's own goroutine, to be written when
// that goroutine next waits for input (kick), or by a flush goroutine
// already running.
func (c *conn) send(p packet.Packet) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.queueLocked(p)
}

// appendLocked queues p and starts writing it; it reports false if the
// connection is closing or p could not be encoded.
func (c *conn) appendLocked(p packet.Packet) bool {
	if !c.queueLocked(p) {
		return false
	}
	c.startFlushLocked()
	return true
}

// queueLocked encodes p into the write buffer. A packet that cannot be
// encoded is a bug in the engine, logged and dropped rather than sent
// malformed.
func (c *conn) queueLocked(p packet.Packet) bool {
	if c.dead || c.closeDone {
		return false
	}
	b, err := p.Append(c.wbuf, c.version)
	if err != nil {
		c.s.cfg.Logf("engine: cannot encode %s for %q: %v", p.Type(), c.info.ID, err)
		return false
	}
	c.wbuf = b
	c.inBuf++
	if c.pending == 0 {
		c.progress = time.Now()
	}
	c.pending++
	return true
}

// wireSize is the length of a packet with a body of n bytes.
func wireSize(n int) int {
	switch {
	case n < 128:
		return n + 2
	case n < 16384:
		return n + 3
	case n < 2097152:
		return n + 4
	}
	return n + 5
}

// sendPublish writes m as a PUBLISH for this connection. It reports true
// when m is larger than the client's Maximum Packet Size and was dropped
// for it [MQTT-3.1.2-25]: the session then treats a QoS 1/2 message as
// done, since the client will never acknowledge it. Called with the
// session's lock held.
func (c *conn) sendPublish(m *Message, d delivery, id uint16, dup bool) (tooLarge bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if d.qos == 0 && (len(c.held) > 0 || c.slow && c.pending >= c.s.cfg.MaxPending) {
		// A stalled subscriber's QoS 0 messages beyond the queue limit
		// wait in held, which keeps the newest and drops the oldest, so
		// when it catches up it sees the latest state (QoS 1 and 2 wait
		// in the session's window instead). Once anything is held, later
		// messages queue behind it to keep their order.
		d.later = false
		c.held = append(c.held, queued{m: m, d: d})
		if len(c.held) > c.s.cfg.MaxPending {
			c.held[0] = queued{}
			c.held = c.held[1:]
			c.s.count.dropped.Add(1)
		}
		c.startFlushLocked()
		return false
	}
	return c.publishLocked(m, d, id, dup)
}

// refillLocked moves held QoS 0 messages into the write buffer while
// there is room.
func (c *conn) refillLocked() {
	n := 0
	for n < len(c.held) && c.pending < c.s.cfg.MaxPending && !c.dead {
		c.publishLocked(c.held[n].m, c.held[n].d, 0, false)
		c.held[n] = queued{}
		n++
	}
	c.held = c.held[n:]
	if len(c.held) == 0 {
		c.held = nil
	}
}

// publishLocked encodes the PUBLISH: the delivery's QoS, retain and
// subscription identifiers, the remaining expiry [MQTT-3.3.2-6], a topic
// alias if one is free. A message larger than the client's Maximum Packet
// Size is dropped for this client only [MQTT-3.1.2-25], and reported.
// Called with wmu held.
func (c *conn) publishLocked(m *Message, d delivery, id uint16, dup bool) (tooLarge bool) {
	p := packet.Publish{Topic: m.Topic, QoS: d.qos, PacketID: id, Retain: d.retain, Dup: dup, Payload: m.Payload}
	newAlias := false
	if c.version == packet.V5 {
		p.Properties = m.Props
		if left, has, _ := m.expiry(c.s.now()); has {
			p.Properties.MessageExpiry = left
		}
		if len(d.ids) > 0 {
			p.Properties.SubscriptionIDs = d.ids
		}
		if c.aliasMax > 0 {
			if a, ok := c.aliasOut[m.Topic]; ok {
				p.Properties.TopicAlias = a
				p.Topic = ""
			} else if len(c.aliasOut) < int(c.aliasMax) {
				p.Properties.TopicAlias = uint16(len(c.aliasOut) + 1)
				newAlias = true
			}
		}
	}
	if c.maxOut > 0 && uint32(p.Size(c.version)) > c.maxOut {
		c.s.cfg.Logf("message on %q (%d bytes) is over client %q's maximum packet size of %d: not sent to it",
			m.Topic, p.Size(c.version), c.info.ID, c.maxOut)
		c.s.count.dropped.Add(1)
		return true
	}
	var queued bool
	if d.later {
		queued = c.queueLocked(&p) // written by kick, after routing
	} else {
		queued = c.appendLocked(&p)
	}
	if !queued {
		return false
	}
	if newAlias {
		if c.aliasOut == nil {
			c.aliasOut = map[string]uint16{}
		}
		c.aliasOut[m.Topic] = p.Properties.TopicAlias
	}
	c.s.count.msgsOut[d.qos].Add(1)
	c.s.count.bytesOut[d.qos].Add(uint64(len(m.Payload)))
	return false
}

// flush writes the buffered packets. It runs only while there is
// something to write, and lets the buffers go when it ends, so an idle
// connection holds neither goroutine nor buffer.
func (c *conn) flush() {
	var spare []byte
	for {
		c.wmu.Lock()
		c.refillLocked()
		if len(c.wbuf) == 0 || c.dead {
			c.flushing = false
			c.wbuf = nil
			closeNow := c.closeDone && !c.dead
			if c.drained != nil {
				close(c.drained)
				c.drained = nil
			}
			if c.closeDone {
				c.dead = true
				if c.flushed != nil {
					close(c.flushed)
					c.flushed = nil
				}
			}
			c.wmu.Unlock()
			if closeNow {
				c.closeSocket()
			}
			return
		}
		b := c.wbuf
		batch := c.inBuf
		c.wbuf, c.inBuf = spare[:0], 0
		c.wmu.Unlock()
		began := time.Now()
		n, err := c.write(b)
		c.s.count.netOut.Add(uint64(n))
		c.wmu.Lock()
		c.wroteLocked(batch, began, err)
		c.wmu.Unlock()
		if err != nil {
			c.closeSocket() // the reader sees it and ends the connection
			continue
		}
		if cap(b) <= c.s.cfg.WriteBuffer {
			spare = b
		} else {
			spare = nil
		}
	}
}

// wroteLocked does the books after a batch of packets was written (or
// failed to be).
func (c *conn) wroteLocked(batch int, began time.Time, err error) {
	c.pending -= batch
	c.progress = time.Now()
	if c.slow && (c.pending <= c.s.cfg.MaxPending/4 || c.progress.Sub(began) < noProgress/4) {
		// Caught up, or reading briskly again: publishers wait for it
		// again rather than its messages being dropped.
		c.slow = false
	}
	if c.drained != nil {
		close(c.drained) // wake publishers waiting for room
		c.drained = nil
	}
	if err != nil {
		c.dead = true
		c.writeStalled = errors.Is(err, os.ErrDeadlineExceeded)
		c.held = nil
	}
}

// kick writes what is queued and waiting for no flush goroutine: what the
// connection's own goroutine queued (acknowledgements, CONNACK, SUBACK),
// written before it waits for more input, and the copies a publisher's
// goroutine routed to it (delivery.later), written once routing is done.
// One write for a batch, and no goroutine to start and schedule for it.
// The write never blocks: what the socket does not take at once is left
// to a flush goroutine, so a client that does not read holds up neither
// its own input nor a publisher.
func (c *conn) kick() {
	c.wmu.Lock()
	if c.flushing || c.dead || len(c.wbuf) == 0 {
		c.wmu.Unlock()
		return
	}
	if c.raw == nil {
		c.startFlushLocked() // no way to write without blocking
		c.wmu.Unlock()
		return
	}
	c.flushing = true
	b, batch := c.wbuf, c.inBuf
	c.wbuf, c.inBuf = nil, 0
	c.wmu.Unlock()
	began := time.Now()
	n, err := tryWrite(c.raw, b)
	c.s.count.netOut.Add(uint64(n))
	c.wmu.Lock()
	if err == nil && n < len(b) {
		// The socket is full for now: the rest goes first, from a flush
		// goroutine that may wait for the client.
		c.wbuf = append(append(make([]byte, 0, len(b)-n+len(c.wbuf)), b[n:]...), c.wbuf...)
		c.inBuf += batch
		go c.flush()
		c.wmu.Unlock()
		return
	}
	c.wroteLocked(batch, began, err)
	switch {
	case err != nil:
		c.flushing = false
		c.wmu.Unlock()
		c.closeSocket()
		return
	case len(c.wbuf) > 0 || len(c.held) > 0 || c.closeDone:
		go c.flush() // queued meanwhile by others, who saw us flushing
	default:
		c.flushing = false
		if cap(b) <= c.s.cfg.WriteBuffer {
			c.wbuf = b[:0]
		}
	}
	c.wmu.Unlock()
}

// Publishers wait for a subscriber that is behind rather than the engine
// dropping its messages, as mosquitto's single loop slows publishers
// through TCP. A subscriber that completes no write for noProgress, or
// holds a publisher for maxWait while it trickles along, is marked slow:
// nobody waits for it again until its queue drains below a quarter, and
// its QoS 0 messages beyond MaxQueued are dropped and counted.
//
// noProgress is long enough that a subscriber that is reading, but
// starved of CPU by a flood on a small machine, is not taken for a
// stalled one and marked (a shorter limit lost much of a fan-in run's
// messages: BENCHMARKS.md, "mqtk broker on its own engine"), and short
// enough that a paused `mqtk sub` holds its publishers only briefly.
const (
	noProgress = 2 * time.Second
	maxWait    = 5 * time.Second
)

// congested reports whether a publisher should wait for c.
func (c *conn) congested() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return !c.dead && !c.slow && c.pending >= c.s.cfg.MaxPending
}

// waitRoom blocks a publisher until c's queue is below the limit, c stops
// making progress, or the wait has lasted maxWait; the last two mark c
// slow.
func (c *conn) waitRoom() {
	start := time.Now()
	for {
		c.wmu.Lock()
		if c.dead || c.slow || c.pending < c.s.cfg.MaxPending {
			c.wmu.Unlock()
			return
		}
		now := time.Now()
		if stalled, held := now.Sub(c.progress) >= noProgress, now.Sub(start) >= maxWait; stalled || held {
			c.slow = true
			c.wmu.Unlock()
			why := fmt.Sprintf("no write to it completed for %s", noProgress)
			if !stalled {
				why = fmt.Sprintf("it held a publisher for %s", maxWait)
			}
			c.s.cfg.Logf("client %q is not keeping up (%s): its QoS 0 messages beyond %d queued are dropped until it catches up", c.info.ID, why, c.s.cfg.MaxPending)
			return
		}
		if c.drained == nil {
			c.drained = make(chan struct{})
		}
		ch := c.drained
		wait := min(noProgress-now.Sub(c.progress), maxWait-now.Sub(start))
		c.wmu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// writeChunk is how much one write hands the socket. A subscriber that
// reads slowly completes a chunk now and then, and each completion counts
// as progress (see waitRoom): a large batch written at once would look
// like a stall until all of it was through.
const writeChunk = 16 << 10

// write writes b in chunks, each with the write timeout, recording
// progress after each.
func (c *conn) write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		k, err := c.nc.Write(b[n:min(len(b), n+writeChunk)])
		n += k
		if err != nil {
			return n, err
		}
		if n < len(b) {
			c.wmu.Lock()
			c.progress = time.Now()
			c.wmu.Unlock()
		}
	}
	return n, nil
}

// closeWith sends p (nil: nothing more) as the connection's last packet
// and closes the connection once everything queued is written.
func (c *conn) closeWith(p packet.Packet) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if p != nil {
		c.appendLocked(p)
	}
	c.closeDone = true
	c.startFlushLocked()
}

// startFlushLocked starts the flush goroutine unless one runs or the
// connection is dead. Called with wmu held.
func (c *conn) startFlushLocked() {
	if !c.flushing && !c.dead {
		c.flushing = true
		go c.flush()
	}
}

// setVersion records the protocol version. Only the reader goroutine
// writes it, under wmu, so that other goroutines may read it under wmu
// (versionLocked) while CONNECT is still being handled.
func (c *conn) setVersion(v packet.Version) {
	c.wmu.Lock()
	c.version = v
	c.wmu.Unlock()
}

// versionLocked reads the version from any goroutine.
func (c *conn) versionLocked() packet.Version {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.version
}

// shutdown ends the connection for a server shutdown: MQTT 5 clients are
// told why [MQTT-4.13.2-1].
func (c *conn) shutdown() {
	if c.versionLocked() == packet.V5 {
		c.closeWith(&packet.Disconnect{Code: packet.ServerShuttingDown})
		return
	}
	c.closeWith(nil)
}

// finish waits (bounded by the write timeout) for what is queued to be
// written, then closes the socket.
func (c *conn) finish() {
	c.wmu.Lock()
	c.closeDone = true
	if len(c.wbuf) > 0 {
		c.startFlushLocked() // what the connection's goroutine queued last
	}
	var wait chan struct{}
	if c.flushing && !c.dead {
		if c.flushed == nil {
			c.flushed = make(chan struct{})
		}
		wait = c.flushed
	} else {
		c.dead = true
	}
	c.wmu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-time.After(c.s.cfg.WriteTimeout):
		}
	}
	_ = c.nc.Close()
}

// current reports whether c still holds its session (a take-over moves
// the session to the new connection).
func (c *conn) current() bool {
	c.se.mu.Lock()
	defer c.se.mu.Unlock()
	return c.se.c == c
}

// assignID makes a client identifier for a client that sent none
// [MQTT-3.1.3-6]: unique on this server for its lifetime.
func (s *Server) assignID() string {
	s.mu.Lock()
	s.idSeq++
	n := s.idSeq
	s.mu.Unlock()
	return "mqtk-" + strconv.FormatInt(s.now().UnixNano()%1e9, 36) + "-" + strconv.FormatUint(n, 36)
}
