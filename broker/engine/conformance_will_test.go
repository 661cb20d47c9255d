package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// watch connects an MQTT 5 subscriber to filter at QoS 1.
func watch(t *testing.T, addr, id, filter string) *peer {
	t.Helper()
	w := dialPeer(t, addr, packet.V5)
	w.connectOK(&packet.Connect{ClientID: id, CleanStart: true})
	w.subscribe(1, packet.Subscription{Filter: filter, QoS: 1})
	return w
}

// withWill connects a client with a QoS 1 will on topicName.
func withWill(t *testing.T, addr string, v packet.Version, c *packet.Connect, topicName, payload string) *peer {
	t.Helper()
	p := dialPeer(t, addr, v)
	if c.Will == nil {
		c.Will = &packet.Will{Topic: topicName, Payload: []byte(payload), QoS: 1}
	}
	p.connectOK(c)
	return p
}

// marker publishes a message on topicName from a fresh client and checks
// that w gets it next: whatever w should not have got would have come
// before it.
func marker(t *testing.T, addr string, w *peer, topicName string) {
	t.Helper()
	p := dialPeer(t, addr, packet.V311)
	p.connectOK(&packet.Connect{ClientID: "marker-" + topicName, CleanStart: true})
	p.publish1(1, topicName, "marker")
	m := w.expectMessage("the marker, and nothing before it", topicName, "marker")
	w.ack(m)
}

// [MQTT-3.1.2-8] the will is published when the connection ends without
// DISCONNECT; [MQTT-3.1.2-10] not after a normal DISCONNECT; MQTT 5's
// DISCONNECT 0x04 asks for it (3.14.2.1).
func TestConformanceWill(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		w := watch(t, tg.addr, "will-watch", "will/#")
		for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
			t.Run(v.String(), func(t *testing.T) {
				tp := "will/" + v.String()
				c := withWill(t, tg.addr, v, &packet.Connect{ClientID: "w-drop" + v.String(), CleanStart: true}, tp+"/drop", "dropped")
				c.drop()
				m := w.expectMessage("the will after a network drop", tp+"/drop", "dropped")
				if m.QoS != 1 || m.Retain {
					t.Errorf("will delivered as %s", packet.Describe(m, packet.V5))
				}
				w.ack(m)

				c = withWill(t, tg.addr, v, &packet.Connect{ClientID: "w-disc" + v.String(), CleanStart: true}, tp+"/disc", "said goodbye")
				c.send(&packet.Disconnect{})
				c.expectClosed("after DISCONNECT")
				marker(t, tg.addr, w, tp+"/disc")

				// An empty will payload is a will like any other.
				c = withWill(t, tg.addr, v, &packet.Connect{ClientID: "w-empty" + v.String(), CleanStart: true}, tp+"/empty", "")
				c.drop()
				m = w.expectMessage("the empty will", tp+"/empty", "")
				w.ack(m)

				// A retained will is retained [MQTT-3.1.2-17].
				c = withWill(t, tg.addr, v, &packet.Connect{ClientID: "w-ret" + v.String(), CleanStart: true,
					Will: &packet.Will{Topic: tp + "/ret", Payload: []byte("kept"), QoS: 1, Retain: true}}, "", "")
				c.drop()
				w.ack(w.expectMessage("the retained will", tp+"/ret", "kept"))
				late := dialPeer(t, tg.addr, packet.V311)
				late.connectOK(&packet.Connect{ClientID: "w-late" + v.String(), CleanStart: true})
				late.subscribe(1, packet.Subscription{Filter: tp + "/ret", QoS: 0})
				if m := late.expectMessage("the retained will, to a new subscriber", tp+"/ret", "kept"); !m.Retain {
					t.Errorf("retained will delivered as %s", packet.Describe(m, packet.V311))
				}
				late.send(&packet.Publish{Topic: tp + "/ret", Retain: true})
				w.ack(w.expectPublish("the clearing of the retained will"))

				if v == packet.V5 {
					c = withWill(t, tg.addr, v, &packet.Connect{ClientID: "w-04", CleanStart: true}, tp+"/04", "with will")
					c.write(unhex("E0 01 04"))
					c.expectClosed("after DISCONNECT 0x04")
					m := w.expectMessage("the will after DISCONNECT 0x04", tp+"/04", "with will")
					w.ack(m)
				}
			})
		}
	})
}

