package pub

import (
	"fmt"
	"testing"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/testpki"
)

// TestTLSAndWebSocket publishes over MQTTS, WebSockets and secure
// WebSockets with both protocol versions, and a probe on the plain TCP
// listener of the same broker receives every message byte for byte, in
// order.
func TestTLSAndWebSocket(t *testing.T) {
	pki := testpki.New(t)
	ca := pki.CAFile
	cert, key := pki.Server(t, "server", "127.0.0.1", "localhost")
	tls := &mosquittotest.TLS{CAFile: ca, CertFile: cert, KeyFile: key}
	// The MQTTS listener comes first: brokertest takes the TLS settings of
	// mqtk's broker from the first listener of the group, and a plain one
	// there would leave the TLS listeners without a certificate.
	opts := mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{TLS: tls}, {}, {WebSockets: true}, {WebSockets: true, TLS: tls},
	}}
	brokertest.Each(t, opts, func(t *testing.T, b *brokertest.Broker) {
		p := newProbeOn(t, b, 1, "tr/#")
		configs := map[string]func(v mqttconn.Version) mqttconn.Config{
			"mqtts": func(v mqttconn.Version) mqttconn.Config {
				c := mqttconn.Default()
				c.Host, c.Port, c.Version = "127.0.0.1", b.Ports[0], v
				c.TLS = mqttconn.TLS{Enabled: true, CAFile: ca}
				return c
			},
			"ws": func(v mqttconn.Version) mqttconn.Config {
				c := mqttconn.Default()
				c.URL, c.Version = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", b.Ports[2]), v
				return c
			},
			"wss": func(v mqttconn.Version) mqttconn.Config {
				c := mqttconn.Default()
				c.URL, c.Version = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", b.Ports[3]), v
				c.TLS.CAFile = ca
				return c
			},
		}
		var want []string
		for _, name := range []string{"mqtts", "ws", "wss"} {
			for _, v := range []mqttconn.Version{mqttconn.V5, mqttconn.V311} {
				cfg := configs[name](v)
				if err := cfg.Resolve(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				topic := fmt.Sprintf("tr/%s/%d", name, v)
				payload := []byte{0, 1, 2, 0xfe, 0xff}
				o := Options{Conn: cfg, Source: source.Message, Topic: topic, Message: "000102feff", Encoding: EncHex, QoS: 1}
				if stderr, err := run(t, &o, nil); err != nil {
					t.Fatalf("%s %s: %v\n%s", name, v, err, stderr)
				}
				want = append(want, fmt.Sprintf("%s %x", topic, payload))
			}
		}
		msgs := p.messages(len(want))
		if got := topicHex(msgs); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("received %q\nwant %q", got, want)
		}
		for _, m := range msgs {
			if m.QoS != 1 {
				t.Errorf("%s arrived at qos %d, want 1", m.Topic, m.QoS)
			}
		}
	})
}
