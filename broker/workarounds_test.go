package broker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Every mochi capability is set by us; in particular no message-expiry
// ceiling, because mochi's default of 24 h also deletes retained messages.
func TestRetainedMessagesDoNotExpireAfterADay(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ceiling time.Duration
		want    bool
	}{
		{"default limits keep it", 0, true},
		// Control: with mochi's 24 h ceiling the same message is purged,
		// which shows the test would catch the fault.
		{"mochi's 24h ceiling purges it", 24 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, Options{Limits: Limits{MaxMessageExpiry: tc.ceiling}})
			if got := b.srv.Options.Capabilities.MaximumMessageExpiryInterval; got != int64(tc.ceiling/time.Second) {
				t.Fatalf("MaximumMessageExpiryInterval = %d", got)
			}
			pub := dialRaw(t, b.tcpAddr(t), 4)
			pub.connect(connectPacket("retainer", true, 30))
			pub.publish("state/door", "open", 1, true)
			// Age the retained message by two days, as if the broker had
			// been running that long, then let the expiry sweep (1 s) run.
			for topic, pk := range b.srv.Topics.Retained.GetAll() {
				if topic == "state/door" {
					pk.Created = time.Now().Add(-48 * time.Hour).Unix()
					b.srv.Topics.RetainMessage(pk)
				}
			}
			time.Sleep(2500 * time.Millisecond)
			sub := dialRaw(t, b.tcpAddr(t), 4)
			sub.connect(connectPacket("reader", true, 30))
			sub.subscribe(1, "state/door")
			pk, err := sub.nextPublish(2 * time.Second)
			got := err == nil && string(pk.Payload) == "open"
			if got != tc.want {
				t.Fatalf("retained message delivered = %v (err %v), want %v", got, err, tc.want)
			}
		})
	}
}

// mochi picks a shared-subscription member at random, offline ones
// included; we pick connected members in turn.
func TestSharedSubscriptionPicksConnectedMembersInTurn(t *testing.T) {
	b := startBroker(t, Options{})
	addr := b.tcpAddr(t)
	// An offline member with a persistent session.
	off := dialRaw(t, addr, 4)
	off.connect(connectPacket("member-offline", false, 30))
	off.subscribe(1, "$share/g/jobs")
	off.c.Close()
	waitFor(t, func() bool {
		cl, ok := b.srv.Clients.Get("member-offline")
		return ok && cl.Closed()
	})
	members := []*rawClient{dialRaw(t, addr, 4), dialRaw(t, addr, 4)}
	for i, m := range members {
		m.connect(connectPacket([]string{"member-a", "member-b"}[i], true, 30))
		m.subscribe(1, "$share/g/jobs")
	}
	pub := dialRaw(t, addr, 4)
	pub.connect(connectPacket("producer", true, 30))
	const n = 6
	for i := 0; i < n; i++ {
		pub.publish("jobs", "job", 0, false)
	}
	for i, m := range members {
		for j := 0; j < n/2; j++ {
			if _, err := m.nextPublish(5 * time.Second); err != nil {
				t.Fatalf("member %d got %d of %d messages: %v", i, j, n/2, err)
			}
		}
	}
}

// [MQTT-3.1.3-8]: 3.1.1, empty client id, clean session 0 → CONNACK 0x02
// (mochi answers 0x80, which 3.1.1 does not define).
func TestEmptyClientIDPersistentSessionRefused(t *testing.T) {
	b := startBroker(t, Options{})
	c, err := net.Dial("tcp", b.tcpAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// CONNECT, 3.1.1, flags 0 (clean session off), keepalive 60, empty id.
	connect := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 60, 0, 0}
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if want := []byte{0x20, 0x02, 0x00, 0x02}; !bytes.Equal(got, want) {
		t.Fatalf("CONNACK % x, want % x", got, want)
	}
	// And the connection is closed afterwards [MQTT-3.2.2-5].
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("connection still open, read %d bytes", n)
	}
}

