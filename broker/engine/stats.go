package engine

import (
	"slices"
	"strings"
	"sync/atomic"
)

// counters are the engine's running totals; every field is an atomic, so
// the publish path takes no lock to count.
type counters struct {
	msgsIn, msgsOut   [3]atomic.Uint64 // PUBLISH packets by QoS
	bytesIn, bytesOut [3]atomic.Uint64 // PUBLISH payload bytes by QoS
	netIn, netOut     atomic.Uint64    // bytes of every packet
	connects          atomic.Uint64    // CONNACK success
	subscribeDenied   atomic.Uint64    // filters refused in a SUBACK
	dropped           atomic.Uint64    // not delivered: queue full or stalled subscriber
	discarded         atomic.Uint64    // queued QoS 1/2 messages that expired
	parks             atomic.Uint64    // times a connection was parked
	parked            atomic.Int64     // connections parked now
}

// Stats is a snapshot of the engine's gauges and counters.
type Stats struct {
	Clients       int // connected
	Sessions      int // connected or offline
	Subscriptions int
	Retained      int // not counting $-topics
	Inflight      int // QoS 1/2 messages in flight or queued
	Parked        int // idle connections without a goroutine (Config.ParkAfter)

	Connects          uint64
	MsgsIn, MsgsOut   [3]uint64
	BytesIn, BytesOut [3]uint64
	NetIn, NetOut     uint64
	SubscribeDenied   uint64
	Dropped           uint64
	Discarded         uint64
	Parks             uint64
}

// Stats returns the current figures.
func (s *Server) Stats() Stats {
	var st Stats
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, se := range s.sessions {
		sessions = append(sessions, se)
	}
	s.mu.Unlock()
	st.Sessions = len(sessions)
	for _, se := range sessions {
		se.mu.Lock()
		if se.c != nil {
			st.Clients++
		}
		st.Inflight += len(se.inflight) + len(se.queue)
		se.mu.Unlock()
	}
	st.Subscriptions = s.router.subs.Len()
	s.router.rmu.RLock()
	for t := range s.router.retained {
		if !strings.HasPrefix(t, "$") {
			st.Retained++
		}
	}
	s.router.rmu.RUnlock()
	c := &s.count
	st.Connects = c.connects.Load()
	for q := range 3 {
		st.MsgsIn[q], st.MsgsOut[q] = c.msgsIn[q].Load(), c.msgsOut[q].Load()
		st.BytesIn[q], st.BytesOut[q] = c.bytesIn[q].Load(), c.bytesOut[q].Load()
	}
	st.NetIn, st.NetOut = c.netIn.Load(), c.netOut.Load()
	st.SubscribeDenied = c.subscribeDenied.Load()
	st.Dropped = c.dropped.Load()
	st.Discarded = c.discarded.Load()
	st.Parked = int(c.parked.Load())
	st.Parks = c.parks.Load()
	return st
}

// ClientInfo describes one session for the broker's /api/clients.
type ClientInfo struct {
	ID            string
	Username      string
	Remote        string
	Listener      string
	Version       byte
	Connected     bool
	Clean         bool // the session ends with its connection
	KeepAlive     uint16
	Subscriptions int
	Inflight      int
}

// Clients lists the sessions, sorted by client id.
func (s *Server) Clients() []ClientInfo {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, se := range s.sessions {
		sessions = append(sessions, se)
	}
	s.mu.Unlock()
	out := make([]ClientInfo, 0, len(sessions))
	for _, se := range sessions {
		se.mu.Lock()
		ci := ClientInfo{ID: se.id, Username: se.owner.Username, Version: byte(se.version),
			Clean: se.expiry == 0, Inflight: len(se.inflight) + len(se.queue)}
		if c := se.c; c != nil {
			ci.Connected = true
			ci.Remote, ci.Listener, ci.KeepAlive = c.info.Remote, c.info.Listener, c.keepAlive
		}
		se.mu.Unlock()
		ci.Subscriptions = len(s.router.subs.Subscriptions(se.id))
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b ClientInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// SubscriptionInfo is one subscription for /api/subscriptions.
type SubscriptionInfo struct {
	Client            string
	Filter            string // as subscribed, $share prefix included
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	Identifier        uint32
}

// Subscriptions lists every subscription, sorted by client and filter.
func (s *Server) Subscriptions() []SubscriptionInfo {
	s.mu.Lock()
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	var out []SubscriptionInfo
	for _, id := range ids {
		for _, sub := range s.router.subs.Subscriptions(id) {
			f := sub.Filter
			if sub.Group != "" {
				f = "$share/" + sub.Group + "/" + f
			}
			o := sub.Value
			out = append(out, SubscriptionInfo{Client: id, Filter: f, QoS: o.qos, NoLocal: o.noLocal,
				RetainAsPublished: o.rap, RetainHandling: o.rh, Identifier: o.id})
		}
	}
	slices.SortStableFunc(out, func(a, b SubscriptionInfo) int {
		if c := strings.Compare(a.Client, b.Client); c != 0 {
			return c
		}
		return strings.Compare(a.Filter, b.Filter)
	})
	return out
}
