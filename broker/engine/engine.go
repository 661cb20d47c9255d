// Package engine is mqtk broker's MQTT engine: connections, sessions,
// routing, retained messages, wills and flow control for MQTT 3.1, 3.1.1
// and 5 on one code path, built on internal/packet and internal/topic.
// What makes it a product (listeners, TLS, password files, ACLs,
// persistence, metrics) lives in package broker and reaches the engine
// through Hooks.
//
// The shape:
//   - a conn owns its socket: one read goroutine decoding into reused
//     packets, and a write path that coalesces packets into one buffer and
//     starts a flushing goroutine only while something is queued, so an
//     idle connection holds neither a writer goroutine nor a write buffer;
//     on Linux, a plain TCP or Unix connection idle for ParkAfter gives up
//     its read goroutine too, and one epoll instance watches its socket
//     (park_linux.go);
//   - a session owns what outlives a connection: packet identifiers per
//     direction, the in-flight window bounded by the client's Receive
//     Maximum, the queue, the will, the expiry;
//   - the router owns subscriptions (internal/topic's tree, with shared
//     groups) and retained messages.
//
// Lock order: Server.mu, then a session's mu, then its conn's wmu. The
// router's locks are taken with none of these held.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// Config bounds what clients may cost and sets the protocol limits the
// engine announces. Zero values take the defaults of DefaultConfig.
type Config struct {
	MaxPacketSize     uint32 // largest packet accepted from a client, fixed header included
	MaxClients        int    // connected clients; 0 means no limit
	ReceiveMaximum    uint16 // QoS 1/2 publishes a client may have unacknowledged towards us
	MaxInflight       uint16 // QoS 1/2 messages in flight to a client that announces no Receive Maximum (3.1.1)
	MaxQueued         int    // QoS 1/2 messages queued per session beyond the in-flight window
	MaxPending        int    // packets waiting to be written to a connection before publishers wait (see waitRoom)
	MaxMessageExpiry  time.Duration
	MaxSessionExpiry  time.Duration
	MaxKeepalive      uint16 // seconds; larger client values are lowered (Server Keep Alive in MQTT 5)
	MaxClientIDLength int
	MaxTopicLength    int
	MaxTopicLevels    int
	TopicAliasMaximum uint16 // aliases a client may define towards us
	// TopicAliasOut caps the aliases the engine assigns in PUBLISH packets
	// to an MQTT 5 client (never more than the client's own maximum).
	TopicAliasOut  uint16
	ConnectTimeout time.Duration
	WriteTimeout   time.Duration
	// ReadBuffer is a connection's first read buffer; it grows for busy
	// connections and large packets and is let go when the connection is
	// idle. WriteBuffer is the largest write buffer a busy connection
	// keeps between writes.
	ReadBuffer  int
	WriteBuffer int
	// ParkAfter is how long a connection reads nothing before its
	// goroutine is let go and the engine watches its socket instead
	// (Linux, plain TCP and Unix sockets); negative: never.
	ParkAfter time.Duration
	// Exact says zero values were meant (no outbound aliases, …) rather
	// than left for the defaults.
	Exact bool

	Hooks Hooks
	// Store makes sessions, subscriptions and messages durable; nil keeps
	// everything in memory.
	Store Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logf receives commentary (connections dropped and why); nil drops it.
	Logf func(format string, args ...any)
}