// Will Delay Interval (3.1.3.2.2): the will waits; a new connection for
// the session within the delay cancels it [MQTT-3.1.3-9]; without one it
// is published after the delay.
func TestConformanceWillDelay(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		w := watch(t, tg.addr, "wd-watch", "wd/#")
		delayed := func(id string) *packet.Connect {
			return &packet.Connect{ClientID: id, Properties: packet.Properties{SessionExpiry: 10},
				Will: &packet.Will{Topic: "wd/" + id, Payload: []byte(id), QoS: 1,
					Properties: packet.Properties{WillDelay: 1}}}
		}
		back := withWill(t, tg.addr, packet.V5, delayed("back"), "", "")
		gone := withWill(t, tg.addr, packet.V5, delayed("gone"), "", "")
		back.drop()
		dropped := time.Now()
		gone.drop()
		time.Sleep(100 * time.Millisecond)
		back = dialPeer(t, tg.addr, packet.V5)
		back.send(&packet.Connect{ClientID: "back", Properties: packet.Properties{SessionExpiry: 10}})
		back.expectSession("CONNACK within the will delay", true)

		m := w.expectMessage("the will of the client that did not come back", "wd/gone", "gone")
		if d := time.Since(dropped); d < 900*time.Millisecond {
			t.Errorf("will published %s after the drop, before its delay of 1 s", d)
		}
		if m.Properties.Has(packet.PropWillDelay) || m.Properties.Has(packet.PropMessageExpiry) {
			t.Errorf("will delay forwarded or message expiry invented: %s", packet.Describe(m, packet.V5))
		}
		w.ack(m)
		w.expectSilence("the will of the client that came back", time.Second)
		back.send(&packet.Disconnect{})
	})
}

// Will properties are forwarded with the will (3.1.3.2): payload format,
// content type, response topic, correlation data, user properties in
// order; no Message Expiry Interval is invented, the Will Delay Interval
// is not forwarded.
func TestConformanceWillProperties(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		w := watch(t, tg.addr, "wp-watch", "wp/#")
		props := packet.Properties{
			PayloadFormat:   1,
			ContentType:     "text/plain",
			ResponseTopic:   "wp/reply",
			CorrelationData: []byte{0, 1, 2, 0xFF},
			User:            []packet.UserProperty{{Key: "k", Value: "2"}, {Key: "a", Value: "1"}, {Key: "k", Value: "1"}},
		}
		c := withWill(t, tg.addr, packet.V5, &packet.Connect{ClientID: "wp", CleanStart: true,
			Will: &packet.Will{Topic: "wp/t", Payload: []byte("bye"), QoS: 1, Properties: props}}, "", "")
		c.drop()
		m := w.expectMessage("the will", "wp/t", "bye")
		got := m.Properties
		if got.PayloadFormat != 1 || got.ContentType != props.ContentType || got.ResponseTopic != props.ResponseTopic ||
			string(got.CorrelationData) != string(props.CorrelationData) || !slices.Equal(got.User, props.User) {
			t.Errorf("will properties\n got %s\nwant payload-format 1, content-type, response-topic, correlation-data, user properties k=2 a=1 k=1",
				packet.Describe(m, packet.V5))
		}
		for _, id := range []packet.PropID{packet.PropMessageExpiry, packet.PropWillDelay, packet.PropTopicAlias} {
			if got.Has(id) {
				t.Errorf("will carries %s: %s", id, packet.Describe(m, packet.V5))
			}
		}
		w.ack(m)
	})
}

