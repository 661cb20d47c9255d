//go:build linux

package engine

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// waitParked waits (bounded) until n connections are parked.
func waitParked(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Parked != n {
		if time.Now().After(deadline) {
			t.Fatalf("parked connections: %d, want %d", s.Stats().Parked, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A parked connection still receives what is published to it (the write
// side needs no reader goroutine), and its own next packet wakes it.
func TestParkedConnectionDeliversAndWakes(t *testing.T) {
	s, addr := start(t, Config{ParkAfter: 20 * time.Millisecond})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		sub := dial(t, addr, v)
		sub.connect(&packet.Connect{ClientID: "sub" + v.String(), CleanStart: true, KeepAlive: 60})
		sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "p/#", QoS: 1}}})
		sub.recv()
		pub := dial(t, addr, v)
		pub.connect(&packet.Connect{ClientID: "pub" + v.String(), CleanStart: true})
		waitParked(t, s, 2)
		before := s.Stats().Parks
		for i := range 5 {
			pub.send(&packet.Publish{Topic: "p/x", QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte('a' + i)}})
			if a, ok := pub.recv().(*packet.Ack); !ok || a.PacketID != uint16(i+1) {
				t.Fatalf("v%s: PUBACK %d: got %+v", v, i+1, a)
			}
			m, ok := sub.recv().(*packet.Publish)
			if !ok || string(m.Payload) != string(rune('a'+i)) {
				t.Fatalf("v%s: message %d: got %+v", v, i, m)
			}
			sub.send(&packet.Ack{Kind: packet.TypePuback, PacketID: m.PacketID})
			// Idle again between publishes: both park and wake each time.
			waitParked(t, s, 2)
		}
		if got := s.Stats().Parks - before; got < 5 {
			t.Errorf("v%s: %d parks over 5 idle pauses, want at least 5", v, got)
		}
		sub.send(&packet.Pingreq{})
		if _, ok := sub.recv().(*packet.Pingresp); !ok {
			t.Fatalf("v%s: PINGREQ to a parked connection: no PINGRESP", v)
		}
		pub.send(&packet.Disconnect{})
		sub.send(&packet.Disconnect{})
		waitParked(t, s, 0)
	}
}

// Keep alive is enforced while parked [MQTT-3.1.2-24]: the timer, not a
// read deadline, ends the connection, and the will goes out.
func TestParkedKeepAliveExpires(t *testing.T) {
	s, addr := start(t, Config{ParkAfter: 20 * time.Millisecond})
	watch := willWatcher(t, addr)

	quiet := dial(t, addr, packet.V5)
	quiet.connect(&packet.Connect{ClientID: "quiet", CleanStart: true, KeepAlive: 1,
		Will: &packet.Will{Topic: "will/quiet", Payload: []byte("gone")}})
	waitParked(t, s, 2)
	began := time.Now()
	p, err := quiet.next(10 * time.Second)
	if err != nil {
		t.Fatalf("silent client: %v, want DISCONNECT 0x8D", err)
	}
	if d, ok := p.(*packet.Disconnect); !ok || d.Code != packet.KeepAliveTimeout {
		t.Fatalf("silent client: got %s, want DISCONNECT 0x8D", packet.Describe(p, packet.V5))
	}
	if waited := time.Since(began); waited < time.Second {
		t.Errorf("closed after %s, before 1.5 x the 1 s keep alive", waited)
	}
	m, ok := watch.recv().(*packet.Publish)
	if !ok || m.Topic != "will/quiet" {
		t.Fatalf("will: got %+v", m)
	}
}

// A client that goes away while parked ends its connection: the will is
// published and the session is let go.
func TestParkedClientCloses(t *testing.T) {
	s, addr := start(t, Config{ParkAfter: 20 * time.Millisecond})
	watch := willWatcher(t, addr)
	gone := dial(t, addr, packet.V311)
	gone.connect(&packet.Connect{ClientID: "gone", CleanStart: true,
		Will: &packet.Will{Topic: "will/gone", Payload: []byte("bye")}})
	waitParked(t, s, 2)
	_ = gone.nc.Close()
	m, ok := watch.recv().(*packet.Publish)
	if !ok || m.Topic != "will/gone" || string(m.Payload) != "bye" {
		t.Fatalf("will: got %+v", m)
	}
	waitParked(t, s, 1)
	if st := s.Stats(); st.Clients != 1 {
		t.Errorf("clients: %d, want 1", st.Clients)
	}
}

