package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/packet"
)

// A probe needs control a library client hides: CONNECT properties of its
// choosing, not acknowledging a PUBLISH, closing without DISCONNECT,
// MQTT 3.1. So every probe speaks through rawConn, a small client on
// mqtk's own codec, over the byte stream the shared layer's DialConn
// opens (any transport, through --proxy).

// Errors a probe reports as a verdict rather than a failure of the run.
var (
	// errQuiet means nothing matching came within the wait.
	errQuiet = errors.New("nothing arrived")
	// errClosed means the broker closed the connection.
	errClosed = errors.New("the broker closed the connection")
)

// rawConn is one connection. A goroutine reads packets into in; the
// probe consumes them with next. Writes are serialised by wmu.
type rawConn struct {
	nc net.Conn
	v  packet.Version

	wmu       sync.Mutex
	nextID    uint16
	closeOnce sync.Once

	// autoAck acknowledges incoming QoS 1 and 2 PUBLISH packets as they
	// are read; the Receive Maximum probe turns it off.
	autoAck atomic.Bool

	in   chan packet.Packet
	quit chan struct{} // closed by drop: the reader stops delivering
	done chan struct{} // closed when the reader ends
	err  error         // why the reader ended; read after done

	// pending holds packets next skipped over, in order: a probe that
	// waits for a SUBACK must not lose the PUBLISH that came first.
	pending []packet.Packet

	inAliases map[uint16]string // owned by the reader
}

// connectResult is what one CONNECT exchange gave.
type connectResult struct {
	conn    *rawConn // nil unless accepted
	connack *packet.Connack
	elapsed time.Duration // dial, handshake and CONNECT → CONNACK
	// closed is set when the broker closed the connection instead of
	// answering (some brokers do so for a protocol level they lack).
	closed bool
}

// connect dials and sends cp at version v. A refusal is not an error:
// the CONNACK says why. Errors are for the dial and the exchange.
func (p *prober) connect(ctx context.Context, v packet.Version, cp *packet.Connect) (*connectResult, error) {
	ctx, cancel := context.WithTimeout(ctx, p.wait)
	defer cancel()
	start := time.Now()
	cfg := p.cfg
	// The version of this CONNECT, for the -d trace to decode the
	// exchange with.
	cfg.Version = mqttconn.Version(v)
	// DialConn's errors already say what they were connecting to.
	nc, err := p.dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if cp.Username == "" && p.cfg.Username != "" {
		cp.HasUsername, cp.Username = true, p.cfg.Username
	}
	if cp.Password == nil && p.cfg.Password != "" {
		cp.HasPassword, cp.Password = true, []byte(p.cfg.Password)
	}
	b, err := packet.Encode(cp, v)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("encode CONNECT: %w", err)
	}
	if _, err := nc.Write(b); err != nil {
		nc.Close()
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	rd := packet.NewReader(nc, 0)
	h, body, err := rd.Next(func(byte) bool { return true })
	if err != nil {
		nc.Close()
		if isClosed(err) {
			return &connectResult{closed: true, elapsed: time.Since(start)}, nil
		}
		return nil, fmt.Errorf("wait for CONNACK: %w", err)
	}
	if packet.Type(h>>4) != packet.TypeConnack {
		nc.Close()
		return nil, fmt.Errorf("the broker answered CONNECT with %s", packet.Type(h>>4))
	}
	dv := v
	if v == packet.V5 && len(body) == 2 {
		// A broker without MQTT 5 answers in its own version: a
		// 3.1.1 CONNACK, with no properties.
		dv = packet.V311
	}
	pk, err := packet.Decode(h, body, dv)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("decode CONNACK: %w", err)
	}
	res := &connectResult{connack: pk.(*packet.Connack), elapsed: time.Since(start)}
	if res.connack.Code != packet.Success || dv != v {
		nc.Close()
		return res, nil
	}
	_ = nc.SetDeadline(time.Time{})
	c := &rawConn{nc: nc, v: v, in: make(chan packet.Packet, 4096), quit: make(chan struct{}), done: make(chan struct{}), inAliases: map[uint16]string{}}
	c.autoAck.Store(true)
	go c.read(rd)
	res.conn = c
	return res, nil
}

// isClosed reports whether err means the peer closed or reset the stream.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// read is the reader goroutine: it decodes packets into c.in, answers
// what must be answered at once (PUBREL), and ends with the connection.
func (c *rawConn) read(rd *packet.Reader) {
	defer close(c.done)
	defer close(c.in)
	for {
		pk, err := rd.ReadPacket(c.v)
		if err != nil {
			c.err = err
			return
		}
		switch p := pk.(type) {
		case *packet.Publish:
			if a := p.Properties.TopicAlias; a != 0 {
				// A topic with an alias sets the alias; an empty topic
				// uses it.
				if p.Topic != "" {
					c.inAliases[a] = p.Topic
				} else {
					p.Topic = c.inAliases[a]
				}
			}
			if c.autoAck.Load() {
				c.ack(p)
			}
		case *packet.Ack:
			if p.Kind == packet.TypePubrel {
				// The QoS 2 receiver answers PUBREL with PUBCOMP.
				_ = c.send(&packet.Ack{Kind: packet.TypePubcomp, PacketID: p.PacketID})
			}
		}
		select {
		case c.in <- pk:
		case <-c.quit:
			return
		}
	}
}

