package engine

import (
	"slices"
	"testing"

	"github.com/mqtk/mqtk/internal/packet"
)

// as returns a CONNECT for user with password.
func as(user, password, id string) *packet.Connect {
	return &packet.Connect{ClientID: id, CleanStart: true, HasUsername: true, Username: user,
		HasPassword: true, Password: []byte(password)}
}

// refusedConnack is the CONNACK refusing with an MQTT 5 code, in v's form.
func refusedConnack(v packet.Version, code5, code311 byte) []byte {
	if v == packet.V5 {
		return []byte{0x20, 0x03, 0x00, code5, 0x00}
	}
	return []byte{0x20, 0x02, 0x00, code311}
}

// Authentication through Hooks: a wrong password is 0x86 (3.1.1: 5, "not
// authorized", as mosquitto answers and clients written against it
// expect), no user name 0x87 (3.1.1: 5), and the connection closes
// [MQTT-3.2.2-5].
func TestConformanceAuthenticate(t *testing.T) {
	t.Parallel()
	_, addr := start(t, Config{Hooks: &testHooks{}})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		p := dialPeer(t, addr, v)
		p.send(as("alice", "wrong", "a1"))
		p.expectRaw("CONNACK for a wrong password", refusedConnack(v, 0x86, 0x05))
		p.expectClosed("after the refusal")

		p = dialPeer(t, addr, v)
		p.send(&packet.Connect{ClientID: "anon", CleanStart: true})
		p.expectRaw("CONNACK for no user name", refusedConnack(v, 0x87, 0x05))
		p.expectClosed("after the refusal")

		p = dialPeer(t, addr, v)
		p.connectOK(as("alice", "a", "a1"))
	}
}

// A session belongs to the user who made it: carol, connecting with
// alice's client id, is refused (0x87; 3.1.1: 5), neither receives
// alice's queued message nor cuts alice's connection; alice still gets
// her message (issue 17: carol received alice's queued alice/inbox).
func TestConformanceTakeOverOtherUser(t *testing.T) {
	t.Parallel()
	_, addr := start(t, Config{Hooks: &testHooks{}})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			id := "alice-" + v.String()
			alice := dialPeer(t, addr, v)
			c := as("alice", "a", id)
			c.CleanStart = false
			if v == packet.V5 {
				c.Properties.SessionExpiry = 60
			}
			alice.connectOK(c)
			alice.subscribe(1, packet.Subscription{Filter: "alice/inbox", QoS: 1})

			// While alice is connected.
			carol := dialPeer(t, addr, v)
			cc := as("carol", "c", id)
			cc.CleanStart = false
			carol.send(cc)
			carol.expectRaw("CONNACK to carol using alice's client id", refusedConnack(v, 0x87, 0x05))
			carol.expectClosed("carol, after the refusal")
			alice.send(&packet.Pingreq{})
			alice.expectRaw("alice still connected: PINGRESP", unhex("D0 00"))
			alice.send(&packet.Disconnect{})
			alice.expectClosed("alice, after DISCONNECT")

			// While alice is away, with a message queued for her.
			sender := dialPeer(t, addr, v)
			sender.connectOK(as("alice", "a", id+"-sender"))
			sender.publish1(1, "alice/inbox", "secret")
			for _, clean := range []bool{false, true} {
				carol = dialPeer(t, addr, v)
				cc := as("carol", "c", id)
				cc.CleanStart = clean
				carol.send(cc)
				carol.expectRaw("CONNACK to carol using alice's client id", refusedConnack(v, 0x87, 0x05))
				carol.expectClosed("carol, after the refusal")
			}

			alice = dialPeer(t, addr, v)
			alice.send(c)
			alice.expectSession("alice's CONNACK", true)
			m := alice.expectMessage("alice's queued message", "alice/inbox", "secret")
			alice.ack(m)
		})
	}
}

// The will is authorised at CONNECT: a will on a topic the user may not
// publish to is refused with the connection (0x87; 3.1.1: 5), $SYS
// included; one the user may publish to is accepted and published.
func TestConformanceWillACL(t *testing.T) {
	t.Parallel()
	_, addr := start(t, Config{Hooks: &testHooks{}})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		for _, wt := range []string{"secret/x", "$SYS/fake/uptime", "carol/x"} {
			p := dialPeer(t, addr, v)
			c := as("alice", "a", "wa-"+v.String())
			c.Will = &packet.Will{Topic: wt, Payload: []byte("x"), Retain: true}
			p.send(c)
			p.expectRaw("CONNACK for a will on "+wt, refusedConnack(v, 0x87, 0x05))
			p.expectClosed("after the refusal")
		}
	}
	w := dialPeer(t, addr, packet.V5)
	w.connectOK(as("carol", "c", "wa-watch"))
	w.subscribe(1, packet.Subscription{Filter: "public/#", QoS: 1})
	p := dialPeer(t, addr, packet.V311)
	c := as("alice", "a", "wa-ok")
	c.Will = &packet.Will{Topic: "public/will", Payload: []byte("gone"), QoS: 1}
	p.connectOK(c)
	p.drop()
	m := w.expectMessage("alice's permitted will", "public/will", "gone")
	w.ack(m)
}