// Taking over a parked connection's session closes it with 0x8E
// [MQTT-3.1.4-3], and a server shutdown reaches parked connections too.
func TestParkedTakeOverAndShutdown(t *testing.T) {
	s, addr := start(t, Config{ParkAfter: 20 * time.Millisecond})
	old := dial(t, addr, packet.V5)
	old.connect(&packet.Connect{ClientID: "same", CleanStart: true})
	waitParked(t, s, 1)
	newer := dial(t, addr, packet.V5)
	newer.connect(&packet.Connect{ClientID: "same", CleanStart: false})
	p, err := old.next(5 * time.Second)
	if err != nil {
		t.Fatalf("taken-over connection: %v, want DISCONNECT 0x8E", err)
	}
	if d, ok := p.(*packet.Disconnect); !ok || d.Code != packet.SessionTakenOver {
		t.Fatalf("taken-over connection: got %s, want DISCONNECT 0x8E", packet.Describe(p, packet.V5))
	}
	waitParked(t, s, 1) // the new connection, idle in its turn

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close with a parked connection: %v", err)
	}
	p, err = newer.next(5 * time.Second)
	if err != nil {
		t.Fatalf("parked connection at shutdown: %v, want DISCONNECT 0x8B", err)
	}
	if d, ok := p.(*packet.Disconnect); !ok || d.Code != packet.ServerShuttingDown {
		t.Fatalf("parked connection at shutdown: got %s, want DISCONNECT 0x8B", packet.Describe(p, packet.V5))
	}
}

// A packet that arrives in pieces across the park deadline is read whole:
// the deadline only ever expires while nothing of a packet has arrived.
func TestParkDoesNotSplitAPacket(t *testing.T) {
	s, addr := start(t, Config{ParkAfter: 20 * time.Millisecond})
	c := dial(t, addr, packet.V311)
	c.connect(&packet.Connect{ClientID: "slow", CleanStart: true})
	waitParked(t, s, 1)
	b, err := packet.Encode(&packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{{Filter: "a/b/c", QoS: 1}}}, packet.V311)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]byte{b[:1], b[1:2], b[2:5], b[5:]} {
		c.write(part)
		time.Sleep(60 * time.Millisecond) // three ParkAfters
	}
	if sa, ok := c.recv().(*packet.Suback); !ok || sa.PacketID != 7 || len(sa.Codes) != 1 || sa.Codes[0] != 1 {
		t.Fatalf("SUBSCRIBE sent in pieces: got %+v", sa)
	}
}

// willWatcher connects a 3.1.1 client subscribed to will/#, for tests
// that expect a will to be published.
func willWatcher(t *testing.T, addr string) *raw {
	t.Helper()
	w := dial(t, addr, packet.V311)
	w.connect(&packet.Connect{ClientID: "watch", CleanStart: true})
	w.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "will/#"}}})
	w.recv()
	return w
}

// A connection that has sent nothing since CONNECT parks after a tenth of
// ParkAfter, so that a burst of connections does not hold a goroutine
// stack each for the whole of it; one that has sent a packet waits the
// full ParkAfter. Linux only: elsewhere nothing parks.
func TestFreshConnectionParksSooner(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park on Linux only (epoll)")
	}
	s, addr := start(t, Config{ParkAfter: 20 * time.Second})
	busy := dial(t, addr, packet.V311)
	busy.connect(&packet.Connect{ClientID: "busy", CleanStart: true})
	busy.send(&packet.Pingreq{})
	if _, ok := busy.recv().(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP")
	}
	fresh := dial(t, addr, packet.V311)
	fresh.connect(&packet.Connect{ClientID: "fresh", CleanStart: true})
	waitParked(t, s, 1) // the fresh one, after about 2 s; the busy one waits 20 s
	busy.send(&packet.Pingreq{})
	if _, ok := busy.recv().(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP from the connection that was not parked")
	}
	fresh.send(&packet.Pingreq{})
	if _, ok := fresh.recv().(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP from the parked connection")
	}
}
