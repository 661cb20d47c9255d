package mqttconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
)

func TestV5Properties(t *testing.T) { bothClients(t, testV5Properties) }

func testV5Properties(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		cfg := defaultFor(native)
		cfg.Host, cfg.Port = "127.0.0.1", b.Port()
		info := v5Properties(t, cfg)
		if info.MaximumQoS != 2 || !info.RetainAvailable {
			t.Errorf("info from CONNACK = %+v", info)
		}
		// The brokers rightly differ in the Receive Maximum: mosquitto
		// announces its own (max_inflight_messages); mqtk's broker
		// leaves its 65535 out of CONNACK, which an absent property
		// means (MQTT 5 section 3.2.2.3.3; engine.DefaultConfig says why).
		if b.IsMosquitto() && info.ReceiveMaximum == 0 {
			t.Errorf("mosquitto's CONNACK without its Receive Maximum: %+v", info)
		}
		if !b.IsMosquitto() && info.ReceiveMaximum != 0 {
			t.Errorf("mqtk's CONNACK with Receive Maximum %d, want it left out: %+v", info.ReceiveMaximum, info)
		}
	})
}

// v5Properties sends a PUBLISH with every MQTT 5 property through the
// broker cfg names, checks that all of them arrive, and returns what the
// subscriber's CONNACK said.
func v5Properties(t *testing.T, cfg Config) Info {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	col := newCollector()
	subCfg := cfg
	subCfg.OnMessage = col.on
	sub := dial(t, subCfg)
	if _, err := sub.Subscribe(ctx, []Subscription{{Filter: "props/#", QoS: 1, SubscriptionID: 42}}); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, cfg)
	pf, exp := byte(1), uint32(300)
	sent := &Message{
		Topic: "props/a", Payload: []byte(`{"a":1}`), QoS: 1,
		PayloadFormat: &pf, MessageExpiry: &exp,
		ResponseTopic: "props/reply", CorrelationData: []byte{0, 1, 0xff},
		ContentType:    "application/json",
		UserProperties: []UserProperty{{"z", "1"}, {"a", "2"}, {"z", "3"}},
	}
	if err := pub.Publish(ctx, sent); err != nil {
		t.Fatal(err)
	}
	got := col.wait(t, 1)[0]
	if got.PayloadFormat == nil || *got.PayloadFormat != 1 {
		t.Errorf("payload format = %v", got.PayloadFormat)
	}
	if got.MessageExpiry == nil || *got.MessageExpiry == 0 || *got.MessageExpiry > 300 {
		t.Errorf("message expiry = %v", got.MessageExpiry)
	}
	if got.ResponseTopic != "props/reply" || !bytes.Equal(got.CorrelationData, []byte{0, 1, 0xff}) || got.ContentType != "application/json" {
		t.Errorf("properties = %q %x %q", got.ResponseTopic, got.CorrelationData, got.ContentType)
	}
	if !reflect.DeepEqual(got.UserProperties, sent.UserProperties) {
		t.Errorf("user properties = %v, want %v (order kept, duplicates allowed)", got.UserProperties, sent.UserProperties)
	}
	if !reflect.DeepEqual(got.SubscriptionIDs, []int{42}) {
		t.Errorf("subscription ids = %v", got.SubscriptionIDs)
	}
	if got.Received.IsZero() || got.QoS != 1 || got.PacketID == 0 {
		t.Errorf("received %v qos %d id %d", got.Received, got.QoS, got.PacketID)
	}
	return sub.Info()
}

// TestRejectedPublish: the broker's ACL denies the topic; with MQTT 5 the
// PUBACK carries "not authorized", which must surface as clierr.KindRejected.
func TestRejectedPublish(t *testing.T) { bothClients(t, testRejectedPublish) }