func willConnect(id string, delay uint32) packets.Packet {
	pk := connectPacket(id, false, 30)
	pk.Properties.SessionExpiryInterval = 60
	pk.Properties.SessionExpiryIntervalFlag = true
	pk.Connect.WillFlag = true
	pk.Connect.WillTopic = "wills/" + id
	pk.Connect.WillPayload = []byte("gone")
	pk.Connect.WillProperties.WillDelayInterval = delay
	return pk
}

// holdWillHook is a test hook that reproduces mochi's will race on
// demand: it holds the first will handling of client id until a newer
// session with that id is established, i.e. until after mochi cleared the
// pending-will table for the reconnect. Without the OnWill workaround
// the old connection's delayed will then enters that table and is
// published; with it, it is a no-op.
type holdWillHook struct {
	mqtt.HookBase
	id       string
	held     chan struct{} // closed when the will handling is being held
	release  chan struct{}
	holdOnce sync.Once
	relOnce  sync.Once
}

func (h *holdWillHook) ID() string           { return "test-hold-will" }
func (h *holdWillHook) Provides(b byte) bool { return b == mqtt.OnWill }

func (h *holdWillHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if cl.ID != h.id {
		return will, nil
	}
	first := false
	h.holdOnce.Do(func() { first = true })
	if first {
		close(h.held)
		select {
		case <-h.release:
		case <-time.After(10 * time.Second):
		}
	}
	return will, nil
}

// releaseAfterReconnect lets the held will go once the new session is
// past mochi's clearing of the pending-will table: fixHook calls it as the
// new session starts waiting for the old connection's teardown.
func (h *holdWillHook) releaseAfterReconnect(id string) {
	if id == h.id {
		h.relOnce.Do(func() { close(h.release) })
	}
}

// [MQTT-3.1.3-9]: a client that reconnects within its will delay does not
// get its will published (mochi publishes it anyway).
func TestWillNotPublishedWhenClientReconnectsWithinDelay(t *testing.T) {
	hold := &holdWillHook{id: "flaky", held: make(chan struct{}), release: make(chan struct{})}
	b := startAdjusted(t, Options{}, func(b *Broker) {
		if err := b.srv.AddHook(hold, nil); err != nil {
			t.Fatal(err)
		}
		b.fix.waitingForPredecessor = hold.releaseAfterReconnect
	})
	addr := b.tcpAddr(t)
	watcher := dialRaw(t, addr, 5)
	watcher.connect(connectPacket("watcher", true, 30))
	watcher.subscribe(1, "wills/#")

	// Control: a client that just vanishes has its will published after
	// the 1 s delay, which shows the watcher would see it.
	gone := dialRaw(t, addr, 5)
	gone.connect(willConnect("vanisher", 1))
	gone.c.Close()
	pk, err := watcher.nextPublish(10 * time.Second)
	if err != nil || pk.TopicName != "wills/vanisher" {
		t.Fatalf("control will: %v %q", err, pk.TopicName)
	}

	// The first connection is still open (the broker has not noticed it is
	// dead) when the client reconnects: a session take-over. holdWillHook
	// makes the old connection handle its will only after the new session
	// is established, the ordering in which mochi publishes it.
	old := dialRaw(t, addr, 5)
	old.connect(willConnect("flaky", 2))
	nw := dialRaw(t, addr, 5)
	nw.connect(willConnect("flaky", 2))
	select {
	case <-hold.release:
	case <-time.After(10 * time.Second):
		t.Fatal("the take-over did not go through the held will")
	}
	// Wait past the delay and the 1 s sweep: nothing may arrive.
	if pk, err := watcher.nextPublish(4 * time.Second); err == nil {
		t.Fatalf("will published although the client reconnected: %q %q", pk.TopicName, pk.Payload)
	} else if !isTimeout(err) {
		t.Fatal(err)
	}
	// The new connection's own will still works.
	if cl, ok := b.srv.Clients.Get("flaky"); !ok || cl.Properties.Will.Flag != 1 {
		t.Fatal("the new connection lost its will")
	}
}

