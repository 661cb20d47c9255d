package mqttconn

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/mqtk/mqtk/internal/clierr"
)

// v3InFlight bounds QoS 1/2 messages awaiting acknowledgement. MQTT 3.1.1
// has no receive maximum, so the client sets its own limit to keep memory
// bounded when a broker is slow to acknowledge.
const v3InFlight = 1024

// v3Client is the MQTT 3.1.1 and 3.1 Client on paho.mqtt.golang, running
// over a connection we dial ourselves so transports, TLS diagnosis and the
// packet trace are the same as for MQTT 5.
type v3Client struct {
	cfg Config
	mc  mqtt.Client

	sem  chan struct{} // in-flight slots
	acks chan *v3Wait  // results, in publish order
	wmu  sync.Mutex    // makes "publish then enqueue" atomic, keeping order

	quit    chan struct{}
	ackDone chan struct{}

	lifecycle
}

type v3Wait struct {
	topic string
	tok   mqtt.Token
	slot  bool
	done  func(error)
}

// v3Reasons maps 3.1.1 CONNACK return codes to their MQTT 5 reason codes,
// so refusals read and exit the same whatever the version.
var v3Reasons = map[byte]byte{1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}

func dialV3(ctx context.Context, cfg Config, id string) (Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	w, err := openConn(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	c := &v3Client{
		cfg:     cfg,
		sem:     make(chan struct{}, v3InFlight),
		acks:    make(chan *v3Wait, v3InFlight+64),
		quit:    make(chan struct{}),
		ackDone: make(chan struct{}),
	}
	c.initLifecycle()
	var used sync.Once
	opts := mqtt.NewClientOptions()
	// The broker URL only labels the connection: CustomOpenConnectionFn
	// hands over the conn dialled above, exactly once (no auto reconnect).
	opts.AddBroker("tcp://" + cfg.Addr())
	opts.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		var conn net.Conn = nil
		used.Do(func() { conn = w })
		if conn == nil {
			return nil, errors.New("connection already used")
		}
		return conn, nil
	})
	opts.SetClientID(id)
	opts.SetUsername(cfg.Username)
	opts.SetPassword(cfg.Password)
	opts.SetCleanSession(!cfg.NoClean)
	opts.SetKeepAlive(cfg.KeepAlive)
	opts.SetProtocolVersion(uint(cfg.Version))
	opts.SetAutoReconnect(false) // callers decide whether to redial
	opts.SetConnectRetry(false)
	opts.SetOrderMatters(true) // OnMessage sees messages in arrival order
	opts.SetConnectTimeout(cfg.ConnectTimeout)
	opts.SetResumeSubs(false)
	if cfg.Will != nil {
		opts.SetBinaryWill(cfg.Will.Topic, cfg.Will.Payload, cfg.Will.QoS, cfg.Will.Retain)
	}
	// We acknowledge ourselves, once the handler has returned, so that
	// Disconnect can wait for the acknowledgement (lifecycle.unacked).
	// OrderMatters runs handlers one at a time, so acks keep their order.
	opts.SetAutoAckDisabled(true)
	opts.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		if m.Qos() > 0 {
			c.unacked.Add(1)
			defer c.unacked.Add(-1)
		}
		defer m.Ack() // queued to the writer before DISCONNECT can be
		if cfg.OnMessage == nil {
			return
		}
		cfg.OnMessage(&Message{
			Topic:    m.Topic(),
			Payload:  m.Payload(),
			QoS:      m.Qos(),
			Retain:   m.Retained(),
			Dup:      m.Duplicate(),
			PacketID: m.MessageID(),
			Received: time.Now(),
		})
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		c.end(lost(&c.cfg, err), true)
	})
	c.mc = mqtt.NewClient(opts)
	tok := c.mc.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// Cut the CONNACK read short: paho sets its own deadline on the
		// conn, and a cancelled ctx (Ctrl-C) must not wait for it.
		_ = w.Close()
		<-tok.Done()
	}
	if err := tok.Error(); err != nil {
		ct, _ := tok.(*mqtt.ConnectToken)
		if ct != nil {
			if code, ok := v3Reasons[ct.ReturnCode()]; ok {
				return nil, refused(&cfg, code, "")
			}
		}
		if ctx.Err() != nil {
			// We closed the conn because ctx ended: that is the cause.
			err = ctx.Err()
		}
		err = unwrapPahoNetwork(err)
		return nil, diagnose(&cfg, err, w, w.st)
	}
	c.info = Info{
		Version:         cfg.Version,
		ClientID:        id,
		MaximumQoS:      2,
		RetainAvailable: true,
		Addr:            cfg.Addr(),
	}
	if ct, ok := tok.(*mqtt.ConnectToken); ok {
		c.info.SessionPresent = ct.SessionPresent()
	}
	go c.acker()
	return c, nil
}

