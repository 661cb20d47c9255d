package engine

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// memStore is a Store in memory that can be told to fail, and that can
// hand what it holds to a new Server as a restart would.
type memStore struct {
	mu       sync.Mutex
	fail     error
	sessions map[string]SessionRecord
	subs     map[string]map[string]SubRecord
	msgs     map[string]map[uint64]*MessageRecord
	retained map[string]*MessageRecord
	applied  int
}

func newMemStore() *memStore {
	return &memStore{sessions: map[string]SessionRecord{}, subs: map[string]map[string]SubRecord{},
		msgs: map[string]map[uint64]*MessageRecord{}, retained: map[string]*MessageRecord{}}
}

func (m *memStore) Apply(ops []Op) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.applied += len(ops)
	m.apply(ops)
	return nil
}

func (m *memStore) Lazy(ops []Op) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail == nil {
		m.apply(ops)
	}
}

func (m *memStore) apply(ops []Op) {
	for _, op := range ops {
		switch op.Kind {
		case PutSession:
			m.sessions[op.Client] = op.Session
		case DeleteSession:
			delete(m.sessions, op.Client)
			delete(m.subs, op.Client)
			delete(m.msgs, op.Client)
		case PutSub:
			if m.subs[op.Client] == nil {
				m.subs[op.Client] = map[string]SubRecord{}
			}
			m.subs[op.Client][op.Sub.Filter] = op.Sub
		case DeleteSub:
			delete(m.subs[op.Client], op.Sub.Filter)
		case PutMessage:
			if m.msgs[op.Client] == nil {
				m.msgs[op.Client] = map[uint64]*MessageRecord{}
			}
			m.msgs[op.Client][op.Ref] = op.Msg
		case DeleteMessage:
			delete(m.msgs[op.Client], op.Ref)
		case PutRetained:
			m.retained[op.Msg.Topic] = op.Msg
		case DeleteRetained:
			delete(m.retained, op.Msg.Topic)
		}
	}
}

func (m *memStore) snapshot() *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := &Snapshot{Subs: map[string][]SubRecord{}, Messages: map[string][]StoredMessage{}}
	for _, s := range m.sessions {
		snap.Sessions = append(snap.Sessions, s)
	}
	for c, subs := range m.subs {
		for _, s := range subs {
			snap.Subs[c] = append(snap.Subs[c], s)
		}
	}
	for c, msgs := range m.msgs {
		refs := make([]uint64, 0, len(msgs))
		for r := range msgs {
			refs = append(refs, r)
		}
		slices.Sort(refs)
		for _, r := range refs {
			snap.Messages[c] = append(snap.Messages[c], StoredMessage{Ref: r, Msg: msgs[r]})
		}
	}
	for _, r := range m.retained {
		snap.Retained = append(snap.Retained, r)
	}
	return snap
}

func (m *memStore) messages(client string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.msgs[client])
}

// TestRestoreAfterRestart: a persistent session's subscription, its queued
// QoS 1 message and a retained message come back on a new engine built from
// the store.
func TestRestoreAfterRestart(t *testing.T) {
	st := newMemStore()
	_, addr := start(t, Config{Store: st})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		id := "keep-" + v.String()
		sub := dial(t, addr, v)
		cn := &packet.Connect{ClientID: id}
		cn.Properties.SessionExpiry = 3600
		sub.connect(cn)
		sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "r/" + v.String(), QoS: 1}}})
		sub.recv()
		sub.send(&packet.Disconnect{})
		pub := dial(t, addr, v)
		pub.connect(&packet.Connect{ClientID: "p", CleanStart: true})
		pub.send(&packet.Publish{Topic: "r/" + v.String(), QoS: 1, PacketID: 1, Payload: []byte("queued")})
		pub.recv()
		pub.send(&packet.Publish{Topic: "ret/" + v.String(), QoS: 1, PacketID: 2, Retain: true, Payload: []byte("kept")})
		pub.recv()
		if n := st.messages(id); n != 1 {
			t.Fatalf("%s: store holds %d messages for the offline session, want 1", id, n)
		}
	}

	// A new engine from what the store held.
	s2, addr2 := start(t, Config{Store: st, Logf: t.Logf})
	if err := s2.Restore(st.snapshot()); err != nil {
		t.Fatal(err)
	}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		id := "keep-" + v.String()
		sub := dial(t, addr2, v)
		cn := &packet.Connect{ClientID: id}
		cn.Properties.SessionExpiry = 3600
		if ack := sub.connect(cn); !ack.SessionPresent {
			t.Fatalf("%s: session not present after restart", id)
		}
		p, ok := sub.recv().(*packet.Publish)
		if !ok || string(p.Payload) != "queued" || p.QoS != 1 || p.Dup {
			t.Fatalf("%s: after restart got %v", id, p)
		}
		sub.send(&packet.Ack{Kind: packet.TypePuback, PacketID: p.PacketID})
		sub.send(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "ret/" + v.String()}}})
		sub.recv()
		if r, ok := sub.recv().(*packet.Publish); !ok || string(r.Payload) != "kept" || !r.Retain {
			t.Fatalf("%s: retained after restart = %v", id, r)
		}
		sub.send(&packet.Disconnect{})
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.messages("keep-5") != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := st.messages("keep-5"); n != 0 {
		t.Errorf("acknowledged message still stored (%d)", n)
	}
}

// TestStoreFailureRefusesPublish: when the copy for a lasting session
// cannot be stored, the publish is refused, not acknowledged: MQTT 5 gets
// PUBACK 0x80 with a reason string, 3.1.1 a closed connection; nothing is
// delivered.
func TestStoreFailureRefusesPublish(t *testing.T) {
	st := newMemStore()
	_, addr := start(t, Config{Store: st})
	sub := dial(t, addr, packet.V5)
	cn := &packet.Connect{ClientID: "durable"}
	cn.Properties.SessionExpiry = 60
	sub.connect(cn)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "d/#", QoS: 1}}})
	sub.recv()
	st.mu.Lock()
	st.fail = errors.New("no space left on device")
	st.mu.Unlock()

	pub := dial(t, addr, packet.V5)
	pub.connect(&packet.Connect{ClientID: "p5", CleanStart: true})
	pub.send(&packet.Publish{Topic: "d/x", QoS: 1, PacketID: 7, Payload: []byte("x")})
	ack, ok := pub.recv().(*packet.Ack)
	if !ok || ack.Code != packet.UnspecifiedError || ack.Properties.ReasonString == "" {
		t.Fatalf("PUBACK = %v, want 0x80 with a reason", ack)
	}
	if p, err := sub.next(300 * time.Millisecond); err == nil {
		t.Fatalf("refused message delivered: %s", packet.Describe(p, packet.V5))
	}

	pub3 := dial(t, addr, packet.V311)
	pub3.connect(&packet.Connect{ClientID: "p3", CleanStart: true})
	pub3.send(&packet.Publish{Topic: "d/y", QoS: 1, PacketID: 8, Payload: []byte("y")})
	if p, err := pub3.next(2 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("3.1.1 publisher got %v (%v), want the connection closed", p, err)
	}
}