// mochi's Close can race with connection setup (upstream #541) or block
// for ever (#424). Start and close in a loop while clients keep connecting;
// run under -race, with goleak checking in TestMain.
func TestCloseWhileClientsConnect(t *testing.T) {
	connect := []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 3, 'a', 'b', 'c'}
	connect[1] = byte(len(connect) - 2)
	for i := 0; i < 15; i++ {
		b, err := New(Options{Listeners: []string{"tcp://127.0.0.1:0"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		addr := b.Listeners()[0].Addr
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 200; k++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						continue
					}
					_ = c.SetDeadline(time.Now().Add(time.Second))
					_, _ = c.Write(connect)
					_, _ = c.Read(make([]byte, 16))
					// Half the clients stay connected into Close.
					if k%2 == 0 {
						_ = c.Close()
					} else {
						defer c.Close()
					}
				}
			}()
		}
		time.Sleep(time.Duration(i%5) * 10 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := b.Close(ctx); err != nil {
			t.Fatalf("iteration %d: Close: %v", i, err)
		}
		cancel()
		close(stop)
		wg.Wait()
		// Close is idempotent.
		if err := b.Close(context.Background()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A SUBSCRIBE the ACL denies is refused in the SUBACK, not granted and then
// silently filtered.
func TestACLDeniedSubscribeRefusedInSuback(t *testing.T) {
	acl := writeFile(t, "acl", "topic read public/#\n\nuser alice\ntopic readwrite alice/#\n")
	b := startBroker(t, Options{ACLFile: acl})
	for _, tc := range []struct {
		version byte
		denied  byte
	}{{4, 0x80}, {5, 0x87}} {
		c := dialRaw(t, b.tcpAddr(t), tc.version)
		c.connect(connectPacket("anon", true, 30))
		codes := c.subscribe(1, "public/#", "secret/#", "alice/#")
		want := []byte{1, tc.denied, tc.denied}
		if !bytes.Equal(codes, want) {
			t.Errorf("v%d SUBACK % x, want % x", tc.version, codes, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mochi, once it has decided that a leaving clean-session client was not
// taken over, removes it from the client list and its subscriptions from
// the topic tree by client id. A client reconnecting with the same id
// while the old connection was still being torn down could therefore be
// dropped from the list, or lose the subscriptions it had just made, and
// receive nothing (seen as a flake of the paho interop test, which
// reconnects at once). The new session now waits for the old connection's
// teardown.
func TestReconnectWithSameIDWhileOldSessionEnds(t *testing.T) {
	b := startBroker(t, Options{})
	addr := b.tcpAddr(t)
	pub := dialRaw(t, addr, 4)
	pub.connect(connectPacket("same-id-pub", true, 30))
	for i := range 300 {
		old := dialRaw(t, addr, 4)
		old.connect(connectPacket("same-id", true, 30))
		old.subscribe(1, "sameid/t")
		old.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		// Reconnect at once, as a client restarting in a loop does.
		nw := dialRaw(t, addr, 5)
		nw.connect(connectPacket("same-id", true, 30))
		nw.subscribe(1, "sameid/t")
		want := fmt.Sprint("m", i)
		pub.publish("sameid/t", want, 1, false)
		pk, err := nw.nextPublish(2 * time.Second)
		if err != nil || string(pk.Payload) != want {
			t.Fatalf("round %d: the reconnected client got %q, %v; want %q", i, pk.Payload, err, want)
		}
		_ = old.c.Close()
		_ = nw.c.Close()
	}
}

// A v5 subscriber that asks for no problem information must still get the
// user properties a publisher attached: they are application data.
func TestUserPropertiesReachClientsNotWantingProblemInfo(t *testing.T) {
	b := startBroker(t, Options{})
	for _, rpi := range []bool{false, true} {
		t.Run(fmt.Sprintf("request-problem-info=%v", rpi), func(t *testing.T) {
			sub := dialRaw(t, b.tcpAddr(t), 5)
			cp := connectPacket(fmt.Sprintf("up-sub-%v", rpi), true, 30)
			cp.Properties.RequestProblemInfoFlag = true
			if rpi {
				cp.Properties.RequestProblemInfo = 1
			}
			sub.connect(cp)
			topic := fmt.Sprintf("props/%v", rpi)
			sub.subscribe(1, topic)

			pub := dialRaw(t, b.tcpAddr(t), 5)
			pub.connect(connectPacket(fmt.Sprintf("up-pub-%v", rpi), true, 30))
			pub.send(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish},
				TopicName:   topic,
				Payload:     []byte("x"),
				Properties:  packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}, {Key: "k", Val: "w"}}},
			})
			pk, err := sub.nextPublish(5 * time.Second)
			if err != nil {
				t.Fatalf("no message: %v", err)
			}
			want := []packets.UserProperty{{Key: "k", Val: "v"}, {Key: "k", Val: "w"}}
			if fmt.Sprint(pk.Properties.User) != fmt.Sprint(want) {
				t.Fatalf("user properties = %v, want %v", pk.Properties.User, want)
			}
		})
	}
}

// Retained messages sent because of a new subscription carry that
// subscription's identifier, as live messages do [MQTT-3.3.4-3].
func TestRetainedMessagesCarrySubscriptionIdentifier(t *testing.T) {
	b := startBroker(t, Options{})
	pub := dialRaw(t, b.tcpAddr(t), 5)
	pub.connect(connectPacket("sid-pub", true, 30))
	pub.publish("sid/a", "kept", 1, true)

	sub := dialRaw(t, b.tcpAddr(t), 5)
	sub.connect(connectPacket("sid-sub", true, 30))
	sub.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     []packets.Subscription{{Filter: "sid/#", Qos: 1, Identifier: 42}},
		Properties:  packets.Properties{SubscriptionIdentifier: []int{42}},
	})
	retained, err := sub.nextPublish(5 * time.Second)
	if err != nil {
		t.Fatalf("no retained message: %v", err)
	}
	if string(retained.Payload) != "kept" || fmt.Sprint(retained.Properties.SubscriptionIdentifier) != "[42]" {
		t.Fatalf("retained message %q has subscription ids %v, want [42]", retained.Payload, retained.Properties.SubscriptionIdentifier)
	}
	// A second subscription of the same client overlapping the first: live
	// messages carry both identifiers, and the retained one sent for the new
	// subscription carries only its own.
	sub.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    2,
		Filters:     []packets.Subscription{{Filter: "sid/+", Qos: 1, Identifier: 7}},
		Properties:  packets.Properties{SubscriptionIdentifier: []int{7}},
	})
	again, err := sub.nextPublish(5 * time.Second)
	if err != nil || fmt.Sprint(again.Properties.SubscriptionIdentifier) != "[7]" {
		t.Fatalf("retained message for the second subscription: ids %v, err %v; want [7]", again.Properties.SubscriptionIdentifier, err)
	}
	pub.publish("sid/a", "live", 1, false)
	live, err := sub.nextPublish(5 * time.Second)
	if err != nil || string(live.Payload) != "live" || fmt.Sprint(live.Properties.SubscriptionIdentifier) != "[7 42]" {
		t.Fatalf("live message %q: ids %v, err %v; want [7 42]", live.Payload, live.Properties.SubscriptionIdentifier, err)
	}
}

