package mqttconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/testpki"
	"github.com/mqtk/mqtk/internal/ui"
)

// rawConnack writes an MQTT CONNECT of version v on nc and returns the
// CONNACK read back: the conn DialConn returned carries MQTT both ways.
func rawConnack(t *testing.T, nc net.Conn, v packet.Version, id string) *packet.Connack {
	t.Helper()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := packet.Encode(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(b); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	pk, err := packet.NewReader(nc, 0).ReadPacket(v)
	if err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	ca, ok := pk.(*packet.Connack)
	if !ok {
		t.Fatalf("got %s, want CONNACK", pk.Type())
	}
	return ca
}

// TestDialConn opens raw connections to both brokers over every transport
// and speaks MQTT on them: a CONNECT written by hand is answered with a
// CONNACK that accepts it, at MQTT 5 and 3.1.1.
func TestDialConn(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "localhost", "127.0.0.1")
	tlsL := &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{}, {TLS: tlsL}, {WebSockets: true}, {Unix: true}, {WebSockets: true, TLS: tlsL},
	}}, func(t *testing.T, b *brokertest.Broker) {
		for _, tc := range []struct {
			name, url string
		}{
			{"tcp", "mqtt://" + b.Addr(0)},
			{"tls", fmt.Sprintf("mqtts://localhost:%d", b.Ports[1])},
			{"ws", fmt.Sprintf("ws://127.0.0.1:%d/mqtt", b.Ports[2])},
			{"unix", "unix://" + b.Socket[3]},
			{"wss", fmt.Sprintf("wss://localhost:%d/mqtt", b.Ports[4])},
		} {
			for _, v := range []packet.Version{packet.V5, packet.V311} {
				t.Run(tc.name+"/"+v.String(), func(t *testing.T) {
					cfg := Default()
					cfg.URL = tc.url
					if strings.HasPrefix(tc.url, "mqtts:") || strings.HasPrefix(tc.url, "wss:") {
						// Only there: --cafile turns mqtt:// into TLS, as
						// mosquitto_pub's does.
						cfg.TLS.CAFile = pki.CAFile
					}
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					defer cancel()
					// DialConn resolves cfg itself, as Dial does.
					nc, err := DialConn(ctx, cfg)
					if err != nil {
						t.Fatalf("DialConn %s: %v", tc.url, err)
					}
					defer nc.Close()
					ca := rawConnack(t, nc, v, "dialconn-"+tc.name+"-"+v.String())
					if ca.Code != packet.Success {
						t.Errorf("CONNACK code %#x, want success", byte(ca.Code))
					}
					if v == packet.V5 && !ca.Properties.Has(packet.PropTopicAliasMaximum) {
						// Both brokers announce a topic alias maximum
						// (10 by default): the CONNACK was decoded as
						// MQTT 5, whole.
						t.Errorf("MQTT 5 CONNACK without Topic Alias Maximum: %+v", ca.Properties)
					}
				})
			}
		}
	})
}

