package engine

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// session is the state that outlives a connection [MQTT-4.1]: the
// subscriptions (held in the router's tree under the session's id), the
// messages in flight and queued towards the client, the QoS 2 messages
// received from it and not yet released, the will, and the expiry.
//
// Concurrency: mu guards every field below it; the connection's reader
// goroutine and every publisher's goroutine call in.
type session struct {
	s         *Server
	id        string
	connected atomic.Bool

	mu      sync.Mutex
	c       *conn
	owner   Client // who created the session: take-over is for the same user only
	version packet.Version

	expiry      uint32    // session expiry interval, seconds; 0xFFFFFFFF never
	offline     time.Time // when the last connection ended
	nextRef     uint64    // last store reference given to a message of this session
	expireTimer *time.Timer
	will        *Message
	willDelay   uint32
	willTimer   *time.Timer
	gone        bool // expired or replaced: nothing more is delivered

	// Towards the client. inflight is in the order the messages were
	// first sent, which is the order they are resent in [MQTT-4.6.0-1].
	recvMax  int // the client's Receive Maximum (MaxInflight before MQTT 5)
	nextID   uint16
	inflight []*outFlight
	queue    []queued

	// From the client: QoS 2 packet identifiers whose PUBREC was sent and
	// whose PUBREL has not arrived. A separate space from inflight's
	// identifiers [MQTT-2.2.1-?]: each direction numbers its own packets.
	inQoS2 map[uint16]struct{}
}

// outFlight is one QoS 1/2 message sent (or about to be) to the client
// and not yet acknowledged.
type outFlight struct {
	ref  uint64 // store reference; 0 when not stored
	id   uint16
	m    *Message
	d    delivery
	sent bool // written to a connection: a resend carries DUP [MQTT-3.3.1-1]
	rel  bool // QoS 2: PUBREC received, PUBREL sent, PUBCOMP awaited
}

type queued struct {
	m   *Message
	d   delivery
	ref uint64
}

func (se *session) online() bool { return se.connected.Load() }

// stopTimers cancels the will and expiry timers (server shutdown).
func (se *session) stopTimers() {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.expireTimer != nil {
		se.expireTimer.Stop()
	}
	if se.willTimer != nil {
		se.willTimer.Stop()
	}
}

// attach makes c the session's connection and resends what was in flight,
// in order, with DUP on what had been sent [MQTT-4.4.0-1], PUBREL for the
// QoS 2 messages already received by the client [MQTT-4.4.0-2]; then the
// queue. Called after CONNACK was queued on c.
func (se *session) attach(c *conn) {
	se.mu.Lock()
	defer se.mu.Unlock()
	se.c = c
	se.version = c.version
	se.connected.Store(true)
	se.recvMax = c.recvMax
	if se.expireTimer != nil {
		se.expireTimer.Stop()
		se.expireTimer = nil
	}
	if se.willTimer != nil {
		// A reconnect within the will delay cancels the will
		// (3.1.3.2.2).
		se.willTimer.Stop()
		se.willTimer = nil
	}
	now := se.s.now()
	kept := se.inflight[:0]
	for _, f := range se.inflight {
		if f.rel {
			kept = append(kept, f)
			c.send(&packet.Ack{Kind: packet.TypePubrel, PacketID: f.id})
			continue
		}
		if _, _, expired := f.m.expiry(now); expired {
			se.s.count.discarded.Add(1)
			se.forgetLocked(f.ref)
			continue // [MQTT-3.3.2-5] expired while the client was away
		}
		if c.sendPublish(f.m, f.d, f.id, f.sent) {
			se.forgetLocked(f.ref) // too large for this client: done with
			continue
		}
		kept = append(kept, f)
		f.sent = true
	}
	clear(se.inflight[len(kept):])
	se.inflight = kept
	se.fillLocked()
}

// detach is called when c ends. It arranges the will and the expiry.
func (se *session) detach(c *conn, publishWill bool) {
	se.mu.Lock()
	if se.c != c {
		se.mu.Unlock()
		return
	}
	se.c = nil
	se.connected.Store(false)
	will := se.will
	if !publishWill {
		se.will = nil
		will = nil
	}
	delay := time.Duration(se.willDelay) * time.Second
	expiry := se.expiry
	se.offline = se.s.now()
	var rec *SessionRecord
	if se.persistentLocked() && se.s.cfg.Store != nil {
		r := se.recordLocked()
		rec = &r
	}
	se.mu.Unlock()
	if rec != nil {
		se.s.cfg.Store.Lazy([]Op{{Kind: PutSession, Client: se.id, Session: *rec}})
	}

	if will != nil {
		// [MQTT-3.1.3-9] the will waits for its delay, or for the session
		// to end if that comes first.
		if expiry != 0xFFFFFFFF && time.Duration(expiry)*time.Second < delay {
			delay = time.Duration(expiry) * time.Second
		}
		if delay == 0 {
			se.fireWill()
		} else {
			se.mu.Lock()
			se.willTimer = time.AfterFunc(delay, se.fireWill)
			se.mu.Unlock()
		}
	}
	if expiry == 0 {
		se.s.endSession(se)
		return
	}
	if expiry != 0xFFFFFFFF {
		se.mu.Lock()
		if !se.gone && se.c == nil {
			se.expireTimer = time.AfterFunc(time.Duration(expiry)*time.Second, func() { se.s.expireSession(se) })
		}
		se.mu.Unlock()
	}
}