// unwrapPahoNetwork drops paho's "network Error : " wrapper, which says
// nothing the cause does not, so messages read the same for every version.
func unwrapPahoNetwork(err error) error {
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		errs := m.Unwrap()
		if len(errs) == 2 && errors.Is(errs[0], packets.ErrorNetworkError) {
			return errs[1]
		}
	}
	return err
}

func (c *v3Client) Publish(ctx context.Context, m *Message) error {
	return publishAndWait(ctx, c, m)
}

func (c *v3Client) PublishAsync(ctx context.Context, m *Message, done func(error)) {
	if m.QoS > 2 {
		done(clierr.Usagef("qos %d out of range 0..2", m.QoS))
		return
	}
	slot := m.QoS > 0
	if slot {
		if err := c.takeSlot(ctx, c.sem, c.quit); err != nil {
			done(err)
			return
		}
	}
	if !c.enter() {
		if slot {
			<-c.sem
		}
		done(c.closedErr())
		return
	}
	defer c.leave()
	// Holding wmu across Publish and the enqueue keeps the acker's order
	// the same as the wire order when several goroutines publish.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	tok := c.mc.Publish(m.Topic, m.QoS, m.Retain, m.Payload)
	c.acks <- &v3Wait{topic: m.Topic, tok: tok, slot: slot, done: done}
}

// acker calls done callbacks in publish order as tokens complete.
func (c *v3Client) acker() {
	defer close(c.ackDone)
	for w := range c.acks {
		var err error
		select {
		case <-w.tok.Done():
			err = w.tok.Error()
		case <-c.quit:
			select {
			case <-w.tok.Done():
				err = w.tok.Error()
			default:
				err = errors.New("the connection ended before the broker acknowledged the message")
			}
		}
		if w.slot {
			<-c.sem
		}
		if err != nil {
			var e *clierr.Error
			if !errors.As(err, &e) {
				err = &clierr.Error{Kind: clierr.KindNetwork, Op: "publish to " + w.topic, Err: err}
			}
		}
		w.done(err)
	}
}

func (c *v3Client) Subscribe(ctx context.Context, subs []Subscription) ([]byte, error) {
	filters := make(map[string]byte, len(subs))
	for _, s := range subs {
		filters[s.Filter] = s.QoS
	}
	tok := c.mc.SubscribeMultiple(filters, nil)
	if err := c.wait(ctx, tok, "subscribe"); err != nil {
		return nil, err
	}
	res := tok.(*mqtt.SubscribeToken).Result()
	codes := make([]byte, len(subs))
	for i, s := range subs {
		codes[i] = res[s.Filter]
	}
	return codes, nil
}

func (c *v3Client) Unsubscribe(ctx context.Context, filters ...string) error {
	return c.wait(ctx, c.mc.Unsubscribe(filters...), "unsubscribe")
}

func (c *v3Client) wait(ctx context.Context, tok mqtt.Token, op string) error {
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-c.quit:
		return c.closedErr()
	}
	if err := tok.Error(); err != nil {
		return &clierr.Error{Kind: clierr.KindNetwork, Op: op, Err: err}
	}
	return nil
}

func (c *v3Client) Disconnect(ctx context.Context) error {
	c.endOnce.Do(func() {
		c.markClosed(nil)
		// Acknowledgements first; quiesce then lets them and the
		// DISCONNECT go out.
		c.waitAcks(ackWait)
		c.mc.Disconnect(250)
		close(c.quit)
		go c.finish(nil, false)
	})
	return c.waitDone(ctx)
}

func (c *v3Client) end(err error, wasLost bool) {
	c.endOnce.Do(func() {
		c.markClosed(err)
		close(c.quit)
		go c.finish(err, wasLost)
	})
}

func (c *v3Client) finish(err error, wasLost bool) {
	// No publisher starts once closed is set; wait for those under way.
	c.mu.Lock()
	for c.senders > 0 {
		c.cond.Wait()
	}
	c.mu.Unlock()
	close(c.acks)
	<-c.ackDone
	close(c.done)
	if wasLost && c.cfg.OnConnectionLost != nil {
		c.cfg.OnConnectionLost(err)
	}
}
