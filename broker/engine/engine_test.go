package engine

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs an engine on a free loopback port until the test ends and
// returns its address.
func start(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.ParkAfter == 0 {
		// Park idle connections almost at once, so that every test goes
		// through parking and waking again, many times over.
		cfg.ParkAfter = 2 * time.Millisecond
	}
	s := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Serve(nc, Client{}); err != nil && s.cfg.Logf != nil {
					s.cfg.Logf("serve: %v", err)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		wg.Wait()
	})
	return s, ln.Addr().String()
}

// raw is a test client that speaks through the codec, packet by packet.
type raw struct {
	t  testing.TB
	nc net.Conn
	rd *packet.Reader
	v  packet.Version
}

func dial(t testing.TB, addr string, v packet.Version) *raw {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &raw{t: t, nc: nc, rd: packet.NewReader(nc, 0), v: v}
}

func (r *raw) send(p packet.Packet) {
	r.t.Helper()
	b, err := packet.Encode(p, r.v)
	if err != nil {
		r.t.Fatalf("encode %s: %v", p.Type(), err)
	}
	r.write(b)
}

func (r *raw) write(b []byte) {
	r.t.Helper()
	_ = r.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// next reads one packet within d; err is a timeout when none came.
func (r *raw) next(d time.Duration) (packet.Packet, error) {
	_ = r.nc.SetReadDeadline(time.Now().Add(d))
	return r.rd.ReadPacket(r.v)
}

func (r *raw) recv() packet.Packet {
	r.t.Helper()
	p, err := r.next(5 * time.Second)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return p
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (r *raw) connect(c *packet.Connect) *packet.Connack {
	r.t.Helper()
	r.send(c)
	p := r.recv()
	ack, ok := p.(*packet.Connack)
	if !ok {
		r.t.Fatalf("got %s, want CONNACK", packet.Describe(p, r.v))
	}
	return ack
}

func TestPubSub(t *testing.T) {
	_, addr := start(t, Config{})
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		sub := dial(t, addr, v)
		if ack := sub.connect(&packet.Connect{ClientID: "sub", CleanStart: true}); ack.Code != 0 {
			t.Fatalf("v%s CONNACK %s", v, packet.Describe(ack, v))
		}
		sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "a/+", QoS: 2}}})
		if sa := sub.recv().(*packet.Suback); len(sa.Codes) != 1 || sa.Codes[0] != 2 {
			t.Fatalf("SUBACK %+v", sa)
		}
		pub := dial(t, addr, v)
		pub.connect(&packet.Connect{ClientID: "pub", CleanStart: true})
		pub.send(&packet.Publish{Topic: "a/b", QoS: 1, PacketID: 5, Payload: []byte("hi")})
		if a := pub.recv().(*packet.Ack); a.Kind != packet.TypePuback || a.PacketID != 5 {
			t.Fatalf("PUBACK %+v", a)
		}
		got := sub.recv().(*packet.Publish)
		if got.Topic != "a/b" || string(got.Payload) != "hi" || got.QoS != 1 {
			t.Fatalf("v%s delivered %s", v, packet.Describe(got, v))
		}
		sub.send(&packet.Ack{Kind: packet.TypePuback, PacketID: got.PacketID})
		sub.send(&packet.Disconnect{})
		pub.send(&packet.Disconnect{})
	}
}