// fireWill publishes the will, unless a reconnect or a clean DISCONNECT
// took it away first.
func (se *session) fireWill() {
	se.mu.Lock()
	w := se.will
	se.will = nil
	se.willTimer = nil
	online := se.c != nil
	se.mu.Unlock()
	if w == nil || online {
		return
	}
	w.Created = se.s.now()
	if err := se.s.Publish(w, true); err != nil {
		se.s.cfg.Logf("will of %q not published: %v", se.id, err)
	}
}

// deliver sends m to the client or queues it. It returns the connection
// it wrote to, if any, for the publisher to check for congestion.
func (se *session) deliver(m *Message, d delivery, ref uint64) *conn {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.gone {
		return nil
	}
	d.qos = min(d.qos, m.QoS) // [MQTT-3.8.4-8] the lower of the two
	if se.c != nil && !se.s.cfg.Hooks.MayRead(&se.c.info, m.Topic) {
		se.forgetLocked(ref)
		return nil
	}
	if d.qos == 0 {
		// QoS 0 goes out now or not at all: it is not queued for an
		// offline client (mosquitto's queue_qos0_messages false).
		if se.c != nil {
			se.c.sendPublish(m, d, 0, false)
		}
		return se.c
	}
	if se.c != nil && len(se.inflight) < se.recvMax && len(se.queue) == 0 {
		se.startLocked(m, d, ref)
		return se.c
	}
	if len(se.inflight)+len(se.queue) >= se.s.cfg.MaxQueued {
		// The session holds as many QoS 1/2 messages as it may, in flight
		// and queued together: a new one is dropped and counted, as
		// mosquitto does beyond max_queued_messages, so an absent client
		// cannot make the broker grow without bound.
		se.forgetLocked(ref)
		se.s.count.dropped.Add(1)
		return nil
	}
	d.later = false
	se.queue = append(se.queue, queued{m: m, d: d, ref: ref})
	return nil
}

// storeRef returns a new store reference for a message of a session that
// outlives its connection, or 0 for one that does not.
func (se *session) storeRef() uint64 {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.gone || !se.persistentLocked() {
		return 0
	}
	se.nextRef++
	return se.nextRef
}

// forgetLocked deletes a stored copy that will never be delivered or is
// done with. Losing the deletion in a crash only redelivers.
func (se *session) forgetLocked(ref uint64) {
	if ref != 0 && se.s.cfg.Store != nil {
		se.s.cfg.Store.Lazy([]Op{{Kind: DeleteMessage, Client: se.id, Ref: ref}})
	}
}

// startLocked puts a QoS 1/2 message in flight and sends it.
// [MQTT-3.3.4-9] never more in flight than the client's Receive Maximum:
// callers check the window first.
func (se *session) startLocked(m *Message, d delivery, ref uint64) {
	id := se.newIDLocked()
	f := &outFlight{id: id, m: m, d: d, ref: ref}
	f.d.later = false
	se.inflight = append(se.inflight, f)
	if se.c != nil {
		if se.c.sendPublish(m, d, id, false) {
			// Too large for this client [MQTT-3.1.2-25]: as if sent and
			// acknowledged, so it takes no slot of the window.
			se.inflight = se.inflight[:len(se.inflight)-1]
			se.forgetLocked(ref)
			return
		}
		f.sent = true
	}
}

// newIDLocked returns a packet identifier not in use towards the client
// [MQTT-2.2.1-3].
func (se *session) newIDLocked() uint16 {
	for {
		se.nextID++
		if se.nextID == 0 {
			se.nextID = 1
		}
		if se.findLocked(se.nextID) < 0 {
			return se.nextID
		}
	}
}

func (se *session) findLocked(id uint16) int {
	for i, f := range se.inflight {
		if f.id == id {
			return i
		}
	}
	return -1
}