func testRejectedPublish(t *testing.T, native bool) {
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("topic readwrite open/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	brokertest.Each(t, mosquittotest.Options{ACLFile: acl}, func(t *testing.T, b *brokertest.Broker) {
		cfg := defaultFor(native)
		cfg.Host, cfg.Port = "127.0.0.1", b.Port()
		c := dial(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Publish(ctx, &Message{Topic: "open/x", Payload: []byte("ok"), QoS: 1}); err != nil {
			t.Fatalf("allowed publish: %v", err)
		}
		for _, q := range []byte{1, 2} {
			err := c.Publish(ctx, &Message{Topic: "closed/x", Payload: []byte("no"), QoS: q})
			var e *clierr.Error
			if !errors.As(err, &e) || e.Kind != clierr.KindRejected || e.Reason < 0x80 {
				t.Fatalf("qos %d denied publish: err = %v, want clierr.KindRejected with a failure reason", q, err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(ReasonName(e.Reason))) || !bytes.Contains([]byte(err.Error()), []byte("closed/x")) {
				t.Errorf("message %q does not name the topic and reason", err)
			}
		}
	})
}

// TestPersistentSession: -c without -x must keep the MQTT 5 session after
// the connection ends (session expiry "never"), and with 3.1.1 too.
func TestPersistentSession(t *testing.T) { bothClients(t, testPersistentSession) }

func testPersistentSession(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range []Version{V5, V311} {
			t.Run(v.String(), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				cfg := defaultFor(native)
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Port()
				cfg.ClientID = "mqtk-persist-" + v.String()
				cfg.NoClean = true
				first, err := Dial(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := first.Subscribe(ctx, []Subscription{{Filter: "persist/" + v.String(), QoS: 1}}); err != nil {
					t.Fatal(err)
				}
				if err := first.Disconnect(ctx); err != nil {
					t.Fatal(err)
				}
				other := defaultFor(native)
				other.Version = v
				other.Host, other.Port = cfg.Host, cfg.Port
				p := dial(t, other)
				if err := p.Publish(ctx, &Message{Topic: "persist/" + v.String(), Payload: []byte("queued"), QoS: 1}); err != nil {
					t.Fatal(err)
				}
				col := newCollector()
				cfg.OnMessage = col.on
				again := dial(t, cfg)
				if !again.Info().SessionPresent {
					t.Errorf("session present = false after reconnecting with -c")
				}
				if m := col.wait(t, 1)[0]; string(m.Payload) != "queued" {
					t.Errorf("got %q", m.Payload)
				}
				// Leave no session behind for other runs.
				again.Disconnect(ctx)
				clean := cfg
				clean.NoClean = false
				clean.OnMessage = nil
				c := dial(t, clean)
				c.Disconnect(ctx)
			})
		}
	})
}

// TestConnectionLost: a second client with the same id takes the session
// over; the first must see Done, Err and OnConnectionLost, and its will
// must be published.
func TestConnectionLost(t *testing.T) { bothClients(t, testConnectionLost) }

func testConnectionLost(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range versions {
			t.Run(v.String(), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				wills := newCollector()
				watch := defaultFor(native)
				watch.Version = v
				watch.Host, watch.Port = "127.0.0.1", b.Port()
				watch.OnMessage = wills.on
				w := dial(t, watch)
				if _, err := w.Subscribe(ctx, []Subscription{{Filter: "will/" + v.String(), QoS: 1}}); err != nil {
					t.Fatal(err)
				}

				lostErr := make(chan error, 1)
				cfg := defaultFor(native)
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Port()
				cfg.ClientID = "mqtk-lost-" + v.String()
				cfg.Will = &Will{Topic: "will/" + v.String(), Payload: []byte("gone"), QoS: 1, Retain: true}
				cfg.OnConnectionLost = func(err error) { lostErr <- err }
				first := dial(t, cfg)

				cfg2 := cfg
				cfg2.Will, cfg2.OnConnectionLost = nil, nil
				dial(t, cfg2)

				select {
				case <-first.Done():
				case <-ctx.Done():
					t.Fatal("Done not closed after the session was taken over")
				}
				if first.Err() == nil || clierr.KindOf(first.Err()) != clierr.KindNetwork {
					t.Errorf("Err() = %v, want a network error", first.Err())
				}
				select {
				case err := <-lostErr:
					if err == nil {
						t.Error("OnConnectionLost got nil")
					}
				case <-ctx.Done():
					t.Fatal("OnConnectionLost not called")
				}
				if err := first.Publish(ctx, &Message{Topic: "x", QoS: 1}); err == nil {
					t.Error("publish on a lost connection succeeded")
				}
				// The take-over closed the first connection without a
				// DISCONNECT from its client, so its will is published:
				// [MQTT-3.1.2-8], and in MQTT 5 section 3.1.4 step 1 in
				// so many words (will delay 0: at once).
				if m := wills.wait(t, 1)[0]; string(m.Payload) != "gone" {
					t.Errorf("will payload = %q", m.Payload)
				}
				// The will was retained: a later subscriber gets it as such.
				late := newCollector()
				lcfg := watch
				lcfg.OnMessage = late.on
				l := dial(t, lcfg)
				if _, err := l.Subscribe(ctx, []Subscription{{Filter: "will/" + v.String(), QoS: 1}}); err != nil {
					t.Fatal(err)
				}
				if m := late.wait(t, 1)[0]; string(m.Payload) != "gone" || !m.Retain {
					t.Errorf("late subscriber got %q retain=%v, want the retained will", m.Payload, m.Retain)
				}
			})
		}
	})
}

