package engine

import (
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// Store makes durable what must survive a restart: sessions meant to
// outlive their connection, their subscriptions and their QoS 1/2
// messages, and retained messages. The engine calls it at the points the
// specification cares about: a subscriber's copy of a QoS 1/2 message and
// a retained message are durable before the publisher's PUBACK or PUBREC
// [MQTT-4.3.2-?] [MQTT-4.3.3-?], a subscription before its SUBACK.
//
// Implementations are called from many connection goroutines at once and
// never with an engine lock held.
type Store interface {
	// Apply makes ops durable, in order, and returns once they are; an
	// error means none of them may be relied on, and the engine refuses
	// what depended on them.
	Apply(ops []Op) error
	// Lazy writes ops whose loss in a crash costs at most a redelivery
	// (deletions after an acknowledgement, an offline time); it may return
	// before they are durable.
	Lazy(ops []Op)
}

// OpKind says what an Op does.
type OpKind uint8

// The store operations.
const (
	PutSession     OpKind = iota + 1 // Session
	DeleteSession                    // Client: the session, its subscriptions and messages
	PutSub                           // Client, Sub
	DeleteSub                        // Client, Sub.Filter
	PutMessage                       // Client, Ref, Msg: a QoS 1/2 message for a session
	DeleteMessage                    // Client, Ref
	PutRetained                      // Msg
	DeleteRetained                   // Msg.Topic
)

// Op is one change to the store.
type Op struct {
	Kind    OpKind
	Client  string
	Session SessionRecord
	Sub     SubRecord
	Ref     uint64
	Msg     *MessageRecord
}

// SessionRecord is a stored session.
type SessionRecord struct {
	ID       string
	Username string
	HasUser  bool
	Version  packet.Version
	Expiry   uint32    // session expiry interval, seconds
	Offline  time.Time // when its connection ended; zero while connected
}

// SubRecord is a stored subscription, filter as subscribed ($share
// prefix included).
type SubRecord struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                uint32
}

// MessageRecord is a stored message: for a session, with the QoS, retain
// flag and subscription identifiers it is delivered with.
type MessageRecord struct {
	Message // QoS and Retain as delivered, not as published
	SubIDs  []uint32
}

// Snapshot is what a Store held at start, for Server.Restore.
type Snapshot struct {
	Sessions []SessionRecord
	Subs     map[string][]SubRecord     // by client id
	Messages map[string][]StoredMessage // by client id, in Ref order
	Retained []*MessageRecord
}

// StoredMessage is one of a session's stored messages.
type StoredMessage struct {
	Ref uint64
	Msg *MessageRecord
}

func (m *Message) record(d delivery) *MessageRecord {
	r := &MessageRecord{Message: *m, SubIDs: d.ids}
	r.QoS, r.Retain = d.qos, d.retain
	return r
}

func (r *MessageRecord) message() (*Message, delivery) {
	m := r.Message
	return &m, delivery{qos: r.QoS, retain: r.Retain, ids: r.SubIDs}
}

func (o subOpts) record(filter string) SubRecord {
	return SubRecord{Filter: filter, QoS: o.qos, NoLocal: o.noLocal, RetainAsPublished: o.rap,
		RetainHandling: o.rh, ID: o.id}
}

func (r SubRecord) opts() subOpts {
	return subOpts{qos: r.QoS, noLocal: r.NoLocal, rap: r.RetainAsPublished, rh: r.RetainHandling, id: r.ID}
}

// persistent reports whether a session outlives its connection, so that
// the store keeps it.
func (se *session) persistentLocked() bool { return se.expiry > 0 }

// Restore rebuilds the sessions, subscriptions, queued messages and
// retained messages of a snapshot. It is called once, before Serve. A
// session's expiry counts from when it went offline, so one that expired
// while the broker was down is dropped.
func (s *Server) Restore(snap *Snapshot) error {
	now := s.now()
	var expired []Op
	for _, rec := range snap.Sessions {
		offline := rec.Offline
		if offline.IsZero() {
			offline = now // it was connected when the broker stopped
		}
		left := time.Duration(rec.Expiry)*time.Second - now.Sub(offline)
		if rec.Expiry != 0xFFFFFFFF && left <= 0 {
			expired = append(expired, Op{Kind: DeleteSession, Client: rec.ID})
			continue
		}
		se := &session{s: s, id: rec.ID, owner: Client{ID: rec.ID, Username: rec.Username, HasUser: rec.HasUser},
			version: rec.Version, expiry: rec.Expiry, offline: offline}
		for _, sr := range snap.Subs[rec.ID] {
			if _, err := s.router.subs.Subscribe(sr.Filter, rec.ID, sr.opts()); err != nil {
				continue // a filter the store should never have held
			}
		}
		for _, sm := range snap.Messages[rec.ID] {
			m, d := sm.Msg.message()
			se.queue = append(se.queue, queued{m: m, d: d, ref: sm.Ref})
			se.nextRef = max(se.nextRef, sm.Ref)
		}
		if rec.Expiry != 0xFFFFFFFF {
			se.expireTimer = time.AfterFunc(left, func() { s.expireSession(se) })
		}
		s.mu.Lock()
		s.sessions[rec.ID] = se
		s.mu.Unlock()
	}
	for _, r := range snap.Retained {
		m, _ := r.message()
		m.Retain = true
		if _, _, dead := m.expiry(now); dead {
			continue
		}
		s.router.retain(m)
	}
	if len(expired) > 0 && s.cfg.Store != nil {
		s.cfg.Store.Lazy(expired)
	}
	return nil
}