// fillLocked moves queued messages into the window while it has room.
func (se *session) fillLocked() {
	if se.c == nil {
		return
	}
	now := se.s.now()
	n := 0
	for n < len(se.queue) && len(se.inflight) < se.recvMax {
		q := se.queue[n]
		n++
		if _, _, expired := q.m.expiry(now); expired {
			se.s.count.discarded.Add(1)
			se.forgetLocked(q.ref)
			continue
		}
		se.startLocked(q.m, q.d, q.ref)
	}
	clear(se.queue[:n])
	se.queue = se.queue[n:]
	if len(se.queue) == 0 {
		se.queue = nil
	}
}

// acked handles PUBACK, PUBREC and PUBCOMP from the client. It reports
// false for an identifier that is not in flight in that state.
func (se *session) acked(kind packet.Type, id uint16, code packet.ReasonCode) bool {
	se.mu.Lock()
	defer se.mu.Unlock()
	i := se.findLocked(id)
	if i < 0 {
		return false
	}
	f := se.inflight[i]
	switch kind {
	case packet.TypePuback:
		if f.d.qos != 1 {
			return false
		}
	case packet.TypePubrec:
		if f.d.qos != 2 || f.rel {
			return f.rel // a repeated PUBREC gets the PUBREL again
		}
		if code < 0x80 {
			// [MQTT-4.3.3-?] PUBREC success: release the message and
			// wait for PUBCOMP; the identifier stays in use.
			f.rel = true
			return true
		}
		// A PUBREC with an error ends the exchange [MQTT-4.3.3-?].
	case packet.TypePubcomp:
		if !f.rel {
			return false
		}
	}
	se.inflight = append(se.inflight[:i], se.inflight[i+1:]...)
	se.forgetLocked(f.ref)
	se.fillLocked()
	return true
}

// received records an inbound QoS 2 PUBLISH; it reports false if the
// identifier was already awaiting its PUBREL (a resend: not routed again
// [MQTT-4.3.3-?]).
func (se *session) received(id uint16) bool {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.inQoS2 == nil {
		se.inQoS2 = map[uint16]struct{}{}
	}
	if _, dup := se.inQoS2[id]; dup {
		return false
	}
	se.inQoS2[id] = struct{}{}
	return true
}

// released handles PUBREL; it reports whether id was awaiting it.
func (se *session) released(id uint16) bool {
	se.mu.Lock()
	defer se.mu.Unlock()
	if _, ok := se.inQoS2[id]; !ok {
		return false
	}
	delete(se.inQoS2, id)
	return true
}

// awaiting reports whether an inbound QoS 2 message with id awaits its
// PUBREL.
func (se *session) awaiting(id uint16) bool {
	se.mu.Lock()
	defer se.mu.Unlock()
	_, ok := se.inQoS2[id]
	return ok
}

// pendingIn is the number of inbound QoS 2 messages not yet released.
func (se *session) pendingIn() int {
	se.mu.Lock()
	defer se.mu.Unlock()
	return len(se.inQoS2)
}

// endSession removes a session that ended (clean start, zero expiry) or
// expired, with its subscriptions and its stored record, unless a new
// connection resumed it meanwhile. A session that a clean CONNECT already
// replaced under the same id only drops what it held: the subscriptions
// and the stored record under that id are the new session's now (accept
// removed the old ones).
func (s *Server) endSession(se *session) {
	defer s.lockID(se.id)()
	se.mu.Lock()
	if se.c != nil {
		se.mu.Unlock()
		return // a new connection resumed it meanwhile
	}
	se.gone = true
	se.inflight, se.queue = nil, nil
	stored := se.persistentLocked()
	se.mu.Unlock()
	s.mu.Lock()
	current := s.sessions[se.id] == se
	if current {
		delete(s.sessions, se.id)
	}
	s.mu.Unlock()
	if !current {
		return
	}
	s.router.subs.RemoveClient(se.id)
	if stored && s.cfg.Store != nil {
		s.cfg.Store.Lazy([]Op{{Kind: DeleteSession, Client: se.id}})
	}
}

// recordLocked is the session as the store keeps it.
func (se *session) recordLocked() SessionRecord {
	r := SessionRecord{ID: se.id, Username: se.owner.Username, HasUser: se.owner.HasUser,
		Version: se.version, Expiry: se.expiry}
	if se.c == nil {
		r.Offline = se.offline
	}
	return r
}

// expireSession ends a session whose expiry interval passed while it was
// offline [MQTT-4.1.0-?]; its pending will goes out now (3.1.3.2.2).
func (s *Server) expireSession(se *session) {
	se.mu.Lock()
	if se.c != nil || se.gone {
		se.mu.Unlock()
		return
	}
	w := se.will
	se.will = nil
	if se.willTimer != nil {
		se.willTimer.Stop()
		se.willTimer = nil
	}
	se.mu.Unlock()
	if w != nil {
		w.Created = s.now()
		if err := s.Publish(w, true); err != nil {
			s.cfg.Logf("will of %q not published: %v", se.id, err)
		}
	}
	s.endSession(se)
}