// persistentV5 is a v5 CONNECT for a session kept for 300 s, accepting
// up to aliasMax server-assigned topic aliases.
func persistentV5(id string, aliasMax uint16) packets.Packet {
	pk := connectPacket(id, false, 30)
	pk.Properties.SessionExpiryInterval = 300
	pk.Properties.SessionExpiryIntervalFlag = true
	pk.Properties.TopicAliasMaximum = aliasMax
	return pk
}

// A QoS 1 message queued for an offline v5 client that accepts topic
// aliases is resent after the reconnect with its topic name: an alias of
// the old connection means nothing on the new one [MQTT-3.3.2-7] (mochi
// sent topic "" with alias 1). It was never sent, so it carries no DUP
// [MQTT-3.3.1-1] (mochi set DUP on every resent message); one that was
// sent and not acknowledged does.
func TestQueuedMessagesResentWithTopicAfterReconnect(t *testing.T) {
	b := startBroker(t, Options{})
	addr := b.tcpAddr(t)
	sub := dialRaw(t, addr, 5)
	sub.connect(persistentV5("alias-sub", 10))
	sub.subscribe(1, "al/t")
	pub := dialRaw(t, addr, 5)
	pub.connect(connectPacket("alias-pub", true, 30))
	// Live messages use the alias: the first one sets it up, the second
	// one carries only the alias.
	pub.publish("al/t", "live1", 1, false)
	pub.publish("al/t", "live2", 1, false)
	first, err := sub.nextPublish(5 * time.Second)
	if err != nil || first.TopicName != "al/t" || first.Properties.TopicAlias != 1 {
		t.Fatalf("first live message: topic %q alias %d, %v; want al/t with alias 1", first.TopicName, first.Properties.TopicAlias, err)
	}
	second, err := sub.nextPublish(5 * time.Second)
	if err != nil || second.TopicName != "" || second.Properties.TopicAlias != 1 {
		t.Fatalf("second live message: topic %q alias %d, %v; want alias 1 alone", second.TopicName, second.Properties.TopicAlias, err)
	}
	// One message is sent and not acknowledged, then the client goes away.
	pub.publish("al/t", "unacked", 1, false)
	unacked, err := sub.tryRecv(5 * time.Second)
	if err != nil || string(unacked.Payload) != "unacked" {
		t.Fatalf("unacked message: %q, %v", unacked.Payload, err)
	}
	sub.c.Close()
	waitFor(t, func() bool {
		cl, ok := b.srv.Clients.Get("alias-sub")
		return ok && cl.Closed()
	})
	pub.publish("al/t", "queued", 1, false)

	again := dialRaw(t, addr, 5)
	if ack := again.connect(persistentV5("alias-sub", 10)); !ack.SessionPresent {
		t.Fatal("session not present after reconnect")
	}
	// Aliases seen on this connection: an alias-only PUBLISH must use
	// one that a PUBLISH of this connection set up.
	aliases := map[uint16]string{}
	for _, want := range []struct {
		payload string
		dup     bool
	}{{"unacked", true}, {"queued", false}} {
		pk, err := again.nextPublish(5 * time.Second)
		if err != nil {
			t.Fatalf("resent %q: %v", want.payload, err)
		}
		topic := pk.TopicName
		if a := pk.Properties.TopicAlias; a != 0 && topic != "" {
			aliases[a] = topic
		} else if a != 0 {
			topic = aliases[a]
		}
		if string(pk.Payload) != want.payload || topic != "al/t" {
			t.Fatalf("resent %q as topic %q alias %d (aliases of this connection: %v), want topic al/t",
				pk.Payload, pk.TopicName, pk.Properties.TopicAlias, aliases)
		}
		if pk.FixedHeader.Dup != want.dup {
			t.Errorf("resent %q with DUP %v, want %v", pk.Payload, pk.FixedHeader.Dup, want.dup)
		}
	}
}