// A connection taken over ends without DISCONNECT, so its will is
// published [MQTT-3.1.2-8]; MQTT 5 says so for take-over in 3.1.4 ("If
// the existing Client has a Will Message, that Will Message is
// published"), at once with a will delay of 0. mosquitto does the same,
// for 3.1.1 and 5. (Issue 17 listed the opposite as a fault of the old
// broker; the specification and mosquitto agree against it.)
func TestConformanceWillOnTakeOver(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		w := watch(t, tg.addr, "wt-watch", "wt/#")
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			id := "wt-" + v.String()
			old := withWill(t, tg.addr, v, &packet.Connect{ClientID: id, CleanStart: true}, "wt/"+v.String(), "taken over")
			nw := dialPeer(t, tg.addr, v)
			nw.connectOK(&packet.Connect{ClientID: id, CleanStart: true})
			if v == packet.V5 && !tg.mosq {
				old.expectRaw("DISCONNECT", unhex("E0 01 8E"))
			}
			old.expectClosed("the old connection")
			m := w.expectMessage("the will of the connection taken over", "wt/"+v.String(), "taken over")
			w.ack(m)
		}
	})
}

// With a will delay, a take-over that resumes the session is a new
// connection within the delay: the will is not sent [MQTT-3.1.3-9].
func TestConformanceDelayedWillNotOnResumingTakeOver(t *testing.T) {
	t.Parallel()
	_, addr := start(t, Config{})
	w := watch(t, addr, "wd-watch", "wd/#")
	c := persistent("wd-5", packet.V5)
	c.Will = &packet.Will{Topic: "wd/5", Payload: []byte("delayed"), QoS: 1}
	c.Will.Properties.WillDelay = 30
	old := dialPeer(t, addr, packet.V5)
	old.connectOK(c)
	nw := dialPeer(t, addr, packet.V5)
	nw.send(persistent("wd-5", packet.V5))
	nw.expectSession("CONNACK", true)
	old.expectRaw("DISCONNECT", unhex("E0 01 8E"))
	old.expectClosed("the old connection")
	marker(t, addr, w, "wd/5")
}

// [MQTT-3.1.2-24] a client silent for one and a half times its keep alive
// is disconnected (MQTT 5: DISCONNECT 0x8D first, 4.13.2), and its will
// is published; a client that sends PINGREQ in time stays
// [MQTT-3.12.4-1].
//
// Engine only: mosquitto 2.0.11 checks keep alive every few seconds and
// took 5.3 s to close a client with keep alive 1 (and closes an MQTT 5
// one without DISCONNECT 0x8D).
func TestConformanceKeepAlive(t *testing.T) {
	t.Parallel()
	func(t *testing.T, tg target) {
		w := watch(t, tg.addr, "ka-watch", "ka/#")
		silent5 := withWill(t, tg.addr, packet.V5, &packet.Connect{ClientID: "ka5", CleanStart: true, KeepAlive: 1}, "ka/5", "timed out")
		silent3 := withWill(t, tg.addr, packet.V311, &packet.Connect{ClientID: "ka3", CleanStart: true, KeepAlive: 1}, "ka/3", "timed out")
		pinger := dialPeer(t, tg.addr, packet.V311)
		pinger.connectOK(&packet.Connect{ClientID: "ka-ping", CleanStart: true, KeepAlive: 1})
		began := time.Now()

		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 4 {
				time.Sleep(500 * time.Millisecond)
				_ = pinger.nc.SetWriteDeadline(time.Now().Add(waitFor))
				if _, err := pinger.nc.Write([]byte{0xC0, 0x00}); err != nil {
					return
				}
			}
		}()

		silent5.expectDisconnect("the silent MQTT 5 client", packet.KeepAliveTimeout)
		if d := time.Since(began); d < time.Second {
			t.Errorf("disconnected after %s, before its keep alive of 1 s", d)
		}
		silent3.expectClosed("the silent 3.1.1 client")
		var wills []string
		for range 2 {
			m := w.expectPublish("a will")
			wills = append(wills, m.Topic)
			w.ack(m)
		}
		slices.Sort(wills)
		if !slices.Equal(wills, []string{"ka/3", "ka/5"}) {
			t.Errorf("wills on %v, want ka/3 and ka/5", wills)
		}
		<-done
		for range 4 {
			pinger.expectRaw("PINGRESP", unhex("D0 00"))
		}
		pinger.send(&packet.Disconnect{})
		pinger.expectClosed("the pinging client, after its DISCONNECT")
	}(t, engineTarget(t, Config{}))
}