// DefaultConfig is what a zero Config field means.
func DefaultConfig() Config {
	return Config{
		MaxPacketSize: 1 << 20,
		// The engine delivers a QoS 2 message when it arrives and keeps
		// only its packet identifier until PUBREL, so a wide window costs
		// little; a narrow one disconnects clients that overrun it, and
		// Debian's python paho 1.6.1 does when it publishes to itself (it
		// counts incoming PUBRELs against its own outgoing window).
		ReceiveMaximum:    65535,
		MaxInflight:       20,   // mosquitto's max_inflight_messages
		MaxQueued:         1000, // mosquitto's max_queued_messages
		MaxPending:        1024,
		MaxSessionExpiry:  7 * 24 * time.Hour,
		MaxKeepalive:      65535,
		MaxClientIDLength: 256,
		MaxTopicLength:    4096,
		MaxTopicLevels:    64,
		TopicAliasMaximum: 10,
		TopicAliasOut:     10,
		ConnectTimeout:    10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ReadBuffer:        512,
		WriteBuffer:       64 << 10,
		ParkAfter:         time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.MaxPacketSize = cmp.Or(c.MaxPacketSize, d.MaxPacketSize)
	c.ReceiveMaximum = cmp.Or(c.ReceiveMaximum, d.ReceiveMaximum)
	c.MaxInflight = cmp.Or(c.MaxInflight, d.MaxInflight)
	c.MaxQueued = cmp.Or(c.MaxQueued, d.MaxQueued)
	c.MaxPending = cmp.Or(c.MaxPending, d.MaxPending)
	c.MaxKeepalive = cmp.Or(c.MaxKeepalive, d.MaxKeepalive)
	c.MaxClientIDLength = cmp.Or(c.MaxClientIDLength, d.MaxClientIDLength)
	c.MaxTopicLength = cmp.Or(c.MaxTopicLength, d.MaxTopicLength)
	c.MaxTopicLevels = cmp.Or(c.MaxTopicLevels, d.MaxTopicLevels)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, d.ConnectTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, d.WriteTimeout)
	c.ReadBuffer = cmp.Or(c.ReadBuffer, d.ReadBuffer)
	c.WriteBuffer = cmp.Or(c.WriteBuffer, d.WriteBuffer)
	c.ParkAfter = cmp.Or(c.ParkAfter, d.ParkAfter)
	if !c.Exact {
		// Where zero means something (no session kept, no aliases), it
		// takes the default only when the caller did not say it was meant.
		c.MaxSessionExpiry = cmp.Or(c.MaxSessionExpiry, d.MaxSessionExpiry)
		c.TopicAliasMaximum = cmp.Or(c.TopicAliasMaximum, d.TopicAliasMaximum)
		c.TopicAliasOut = cmp.Or(c.TopicAliasOut, d.TopicAliasOut)
	}
	if c.Hooks == nil {
		c.Hooks = AllowAll{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// Client is what hooks learn about a connected client. It does not change
// after CONNECT, so hooks may keep it.
type Client struct {
	ID       string
	Username string
	HasUser  bool
	Remote   string
	CertCN   string // verified client certificate common name, if any
	Version  packet.Version
	Listener string
}

// Hooks are the points where the product decides: who may connect, what
// they may publish and read. They are called on connection goroutines,
// concurrently; implementations must be safe for that.
type Hooks interface {
	// Authenticate decides a CONNECT; it returns Success or the MQTT 5
	// reason code to refuse with (BadUserNameOrPassword, NotAuthorized,
	// …). The engine maps it for 3.1/3.1.1 clients. It must take the same
	// time for unknown and known users.
	Authenticate(c *Client, password []byte, hasPassword bool) packet.ReasonCode
	// MayPublish reports whether c may publish to topic (also checked for
	// a will at CONNECT [MQTT-3.1.2-?]: a will the client could not publish
	// is refused with the connection).
	MayPublish(c *Client, topic string, retain bool) bool
	// MaySubscribe reports whether c may subscribe to filter ($share
	// prefix removed).
	MaySubscribe(c *Client, filter string) bool
	// MayRead reports whether c may receive a message published to topic;
	// it is asked at delivery, so a changed ACL applies to what is queued.
	MayRead(c *Client, topic string) bool
}

// AllowAll is the Hooks of a broker without authentication or ACL.
type AllowAll struct{}

// Authenticate implements Hooks.
func (AllowAll) Authenticate(*Client, []byte, bool) packet.ReasonCode { return packet.Success }

// MayPublish implements Hooks.
func (AllowAll) MayPublish(*Client, string, bool) bool { return true }

// MaySubscribe implements Hooks.
func (AllowAll) MaySubscribe(*Client, string) bool { return true }

// MayRead implements Hooks.
func (AllowAll) MayRead(*Client, string) bool { return true }

// Server is one engine: the sessions, the router, the connections.
type Server struct {
	cfg    Config
	router *router
	count  counters

	// idLocks order the changes of owner of one client id: a CONNECT
	// taking or replacing a session, and the end of the session it
	// replaced. Without them the end of an old session, running late,
	// removed the subscriptions the new session had just made under the
	// same id. Striped by a hash of the id so that unrelated clients do
	// not wait for each other's store writes. Never taken with mu or a
	// subscription-tree lock held.
	idLocks [64]sync.Mutex
	idSeed  maphash.Seed

	mu       sync.Mutex // guards everything below
	sessions map[string]*session
	conns    map[*conn]struct{}
	closing  bool
	connWG   sync.WaitGroup
	idSeq    uint64
	poll     *poller // made at the first park
	noPark   bool    // the poller could not be made: connections keep their goroutines
}

// lockID locks the changes of owner of client id id; the caller calls
// the function it returns to unlock.
func (s *Server) lockID(id string) func() {
	m := &s.idLocks[maphash.String(s.idSeed, id)%uint64(len(s.idLocks))]
	m.Lock()
	return m.Unlock
}

// ErrClosed is returned by Serve once Close has begun.
var ErrClosed = errors.New("engine: server closed")

// New returns a Server with cfg (zero fields take DefaultConfig's values).
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	return &Server{
		cfg:      cfg,
		router:   newRouter(),
		idSeed:   maphash.MakeSeed(),
		sessions: map[string]*session{},
		conns:    map[*conn]struct{}{},
	}
}

// Serve runs the MQTT protocol on nc until the connection ends, and closes
// it. info carries what the listener knows (remote address, certificate
// name, listener name); the rest is filled from CONNECT.
func (s *Server) Serve(nc net.Conn, info Client) error {
	ended := make(chan error, 1)
	s.Start(nc, info, func(err error) { ended <- err })
	return <-ended
}

// Start runs the MQTT protocol on nc, as Serve does, but returns at once;
// done is called once, from some goroutine, with how the connection
// ended. A listener that starts its connections this way holds no
// goroutine for an idle one (see Config.ParkAfter).
func (s *Server) Start(nc net.Conn, info Client, done func(error)) {
	c := newConn(s, nc, info, done)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = nc.Close()
		if done != nil {
			done(ErrClosed)
		}
		return
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	go c.run(true)
}

// poller returns the poller for parked connections, made at the first
// park; nil if there is none (closing, or it could not be made).
func (s *Server) poller() *poller {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.poll == nil && !s.noPark && !s.closing {
		p, err := newPoller()
		if err != nil {
			s.noPark = true
			s.cfg.Logf("idle connections keep their goroutines: %v", err)
			return nil
		}
		s.poll = p
	}
	return s.poll
}

// Close disconnects every client (MQTT 5 clients hear "server shutting
// down" [MQTT-4.13.2-1]) and waits, up to ctx, for their connections to
// end. Wills are not published for a shutdown the clients did not cause.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	for _, se := range s.sessions {
		se.stopTimers()
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		for _, c := range conns {
			c.closeSocket()
		}
		<-done
		err = fmt.Errorf("close engine: %w", ctx.Err())
	}
	s.mu.Lock()
	p := s.poll
	s.poll = nil
	s.mu.Unlock()
	if p != nil {
		p.close()
	}
	return err
}