// --topic-alias-out-max caps the aliases the broker assigns (never more
// than the client accepts), and 0 turns them off.
func TestTopicAliasOutMaximum(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limit     uint16
		clientMax uint16
		want      []uint16 // alias of each message: topics a, b, a
	}{
		{"cap of 1", 1, 10, []uint16{1, 0, 1}},
		{"client allows 1", 10, 1, []uint16{1, 0, 1}},
		{"off", 0, 10, []uint16{0, 0, 0}},
		{"client wants none", 10, 0, []uint16{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, Options{ExactLimits: true, Limits: Limits{TopicAliasOutMaximum: tc.limit}})
			sub := dialRaw(t, b.tcpAddr(t), 5)
			cp := connectPacket("ta-sub", true, 30)
			cp.Properties.TopicAliasMaximum = tc.clientMax
			sub.connect(cp)
			sub.subscribe(1, "ta/#")
			pub := dialRaw(t, b.tcpAddr(t), 5)
			pub.connect(connectPacket("ta-pub", true, 30))
			for i, topic := range []string{"ta/a", "ta/b", "ta/a"} {
				pub.publish(topic, "x", 1, false)
				pk, err := sub.nextPublish(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if pk.Properties.TopicAlias != tc.want[i] {
					t.Fatalf("message %d on %s: alias %d, want %d", i, topic, pk.Properties.TopicAlias, tc.want[i])
				}
				if repeat := i == 2 && tc.want[i] != 0; (pk.TopicName == "") != repeat {
					t.Fatalf("message %d on %s: topic name %q", i, topic, pk.TopicName)
				}
			}
		})
	}
}