// The will waits for its delay or for the end of the session, whichever
// comes first (3.1.2.5, 3.1.3.2.2): a client whose session ends with the
// connection has its will published at once despite a delay of 5 s; one
// whose session expires after 1 s, at 1 s despite a delay of 10 s.
func TestConformanceWillDelaySessionEnd(t *testing.T) {
	t.Parallel()
	both(t, Config{}, func(t *testing.T, tg target) {
		w := watch(t, tg.addr, "wse-watch", "wse/#")
		now := withWill(t, tg.addr, packet.V5, &packet.Connect{ClientID: "wse-now", CleanStart: true,
			Will: &packet.Will{Topic: "wse/now", Payload: []byte("now"), QoS: 1, Properties: packet.Properties{WillDelay: 5}}}, "", "")
		soon := withWill(t, tg.addr, packet.V5, &packet.Connect{ClientID: "wse-soon", CleanStart: true,
			Properties: packet.Properties{SessionExpiry: 1},
			Will:       &packet.Will{Topic: "wse/soon", Payload: []byte("soon"), QoS: 1, Properties: packet.Properties{WillDelay: 10}}}, "", "")
		began := time.Now()
		now.drop()
		soon.drop()
		arrived := map[string]time.Duration{}
		for len(arrived) < 2 && time.Since(began) < 2500*time.Millisecond {
			b, err := w.readRaw(100 * time.Millisecond)
			if isTimeout(err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			m, ok := w.decode(b).(*packet.Publish)
			if !ok {
				t.Fatalf("got %s", w.describe(b))
			}
			arrived[m.Topic] = time.Since(began)
			w.ack(m)
		}
		if d, ok := arrived["wse/now"]; !ok || d > 800*time.Millisecond {
			differs(t, tg, "will of a session with expiry 0 and will delay 5 s: published after %v (0: not within 2.5 s), want at once", d)
		}
		if d, ok := arrived["wse/soon"]; !ok || d < 900*time.Millisecond || d > 2*time.Second {
			differs(t, tg, "will of a session with expiry 1 s and will delay 10 s: published after %v (0: not within 2.5 s), want at about 1 s", d)
		}
	})
}

// A server shutdown tells MQTT 5 clients DISCONNECT 0x8B (4.13.2) and
// closes 3.1.1 ones, and closes connections that come after it.
func TestConformanceShutdown(t *testing.T) {
	t.Parallel()
	s, addr := start(t, Config{})
	c5 := withWill(t, addr, packet.V5, &packet.Connect{ClientID: "sd5", CleanStart: true}, "sd/5", "x")
	c3 := withWill(t, addr, packet.V311, &packet.Connect{ClientID: "sd3", CleanStart: true}, "sd/3", "x")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c5.expectRaw("DISCONNECT", unhex("E0 01 8B"))
	c5.expectClosed("after DISCONNECT")
	c3.expectClosed("the 3.1.1 client")
	// The listener is the test's and still accepts; the engine closes
	// what it is given after Close.
	p := dialPeer(t, addr, packet.V311)
	p.send(&packet.Connect{ClientID: "late", CleanStart: true})
	p.expectClosed("a connection after Close")
}