// ack acknowledges an incoming PUBLISH of QoS 1 or 2.
func (c *rawConn) ack(p *packet.Publish) {
	switch p.QoS {
	case 1:
		_ = c.send(&packet.Ack{Kind: packet.TypePuback, PacketID: p.PacketID})
	case 2:
		_ = c.send(&packet.Ack{Kind: packet.TypePubrec, PacketID: p.PacketID})
	}
}

func (c *rawConn) send(p packet.Packet) error {
	return c.sendAll(p)
}

// sendAll writes ps in one write: they leave together, nothing awaited in
// between.
func (c *rawConn) sendAll(ps ...packet.Packet) error {
	var b []byte
	for _, p := range ps {
		pb, err := packet.Encode(p, c.v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", p.Type(), err)
		}
		b = append(b, pb...)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

func (c *rawConn) id() uint16 {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// next returns the first packet, pending ones first, for which want is
// true; others are kept for later calls. It returns errQuiet when d
// passes and errClosed when the connection ends.
func (c *rawConn) next(ctx context.Context, d time.Duration, want func(packet.Packet) bool) (packet.Packet, error) {
	for i, p := range c.pending {
		if want(p) {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return p, nil
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case p, ok := <-c.in:
			if !ok {
				return nil, errClosed
			}
			if want(p) {
				return p, nil
			}
			c.pending = append(c.pending, p)
		case <-t.C:
			return nil, errQuiet
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// message waits for the next PUBLISH on topic (any topic when empty).
func (c *rawConn) message(ctx context.Context, d time.Duration, topic string) (*packet.Publish, error) {
	p, err := c.next(ctx, d, func(p packet.Packet) bool {
		m, ok := p.(*packet.Publish)
		return ok && (topic == "" || m.Topic == topic)
	})
	if err != nil {
		return nil, err
	}
	return p.(*packet.Publish), nil
}

// subscribe sends one SUBSCRIBE and returns its SUBACK.
func (c *rawConn) subscribe(ctx context.Context, d time.Duration, subID uint32, subs ...packet.Subscription) (*packet.Suback, error) {
	s := &packet.Subscribe{PacketID: c.id(), Subscriptions: subs}
	if subID != 0 {
		s.Properties.SubscriptionIDs = []uint32{subID}
	}
	if err := c.send(s); err != nil {
		return nil, fmt.Errorf("send SUBSCRIBE: %w", err)
	}
	p, err := c.next(ctx, d, func(p packet.Packet) bool {
		a, ok := p.(*packet.Suback)
		return ok && a.PacketID == s.PacketID
	})
	if err != nil {
		return nil, fmt.Errorf("wait for SUBACK: %w", err)
	}
	return p.(*packet.Suback), nil
}

// granted reports whether every code of a SUBACK grants its filter.
func granted(a *packet.Suback) bool {
	for _, c := range a.Codes {
		if c >= 0x80 {
			return false
		}
	}
	return len(a.Codes) > 0
}

// publish sends p and, for QoS 1 and 2, completes its flow. It returns
// the final acknowledgement's reason code (0 for QoS 0).
func (c *rawConn) publish(ctx context.Context, d time.Duration, p *packet.Publish) (packet.ReasonCode, error) {
	if p.QoS > 0 && p.PacketID == 0 {
		p.PacketID = c.id()
	}
	if err := c.send(p); err != nil {
		return 0, fmt.Errorf("send PUBLISH: %w", err)
	}
	if p.QoS == 0 {
		return 0, nil
	}
	ackOf := func(t packet.Type) func(packet.Packet) bool {
		return func(x packet.Packet) bool {
			a, ok := x.(*packet.Ack)
			return ok && a.Kind == t && a.PacketID == p.PacketID
		}
	}
	if p.QoS == 1 {
		a, err := c.next(ctx, d, ackOf(packet.TypePuback))
		if err != nil {
			return 0, fmt.Errorf("wait for PUBACK: %w", err)
		}
		return a.(*packet.Ack).Code, nil
	}
	a, err := c.next(ctx, d, ackOf(packet.TypePubrec))
	if err != nil {
		return 0, fmt.Errorf("wait for PUBREC: %w", err)
	}
	if code := a.(*packet.Ack).Code; code >= 0x80 {
		return code, nil
	}
	if err := c.send(&packet.Ack{Kind: packet.TypePubrel, PacketID: p.PacketID}); err != nil {
		return 0, fmt.Errorf("send PUBREL: %w", err)
	}
	a, err = c.next(ctx, d, ackOf(packet.TypePubcomp))
	if err != nil {
		return 0, fmt.Errorf("wait for PUBCOMP: %w", err)
	}
	return a.(*packet.Ack).Code, nil
}

// disconnect sends DISCONNECT (with props at MQTT 5) and closes.
func (c *rawConn) disconnect(props *packet.Properties) {
	d := &packet.Disconnect{}
	if props != nil {
		d.Properties = *props
	}
	_ = c.send(d)
	c.drop()
}

// drop closes the connection without DISCONNECT, as a crash would.
func (c *rawConn) drop() {
	c.closeOnce.Do(func() { close(c.quit) })
	_ = c.nc.Close()
	<-c.done
}