// Publish routes a message as if a client had published it (a will, the
// broker's own $SYS topics). It is not checked against any ACL. A retained
// message is stored only when durable is set ($SYS values are not worth a
// disk write each).
func (s *Server) Publish(m *Message, durable bool) error {
	if m.Created.IsZero() {
		m.Created = s.now()
	}
	if m.Retain {
		if err := s.retain(m, durable); err != nil {
			return err
		}
	}
	return s.route(m)
}

// retain stores m as its topic's retained message (or clears it), durably
// first when durable is set and there is a store.
func (s *Server) retain(m *Message, durable bool) error {
	if st := s.cfg.Store; st != nil && durable {
		op := Op{Kind: PutRetained, Msg: m.record(delivery{qos: m.QoS, retain: true})}
		if len(m.Payload) == 0 {
			op.Kind = DeleteRetained
		}
		if err := st.Apply([]Op{op}); err != nil {
			return fmt.Errorf("store the retained message on %q: %w", m.Topic, err)
		}
	}
	s.router.retain(m)
	return nil
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// Ordinary reports whether err, returned by Serve, is an ordinary end of a
// connection (the client closed or disconnected, its session was taken
// over) or one the engine has already logged (a refused CONNECT, a
// protocol error), so the caller need not log it again.
func Ordinary(err error) bool {
	var pe *packet.Error
	return errors.Is(err, io.EOF) || errors.Is(err, errDisconnect) || errors.Is(err, errTakenOver) ||
		errors.Is(err, errRefused) || errors.Is(err, errWill) || errors.As(err, &pe)
}