// A shared subscription is authorised by its filter without the
// $share/GROUP/ prefix: carol, who may read public/#, may share it
// (issue 17: the old broker refused it), and may not share alice/#.
func TestConformanceSharedSubscriptionACL(t *testing.T) {
	t.Parallel()
	h := &testHooks{}
	_, addr := start(t, Config{Hooks: h})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		carol := dialPeer(t, addr, v)
		carol.connectOK(as("carol", "c", "sa-"+v.String()))
		carol.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
			{Filter: "$share/g/public/#", QoS: 1}, {Filter: "$share/g/alice/#", QoS: 1}, {Filter: "alice/#", QoS: 0},
		}})
		if v == packet.V5 {
			carol.expectRaw("SUBACK", unhex("90 06 00 01 00 01 87 87"))
		} else {
			carol.expectRaw("SUBACK", unhex("90 05 00 01 01 80 80"))
		}
		alice := dialPeer(t, addr, v)
		alice.connectOK(as("alice", "a", "sa-alice-"+v.String()))
		alice.publish1(1, "public/news", "hello")
		alice.publish1(2, "alice/x", "private")
		m := carol.expectMessage("through the shared subscription", "public/news", "hello")
		carol.ack(m)
		carol.expectSilence("alice's private message", quiet)
		carol.send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"$share/g/public/#"}})
		carol.expectPacket("UNSUBACK")
	}
	asked := h.subscribeAsks()
	for _, f := range asked {
		if len(f) >= 7 && f[:7] == "$share/" {
			t.Errorf("MaySubscribe was asked about %q, with its $share prefix", f)
		}
	}
	if !slices.Contains(asked, "public/#") {
		t.Errorf("MaySubscribe was asked about %q, never about public/#", asked)
	}
}

// The security cases of issue 17 against the engine (with testHooks) and
// against mosquitto with the same users in its password and ACL files.
// What must hold for both: carol never receives alice's message, a will
// on a topic its owner may not publish never reaches a reader, and a
// shared subscription is granted by its filter. How they get there may
// differ (the engine refuses at CONNECT); mosquitto's ways are logged.
func TestConformanceSecurityVsMosquitto(t *testing.T) {
	t.Parallel()
	scenario := func(t *testing.T, tg target) {
		// 1. carol with alice's client id, alice's message queued.
		alice := dialPeer(t, tg.addr, packet.V5)
		c := as("alice", "a", "sec-alice")
		c.CleanStart = false
		c.Properties.SessionExpiry = 60
		alice.connectOK(c)
		alice.subscribe(1, packet.Subscription{Filter: "alice/inbox", QoS: 1})
		alice.send(&packet.Disconnect{})
		alice.expectClosed("after DISCONNECT")
		sender := dialPeer(t, tg.addr, packet.V5)
		sender.connectOK(as("alice", "a", "sec-sender"))
		sender.publish1(1, "alice/inbox", "secret")

		carol := dialPeer(t, tg.addr, packet.V5)
		cc := as("carol", "c", "sec-alice")
		cc.CleanStart = false
		cc.Properties.SessionExpiry = 60
		carol.send(cc)
		ack, ok := carol.expectPacket("CONNACK to carol").(*packet.Connack)
		if !ok {
			t.Fatal("no CONNACK to carol")
		}
		if ack.Code != packet.NotAuthorized {
			differs(t, tg, "carol with alice's client id: CONNACK %s, want 0x87", packet.Describe(ack, packet.V5))
		}
		if ack.Code == packet.Success {
			for {
				b, err := carol.readRaw(quiet)
				if err != nil {
					break
				}
				if m, ok := carol.decode(b).(*packet.Publish); ok {
					t.Errorf("carol received alice's message: %s", packet.Describe(m, packet.V5))
					carol.ack(m)
				}
			}
			carol.send(&packet.Disconnect{})
		}

		// 2. dave's will on public/fake, which dave may not publish to and
		// carol may read.
		reader := dialPeer(t, tg.addr, packet.V5)
		reader.connectOK(as("carol", "c", "sec-reader"))
		reader.subscribe(1, packet.Subscription{Filter: "public/#", QoS: 1})
		dave := dialPeer(t, tg.addr, packet.V5)
		dc := as("dave", "d", "sec-dave")
		dc.Will = &packet.Will{Topic: "public/fake", Payload: []byte("forged"), Retain: true}
		dave.send(dc)
		ack, ok = dave.expectPacket("CONNACK to dave").(*packet.Connack)
		if !ok {
			t.Fatal("no CONNACK to dave")
		}
		if ack.Code != packet.NotAuthorized {
			differs(t, tg, "dave's will on public/fake: CONNACK %s, want 0x87", packet.Describe(ack, packet.V5))
		}
		dave.drop()
		if b, err := reader.readRaw(quiet); err == nil {
			t.Errorf("dave's forged will was delivered: %s", reader.describe(b))
		}

		// 3. carol shares public/#.
		reader.send(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "$share/g/public/#", QoS: 1}}})
		reader.expectRaw("SUBACK for $share/g/public/#", unhex("90 04 00 02 00 01"))
	}
	t.Run("engine", func(t *testing.T) { t.Parallel(); scenario(t, engineTarget(t, Config{Hooks: &testHooks{}})) })
	t.Run("mosquitto", func(t *testing.T) { t.Parallel(); scenario(t, mosquittoACL(t)) })
}