// TestDialConnDiagnosis: a failure to open the transport is classified
// and hinted as Dial classifies it, and the debug trace shows the raw
// exchange.
func TestDialConnDiagnosis(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "localhost", "127.0.0.1")
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{}, {TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}},
	}}, func(t *testing.T, b *brokertest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dialErr := func(cfg Config) error {
			t.Helper()
			nc, err := DialConn(ctx, cfg)
			if err == nil {
				nc.Close()
				t.Fatalf("DialConn %s succeeded, want an error", cfg.String())
			}
			return err
		}

		cfg := Default()
		cfg.URL = fmt.Sprintf("mqtt://127.0.0.1:%d", mosquittotest.FreePort(t))
		wantErr(t, dialErr(cfg), clierr.KindNetwork, "connection refused", "is a broker running")

		cfg = Default()
		cfg.URL = fmt.Sprintf("mqtts://localhost:%d", b.Ports[1])
		cfg.TLS.CAFile = testpki.New(t).CAFile
		wantErr(t, dialErr(cfg), clierr.KindTLS, "unknown authority", "--cafile")

		cfg = Default()
		cfg.URL = fmt.Sprintf("mqtts://localhost:%d", b.Ports[0])
		cfg.TLS.CAFile = pki.CAFile
		wantErr(t, dialErr(cfg), clierr.KindTLS, "did not answer TLS", "is port")

		cfg = Default()
		cfg.URL = fmt.Sprintf("mqtts://localhost:%d", b.Ports[1])
		cfg.TLS.CAFile = filepath.Join(t.TempDir(), "missing.pem")
		wantErr(t, dialErr(cfg), clierr.KindUsage, "--cafile")

		// -d traces what the caller writes and reads, packet by packet.
		var trace ui.SyncBuffer
		cfg = Default()
		cfg.URL = "mqtt://" + b.Addr(0)
		cfg.Debug = &trace
		nc, err := DialConn(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		rawConnack(t, nc, packet.V5, "dialconn-trace")
		nc.Close()
		for _, want := range []string{"mqtk: → CONNECT", "mqtk: ← CONNACK"} {
			if !strings.Contains(trace.String(), want) {
				t.Errorf("trace lacks %q:\n%s", want, trace.String())
			}
		}
	})
}

// TestDialTLS handshakes with configurations of the caller's own on top
// of TLSConfig's: the version asked for is the version negotiated, and a
// version the broker refuses fails with crypto/tls's error.
func TestDialTLS(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "localhost", "127.0.0.1")
	for _, name := range brokertest.Names() {
		t.Run(name, func(t *testing.T) {
			l := mosquittotest.Listener{TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}}
			// A version the broker refuses: mosquitto is told to take
			// TLS 1.3 alone; mqtk's broker has no such setting but
			// refuses anything older than TLS 1.2, its fixed floor.
			refused := uint16(tls.VersionTLS12)
			if name == brokertest.Mosquitto {
				l.Extra = "tls_version tlsv1.3"
			} else {
				refused = tls.VersionTLS11
			}
			b := brokertest.Start(t, name, mosquittotest.Options{Listeners: []mosquittotest.Listener{l}})
			cfg := Default()
			cfg.URL = fmt.Sprintf("mqtts://localhost:%d", b.Port())
			cfg.TLS.CAFile = pki.CAFile
			if err := cfg.Resolve(); err != nil {
				t.Fatal(err)
			}
			base, err := TLSConfig(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			if base.ServerName != "localhost" || base.RootCAs == nil {
				t.Fatalf("TLSConfig: server name %q, CAs %v", base.ServerName, base.RootCAs)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := DialTLS(ctx, cfg, base)
			if err != nil {
				t.Fatal(err)
			}
			if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
				t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(v))
			}
			if ca := rawConnack(t, c, packet.V5, "dialtls"); ca.Code != packet.Success {
				t.Errorf("CONNACK code %#x over DialTLS", byte(ca.Code))
			}
			c.Close()

			older := base.Clone()
			older.MaxVersion = refused
			if refused < tls.VersionTLS12 {
				// Go's client offers TLS 1.0 and 1.1 only when asked to.
				older.MinVersion = tls.VersionTLS10
			}
			if c, err := DialTLS(ctx, cfg, older); err == nil {
				c.Close()
				t.Errorf("a %s handshake with a broker that refuses it succeeded", tls.VersionName(refused))
			} else if clierr.KindOf(err) != clierr.KindOther {
				t.Errorf("DialTLS error %v is classified (kind %d): callers get it raw", err, clierr.KindOf(err))
			} else if !strings.Contains(err.Error(), "protocol version") {
				// The broker's protocol_version alert, not a configuration
				// our own side refused to offer.
				t.Errorf("DialTLS error %v is not the broker's refusal of %s", err, tls.VersionName(refused))
			}
		})
	}
}
