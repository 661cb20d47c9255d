package engine

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/topic"
)

// Message is an application message as the engine routes it: what a
// client published, minus what belongs to one connection (packet
// identifier, DUP, topic alias, subscription identifiers).
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props are the PUBLISH properties forwarded unaltered
	// [MQTT-3.3.2-15] [MQTT-3.3.2-17] [MQTT-3.3.2-20]: payload format,
	// message expiry, content type, response topic, correlation data,
	// user properties in order [MQTT-3.3.2-18].
	Props packet.Properties
	// Created is when the engine received it: message expiry counts from
	// here.
	Created time.Time
	// From is the publisher's client id, for no-local [MQTT-3.8.3-3].
	From string
}

// expiry returns the seconds left of a message's expiry interval at now,
// and whether it has expired. A message without one never expires.
func (m *Message) expiry(now time.Time) (left uint32, has, expired bool) {
	if !m.Props.Has(packet.PropMessageExpiry) {
		return 0, false, false
	}
	end := m.Created.Add(time.Duration(m.Props.MessageExpiry) * time.Second)
	d := end.Sub(now)
	if d <= 0 {
		return 0, true, true
	}
	// Round up: a message with 0.4 s left still has a second to live for
	// the receiver, and 0 would mean "no expiry" to nobody but confuse.
	return uint32((d + time.Second - 1) / time.Second), true, false
}

// subOpts is one subscription's options, the value the topic tree holds.
type subOpts struct {
	qos     byte
	noLocal bool
	rap     bool   // retain as published
	rh      byte   // retain handling
	id      uint32 // subscription identifier, 0 for none
}

// router holds the subscriptions and the retained messages.
type router struct {
	subs *topic.Tree[subOpts]

	rmu      sync.RWMutex
	retained map[string]*Message

	pool sync.Pool // *[]topic.Sub[subOpts], Match's scratch
}

func newRouter() *router {
	return &router{subs: topic.NewTree[subOpts](), retained: map[string]*Message{}}
}

// retain stores m as the retained message of its topic, or clears it for
// an empty payload [MQTT-3.3.1-6] [MQTT-3.3.1-7].
func (r *router) retain(m *Message) {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	if len(m.Payload) == 0 {
		delete(r.retained, m.Topic)
		return
	}
	r.retained[m.Topic] = m
}

// retainedFor returns the retained messages matching filter (without a
// $share prefix), dropping the expired ones.
func (r *router) retainedFor(filter string, now time.Time) []*Message {
	r.rmu.RLock()
	var out, dead []*Message
	for name, m := range r.retained {
		if !topic.Match(filter, name) {
			continue
		}
		if _, _, expired := m.expiry(now); expired {
			dead = append(dead, m)
			continue
		}
		out = append(out, m)
	}
	r.rmu.RUnlock()
	// In topic order: the map's order is random, and a client that
	// subscribes twice should see the same sequence twice (mosquitto
	// sends them in the order of its topic tree).
	slices.SortFunc(out, func(a, b *Message) int { return strings.Compare(a.Topic, b.Topic) })
	if len(dead) > 0 {
		r.rmu.Lock()
		for _, m := range dead {
			if r.retained[m.Topic] == m {
				delete(r.retained, m.Topic)
			}
		}
		r.rmu.Unlock()
	}
	return out
}

// delivery is how one message goes to one session: the subscription
// options of all its matching subscriptions merged.
type delivery struct {
	qos    byte
	retain bool
	ids    []uint32
	// later: the caller writes to the connection itself once it has
	// routed (conn.kick), so no flush goroutine is started for this
	// PUBLISH. Never stored with a queued or in-flight message.
	later bool
}

// route delivers m to every session with a matching subscription, once per
// session: with the highest QoS of the matching subscriptions and all of
// their subscription identifiers [MQTT-3.3.4-3] [MQTT-3.3.4-5]; a
// subscription with no-local does not count for the publisher's own
// messages [MQTT-3.8.3-3].
//
// The copies for sessions that outlive their connection are made durable
// first; if the store fails, nothing is delivered and the error is
// returned, so the publisher's acknowledgement can refuse the message.
func (s *Server) route(m *Message) error {
	buf, _ := s.router.pool.Get().(*[]topic.Sub[subOpts])
	if buf == nil {
		b := make([]topic.Sub[subOpts], 0, 16)
		buf = &b
	}
	matches := s.router.subs.Match(m.Topic, (*buf)[:0], s.isOnline)
	defer func() {
		clear(matches)
		*buf = matches[:0]
		s.router.pool.Put(buf)
	}()
	if len(matches) == 0 {
		return nil
	}
	type target struct {
		client string
		d      delivery
		se     *session
		ref    uint64
	}
	var targets []target
	for _, sub := range matches {
		o := sub.Value
		if o.noLocal && sub.Client == m.From {
			continue
		}
		i := 0
		for i < len(targets) && targets[i].client != sub.Client {
			i++
		}
		if i == len(targets) {
			targets = append(targets, target{client: sub.Client})
		}
		t := &targets[i]
		t.d.qos = max(t.d.qos, o.qos)
		// [MQTT-3.3.1-12] retain is kept only for retain-as-published
		// subscriptions; live messages otherwise go out with retain 0.
		t.d.retain = t.d.retain || (o.rap && m.Retain)
		if o.id != 0 {
			t.d.ids = append(t.d.ids, o.id)
		}
	}
	s.mu.Lock()
	for i := range targets {
		targets[i].se = s.sessions[targets[i].client]
		// In ascending order, whatever order the tree found them in.
		slices.Sort(targets[i].d.ids)
	}
	s.mu.Unlock()
	if st := s.cfg.Store; st != nil && m.QoS > 0 {
		var ops []Op
		for i := range targets {
			t := &targets[i]
			if t.se == nil || min(t.d.qos, m.QoS) == 0 {
				continue
			}
			t.d.qos = min(t.d.qos, m.QoS)
			if ref := t.se.storeRef(); ref != 0 {
				t.ref = ref
				ops = append(ops, Op{Kind: PutMessage, Client: t.client, Ref: ref, Msg: m.record(t.d)})
			}
		}
		if len(ops) > 0 {
			if err := st.Apply(ops); err != nil {
				return fmt.Errorf("store the message for %d sessions: %w", len(ops), err)
			}
		}
	}
	var kicks [8]*conn
	touched := kicks[:0]
	for _, t := range targets {
		if t.se == nil {
			continue
		}
		t.d.later = true
		if c := t.se.deliver(m, t.d, t.ref); c != nil {
			touched = append(touched, c)
		}
	}
	// Write with no lock held: the copies go out from this goroutine
	// when the sockets take them, with no flush goroutine to start.
	for _, c := range touched {
		c.kick()
	}
	// Wait with no lock held, so the subscriber's writes go on.
	for _, c := range touched {
		if c.congested() {
			c.waitRoom()
		}
	}
	return nil
}

// isOnline is the eligibility test for shared subscriptions: a message
// goes to a connected member when there is one [MQTT-4.8.2-?].
func (s *Server) isOnline(client string) bool {
	s.mu.Lock()
	se := s.sessions[client]
	s.mu.Unlock()
	return se != nil && se.online()
}