// TestBrokerKilled: when the broker process dies, every client ends with a
// network error, pending publishes fail instead of hanging, and Disconnect
// afterwards is harmless.
func TestBrokerKilled(t *testing.T) { bothClients(t, testBrokerKilled) }

func testBrokerKilled(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var clients []Client
		lost := make(chan error, len(versions))
		for _, v := range versions {
			cfg := defaultFor(native)
			cfg.Version = v
			cfg.Host, cfg.Port = "127.0.0.1", b.Port()
			cfg.OnConnectionLost = func(err error) { lost <- err }
			clients = append(clients, dial(t, cfg))
		}
		// mosquitto dies of SIGKILL. mqtk's broker runs in this process
		// and cannot die alone: Kill closes it, telling MQTT 5 clients
		// with DISCONNECT 0x8B (server shutting down) first. Either way
		// each client must end as below.
		b.Kill()
		for i, c := range clients {
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatalf("client %d: Done not closed after the broker died", i)
			}
			if clierr.KindOf(c.Err()) != clierr.KindNetwork {
				t.Errorf("client %d: Err() = %v, want a network error", i, c.Err())
			}
			if err := c.Publish(ctx, &Message{Topic: "x", QoS: 1}); err == nil {
				t.Errorf("client %d: publish after the broker died succeeded", i)
			}
			if err := c.Disconnect(ctx); err != nil {
				t.Errorf("client %d: Disconnect after loss: %v", i, err)
			}
		}
		for range clients {
			select {
			case err := <-lost:
				if err == nil {
					t.Error("OnConnectionLost got nil")
				}
			case <-ctx.Done():
				t.Fatal("OnConnectionLost not called for every client")
			}
		}
	})
}

// TestLastMessageAcknowledgedBeforeDisconnect: a caller that disconnects
// as soon as its handler has seen the message it waited for (`sub -c -C 1`)
// must still acknowledge it, or the broker delivers it again to the next
// session. The handler here returns 100 ms after reporting the message,
// so without the wait in Disconnect the DISCONNECT goes out before the
// library's PUBACK/PUBREC every time.
func TestLastMessageAcknowledgedBeforeDisconnect(t *testing.T) {
	bothClients(t, testLastMessageAcknowledgedBeforeDisconnect)
}

func testLastMessageAcknowledgedBeforeDisconnect(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range []Version{V5, V311} {
			for _, qos := range []byte{1, 2} {
				t.Run(fmt.Sprintf("%s/qos%d", v, qos), func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					base := defaultFor(native)
					base.Host, base.Port, base.Version = "127.0.0.1", b.Port(), v
					sess := base
					sess.ClientID = fmt.Sprintf("acklast-%s-%d-%d", v, qos, time.Now().UnixNano())
					sess.NoClean = true
					topic := "acklast/" + sess.ClientID

					seen := make(chan *Message, 4)
					sess.OnMessage = func(m *Message) {
						seen <- m
						time.Sleep(100 * time.Millisecond)
					}
					sub, err := Dial(ctx, sess)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := sub.Subscribe(ctx, []Subscription{{Filter: topic, QoS: qos}}); err != nil {
						t.Fatal(err)
					}
					pub := dial(t, base)
					if err := pub.Publish(ctx, &Message{Topic: topic, Payload: []byte("once"), QoS: qos}); err != nil {
						t.Fatal(err)
					}
					select {
					case <-seen:
					case <-ctx.Done():
						t.Fatal("message not received")
					}
					if err := sub.Disconnect(ctx); err != nil {
						t.Fatal(err)
					}

					again := make(chan *Message, 4)
					sess.OnMessage = func(m *Message) { again <- m }
					sub2, err := Dial(ctx, sess)
					if err != nil {
						t.Fatal(err)
					}
					defer sub2.Disconnect(context.Background())
					if !sub2.Info().SessionPresent {
						t.Fatal("the persistent session was not kept")
					}
					select {
					case m := <-again:
						t.Fatalf("%q delivered again (dup=%v): it was not acknowledged before DISCONNECT", m.Payload, m.Dup)
					case <-time.After(time.Second):
					}
				})
			}
		}
	})
}