// A message queued for an offline client and expired by the time it
// reconnects is not delivered, even when mochi's once-a-second expiry sweep
// has not run yet; one still within its expiry is.
func TestExpiredQueuedMessageNotResentOnReconnect(t *testing.T) {
	b := startBroker(t, Options{})
	sessionConnect := func() packets.Packet {
		cp := connectPacket("exp-sub", false, 30)
		cp.Properties.SessionExpiryInterval, cp.Properties.SessionExpiryIntervalFlag = 300, true
		return cp
	}
	sub := dialRaw(t, b.tcpAddr(t), 5)
	sub.connect(sessionConnect())
	sub.subscribe(1, "exp/#")
	sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	waitFor(t, func() bool { cl, ok := b.srv.Clients.Get("exp-sub"); return ok && cl.Closed() })

	pub := dialRaw(t, b.tcpAddr(t), 5)
	pub.connect(connectPacket("exp-pub", true, 30))
	for _, m := range []struct {
		topic  string
		expiry uint32
	}{{"exp/short", 60}, {"exp/long", 300}} {
		pub.send(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   m.topic, PacketID: 9, Payload: []byte(m.topic),
			Properties: packets.Properties{MessageExpiryInterval: m.expiry},
		})
		if ack := pub.recv(); ack.FixedHeader.Type != packets.Puback {
			t.Fatalf("publish %s: got %v", m.topic, ack.FixedHeader.Type)
		}
	}
	routed(t, b.tcpAddr(t), pub)
	// Age exp/short past its expiry, as if the client had been away a
	// minute, just before it reconnects.
	cl, ok := b.srv.Clients.Get("exp-sub")
	if !ok {
		t.Fatal("session gone")
	}
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.TopicName == "exp/short" {
			pk.Expiry = time.Now().Unix() - 1
			cl.State.Inflight.Set(pk)
		}
	}
	again := dialRaw(t, b.tcpAddr(t), 5)
	again.connect(sessionConnect())
	var got []string
	for {
		pk, err := again.nextPublish(1500 * time.Millisecond)
		if err != nil {
			break
		}
		got = append(got, pk.TopicName)
	}
	if fmt.Sprint(got) != "[exp/long]" {
		t.Fatalf("delivered after reconnect: %v, want only [exp/long]", got)
	}
}

// A 3.1.1 client whose session is taken over by a new connection with its
// client id is closed without a DISCONNECT, which 3.1.1 servers never send.
func TestTakenOver311ClientGetsNoDisconnect(t *testing.T) {
	b := startBroker(t, Options{})
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("protocol-level-%d", v), func(t *testing.T) {
			id := fmt.Sprintf("takeover-%d", v)
			first := dialRaw(t, b.tcpAddr(t), v)
			first.connect(connectPacket(id, true, 30))
			second := dialRaw(t, b.tcpAddr(t), v)
			second.connect(connectPacket(id, true, 30))
			pk, err := first.tryRecv(10 * time.Second)
			switch {
			case v == 5 && (err != nil || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != 0x8E):
				t.Fatalf("MQTT 5: want DISCONNECT 0x8E, got type %v reason 0x%02x, err %v", pk.FixedHeader.Type, pk.ReasonCode, err)
			case v == 4 && err == nil:
				t.Fatalf("MQTT 3.1.1: got a %v packet, want the connection closed", pk.FixedHeader.Type)
			case v == 4 && isTimeout(err):
				t.Fatal("MQTT 3.1.1: the old connection stayed open")
			}
		})
	}
}
