package mqttconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/testpki"
	"github.com/mqtk/mqtk/internal/ui"
)

var versions = []Version{V5, V311, V31}

// The round trip of every protocol version over WebSocket and a unix
// socket, with both clients, against both brokers.
func TestRoundTripWebSocketAndUnix(t *testing.T) { bothClients(t, testRoundTripWebSocketAndUnix) }

func testRoundTripWebSocketAndUnix(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{WebSockets: true}, {Unix: true},
	}}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range versions {
			t.Run("ws/"+v.String(), func(t *testing.T) {
				cfg := defaultFor(native)
				cfg.Version = v
				cfg.URL = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", b.Ports[0])
				cfg.WSHeaders = map[string][]string{"X-Test": {"mqtk"}}
				roundTrip(t, cfg)
			})
			t.Run("unix/"+v.String(), func(t *testing.T) {
				cfg := defaultFor(native)
				cfg.Version = v
				cfg.URL = "unix://" + b.Socket[1]
				roundTrip(t, cfg)
			})
		}
	})
}

// connectErr dials cfg and returns the error, failing when Dial succeeds.
func connectErr(t *testing.T, cfg Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err == nil {
		c.Disconnect(ctx)
		t.Fatalf("dial %s succeeded, want an error", cfg.String())
	}
	return err
}

// wantErr checks the error's Kind and that its message and hints hold each
// of the given fragments.
func wantErr(t *testing.T, err error, kind clierr.Kind, fragments ...string) {
	t.Helper()
	if clierr.KindOf(err) != kind {
		t.Errorf("kind of %q = %d, want %d", err, clierr.KindOf(err), kind)
	}
	all := err.Error() + "\n" + strings.Join(clierr.HintsOf(err), "\n")
	for _, f := range fragments {
		if !strings.Contains(all, f) {
			t.Errorf("error %q (hints %q) does not mention %q", err, clierr.HintsOf(err), f)
		}
	}
	if msg := err.Error(); msg != "" && strings.ToLower(msg[:1]) != msg[:1] {
		t.Errorf("message %q does not start lower-case", msg)
	}
}

func TestUsernamePassword(t *testing.T) {
	// mqtk's broker writes the password file in mosquitto_passwd's own
	// format, which both brokers read, so that no Debian tool is needed.
	pwfile := filepath.Join(t.TempDir(), "passwd")
	if err := broker.SetPassword(pwfile, "alice", []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	brokertest.Each(t, mosquittotest.Options{PasswordFile: pwfile}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range versions {
			t.Run(v.String(), func(t *testing.T) {
				// mqtk's broker pauses a second before refusing bad
				// credentials: the versions wait for it side by side.
				t.Parallel()
				cfg := Default()
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Port()
				cfg.Username, cfg.Password = "alice", "s3cret"
				roundTrip(t, cfg)

				bad := cfg
				bad.Password = "wrong"
				err := connectErr(t, bad)
				wantErr(t, err, clierr.KindRefused, "refused the connection")
				var e *clierr.Error
				if !errors.As(err, &e) || (e.Reason != 0x86 && e.Reason != 0x87) {
					t.Errorf("reason = %#x, want 0x86 or 0x87", e.Reason)
				}
				if !strings.Contains(err.Error(), ReasonName(e.Reason)) {
					t.Errorf("message %q does not name the reason", err)
				}
				if len(clierr.HintsOf(err)) == 0 {
					t.Errorf("no hint for %q", err)
				}

				anon := cfg
				anon.Username, anon.Password = "", ""
				wantErr(t, connectErr(t, anon), clierr.KindRefused, "refused the connection")
			})
		}
	})
}

func TestTLS(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "server", "localhost", "127.0.0.1")
	ccert, ckey := pki.Issue(t, "client", true, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), "client")
	tlsL := &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}
	mtlsL := &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key, RequireCertificate: true}
	// Listeners with different TLS settings are on separate mqtk brokers
	// (brokertest's group): each is reached on its own port all the same.
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{TLS: tlsL}, {TLS: mtlsL}, {TLS: tlsL, WebSockets: true},
	}}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range versions {
			t.Run("cafile/"+v.String(), func(t *testing.T) {
				cfg := Default()
				cfg.Version = v
				cfg.URL = fmt.Sprintf("mqtts://localhost:%d", b.Ports[0])
				cfg.TLS.CAFile = pki.CAFile
				roundTrip(t, cfg)
			})
			t.Run("client-cert/"+v.String(), func(t *testing.T) {
				cfg := Default()
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Ports[1]
				cfg.TLS = TLS{CAFile: pki.CAFile, CertFile: ccert, KeyFile: ckey}
				roundTrip(t, cfg)
			})
			t.Run("wss/"+v.String(), func(t *testing.T) {
				cfg := Default()
				cfg.Version = v
				cfg.URL = fmt.Sprintf("wss://localhost:%d/mqtt", b.Ports[2])
				cfg.TLS.CAFile = pki.CAFile
				roundTrip(t, cfg)
			})
		}
		t.Run("insecure", func(t *testing.T) {
			cfg := Default()
			cfg.Host, cfg.Port = "127.0.0.1", b.Ports[0]
			cfg.TLS.Insecure = true
			roundTrip(t, cfg)
		})
		t.Run("unknown-authority", func(t *testing.T) {
			cfg := Default()
			cfg.URL = fmt.Sprintf("mqtts://127.0.0.1:%d", b.Ports[0])
			wantErr(t, connectErr(t, cfg), clierr.KindTLS, "unknown authority", "mqtk test CA", "--cafile")
		})
		t.Run("client-cert-required", func(t *testing.T) {
			for _, v := range []Version{V5, V311} {
				cfg := Default()
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Ports[1]
				cfg.TLS.CAFile = pki.CAFile
				wantErr(t, connectErr(t, cfg), clierr.KindTLS, "requires a client certificate", "--cert")
			}
		})
		t.Run("client-cert-untrusted", func(t *testing.T) {
			foreign := testpki.New(t)
			fcert, fkey := foreign.Issue(t, "stranger", true, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "stranger")
			for _, v := range versions {
				cfg := Default()
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Ports[1]
				cfg.TLS = TLS{CAFile: pki.CAFile, CertFile: fcert, KeyFile: fkey}
				err := connectErr(t, cfg)
				wantErr(t, err, clierr.KindTLS, "did not accept the client certificate", "signed by a CA the broker trusts")
				if strings.Contains(err.Error(), "network Error") {
					t.Errorf("library wrapper leaked into %q", err)
				}
			}
		})
		t.Run("tls-to-plain-port", func(t *testing.T) {
			plain := brokertest.Start(t, b.Name, mosquittotest.Options{})
			cfg := Default()
			cfg.Host, cfg.Port = "127.0.0.1", plain.Port()
			cfg.TLS.CAFile = pki.CAFile
			wantErr(t, connectErr(t, cfg), clierr.KindTLS, "did not answer TLS", fmt.Sprintf("port %d", plain.Port()), "drop --cafile")
		})
		t.Run("websocket-mixups", func(t *testing.T) {
			// mosquitto 2.0 wants a plain listener beside a lone ws one.
			plain := brokertest.Start(t, b.Name, mosquittotest.Options{Listeners: []mosquittotest.Listener{{}, {WebSockets: true}}})
			t.Run("ws-to-wss-port", func(t *testing.T) {
				// mosquitto closes at the plain HTTP upgrade; mqtk's
				// broker (Go's crypto/tls) answers it with "HTTP/1.0 400
				// Bad Request ... Client sent an HTTP request to an HTTPS
				// server". Either way the port expects TLS, and the
				// diagnosis must say to use wss://.
				cfg := Default()
				cfg.URL = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", b.Ports[2])
				wantErr(t, connectErr(t, cfg), clierr.KindNetwork, "during the WebSocket upgrade", "use wss://")
			})
			cfg := Default()
			cfg.URL = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", plain.Ports[1])
			cfg.TLS.CAFile = pki.CAFile
			wantErr(t, connectErr(t, cfg), clierr.KindTLS, fmt.Sprintf("is port %d a plain WebSocket (ws://) port?", plain.Ports[1]))
			cfg = Default()
			cfg.URL = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", b.Ports[2])
			wantErr(t, connectErr(t, cfg), clierr.KindTLS, "unknown authority")
			// wss:// to an MQTT-over-TLS port: the handshake works, the
			// upgrade does not.
			cfg = Default()
			cfg.URL = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", b.Ports[0])
			cfg.TLS.CAFile = pki.CAFile
			wantErr(t, connectErr(t, cfg), clierr.KindNetwork, "speaks TLS but is not a WebSocket listener", fmt.Sprintf("mqtts://127.0.0.1:%d", b.Ports[0]))
			// MQTT to a WebSocket listener, plain and over TLS: mosquitto's
			// answers HTTP at once. mqtk's is Go's net/http server, which
			// waits for the end of an HTTP request line that MQTT's
			// binary CONNECT never sends, so nothing comes back before
			// the client's connect timeout (shortened here): the client
			// must then say it timed out waiting for CONNACK, after the
			// TCP connection and, on the wss port, the TLS handshake.
			answered := func(scheme string, port int) []string {
				if !b.IsMosquitto() {
					return []string{"timed out after 2s waiting for CONNACK", fmt.Sprintf("127.0.0.1:%d", port)}
				}
				return []string{"answered with HTTP", fmt.Sprintf("%s://127.0.0.1:%d/mqtt", scheme, port)}
			}
			for _, v := range versions {
				cfg = Default()
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", plain.Ports[1]
				if !b.IsMosquitto() {
					cfg.ConnectTimeout = 2 * time.Second
				}
				wantErr(t, connectErr(t, cfg), clierr.KindNetwork, answered("ws", plain.Ports[1])...)
				cfg.TLS.CAFile, cfg.Port = pki.CAFile, b.Ports[2]
				wantErr(t, connectErr(t, cfg), clierr.KindNetwork, answered("wss", b.Ports[2])...)
			}
		})
		t.Run("plain-to-tls-port", func(t *testing.T) {
			for _, v := range versions {
				cfg := Default()
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Ports[0]
				wantErr(t, connectErr(t, cfg), clierr.KindTLS, "expects TLS", "--cafile", "mqtts://")
			}
		})
	})
}

func TestTLSCertificateProblems(t *testing.T) {
	pki := testpki.New(t)
	wrongCert, wrongKey := pki.Server(t, "wrong", "broker.example", "10.9.8.7")
	oldCert, oldKey := pki.Issue(t, "old", false, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "localhost", "127.0.0.1")
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: wrongCert, KeyFile: wrongKey}},
		{TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: oldCert, KeyFile: oldKey}},
	}}, func(t *testing.T, b *brokertest.Broker) {
		t.Run("hostname-mismatch", func(t *testing.T) {
			cfg := Default()
			cfg.Host, cfg.Port = "127.0.0.1", b.Ports[0]
			cfg.TLS.CAFile = pki.CAFile
			wantErr(t, connectErr(t, cfg), clierr.KindTLS, `"broker.example"`, `"10.9.8.7"`, `not "127.0.0.1"`,
				"-h broker.example", "mqtk tlsgen server 127.0.0.1")
		})
		t.Run("expired", func(t *testing.T) {
			cfg := Default()
			cfg.Host, cfg.Port = "127.0.0.1", b.Ports[1]
			cfg.TLS.CAFile = pki.CAFile
			wantErr(t, connectErr(t, cfg), clierr.KindTLS, "expired", "valid from", "mqtk tlsgen server localhost 127.0.0.1 --force")
		})
	})
}

func TestNetworkErrors(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		port := mosquittotest.FreePort(t)
		for _, v := range versions {
			cfg := Default()
			cfg.Version = v
			cfg.Host, cfg.Port = "127.0.0.1", port
			wantErr(t, connectErr(t, cfg), clierr.KindNetwork, "connection refused", fmt.Sprintf("127.0.0.1:%d", port), "mqtk broker",
				fmt.Sprintf("connect to mqtt://127.0.0.1:%d", port))
		}
	})
	t.Run("dns", func(t *testing.T) {
		cfg := Default()
		cfg.Host = "no-such-host.invalid"
		wantErr(t, connectErr(t, cfg), clierr.KindNetwork, "cannot resolve host", "no-such-host.invalid")
	})
	t.Run("no-socket", func(t *testing.T) {
		cfg := Default()
		cfg.URL = "unix://" + filepath.Join(t.TempDir(), "nothing")
		wantErr(t, connectErr(t, cfg), clierr.KindNetwork, "no socket at")
	})
	t.Run("timeout", func(t *testing.T) {
		// A listener that accepts and never answers: CONNACK never comes.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 4)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}
		}()
		for _, v := range versions {
			cfg := Default()
			cfg.Version = v
			cfg.Host, cfg.Port = "127.0.0.1", l.Addr().(*net.TCPAddr).Port
			cfg.ConnectTimeout = 300 * time.Millisecond
			wantErr(t, connectErr(t, cfg), clierr.KindNetwork, "timed out", "CONNACK")
		}
		l.Close()
		for c := range accepted {
			c.Close()
		}
	})
}

func TestDebugTrace(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		for _, v := range versions {
			t.Run(v.String(), func(t *testing.T) {
				var buf ui.SyncBuffer
				cfg := Default()
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Port()
				cfg.Debug = &buf
				c := dial(t, cfg)
				ctx := context.Background()
				if _, err := c.Subscribe(ctx, []Subscription{{Filter: "dbg/#", QoS: 1}}); err != nil {
					t.Fatal(err)
				}
				if err := c.Publish(ctx, &Message{Topic: "dbg/x", Payload: []byte("hello"), QoS: 1}); err != nil {
					t.Fatal(err)
				}
				if err := c.Disconnect(ctx); err != nil {
					t.Fatal(err)
				}
				out := buf.String()
				for _, want := range []string{"mqtk: → CONNECT", "mqtk: ← CONNACK", "mqtk: → SUBSCRIBE", "filter=dbg/#(qos=1",
					"mqtk: ← SUBACK", "mqtk: → PUBLISH topic=dbg/x qos=1 id=", "len=5", "mqtk: ← PUBACK", "mqtk: → DISCONNECT"} {
					if !strings.Contains(out, want) {
						t.Errorf("trace lacks %q:\n%s", want, out)
					}
				}
				// Request Problem Information 0 would make mochi-based brokers
				// (mqtk broker among them) withhold user properties.
				if strings.Contains(out, "request-problem-information=0") {
					t.Errorf("CONNECT asks for no problem information:\n%s", out)
				}
			})
		}
	})
}

// TestDialCancelled: Ctrl-C while waiting for CONNACK ends Dial with the
// context's error instead of waiting for --connect-timeout.
func TestDialCancelled(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 8)
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for _, v := range versions {
		cfg := Default()
		cfg.Version = v
		cfg.Host, cfg.Port = "127.0.0.1", l.Addr().(*net.TCPAddr).Port
		cfg.ConnectTimeout = time.Hour
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() {
			c, err := Dial(ctx, cfg)
			if err == nil {
				c.Disconnect(context.Background())
			}
			res <- err
		}()
		// Cancel once the broker side has the connection, so Dial is
		// surely waiting for CONNACK.
		conn := <-accepted
		cancel()
		select {
		case err := <-res:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("v%s: err = %v, want context.Canceled in the chain", v, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("v%s: Dial still waiting 30s after cancel", v)
		}
		conn.Close()
	}
	l.Close()
	for c := range accepted {
		c.Close()
	}
}

// TestKeepAlive: an idle client pings in time to stay connected past one
// and a half keepalives (when a broker drops a silent client [MQTT-3.1.2-24]), and does
// not ping straight after CONNACK: the CONNECT exchange counts as traffic.
// paho.golang's pinger used to send a PINGREQ the moment it started.
func TestKeepAlive(t *testing.T) { bothClients(t, testKeepAlive) }

func testKeepAlive(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		// Mostly idle waiting: both brokers' halves wait side by side.
		t.Parallel()
		for _, v := range versions {
			t.Run(v.String(), func(t *testing.T) {
				t.Parallel()
				var buf ui.SyncBuffer
				cfg := defaultFor(native)
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Port()
				cfg.KeepAlive = 2 * time.Second
				cfg.Debug = &buf
				c := dial(t, cfg)
				time.Sleep(300 * time.Millisecond)
				if out := buf.String(); strings.Contains(out, "PINGREQ") {
					t.Errorf("PINGREQ within 300 ms of connecting with a 2 s keepalive:\n%s", out)
				}
				// Idle for well over 1.5 keepalives (3 s).
				time.Sleep(5200 * time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := c.Publish(ctx, &Message{Topic: "ka/x", Payload: []byte("still here"), QoS: 1}); err != nil {
					t.Fatalf("publish after 5.5 s idle with a 2 s keepalive: %v\n%s", err, buf.String())
				}
				if err := c.Disconnect(ctx); err != nil {
					t.Fatal(err)
				}
				out := buf.String()
				if !strings.Contains(out, "PINGREQ") || !strings.Contains(out, "PINGRESP") {
					t.Errorf("no PINGREQ/PINGRESP exchange in 5.5 s idle with a 2 s keepalive:\n%s", out)
				}
			})
		}
	})
}

// A broker that knows nothing newer than MQTT 3.1.1 answers MQTT 5 with a
// 3.1.1 CONNACK (return code 1). -V 5 reports that with the fix as a hint
// (exit 5) instead of "the connection was closed: EOF"; -V auto connects
// again with 3.1.1 and works, unless -x asks for what only 5 has.
func TestBrokerWithoutMQTT5(t *testing.T) { bothClients(t, testBrokerWithoutMQTT5) }

func testBrokerWithoutMQTT5(t *testing.T, native bool) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		// Only311 stands in front of either broker as one that speaks
		// nothing newer than 3.1.1 (and passes 3.1.1 through to b).
		port := mosquittotest.Only311(t, b.Addr(0))
		cfg := defaultFor(native)
		cfg.Host, cfg.Port = "127.0.0.1", port
		err := connectErr(t, cfg)
		wantErr(t, err, clierr.KindRefused, "does not speak MQTT 5", "3.1.1 CONNACK, return code 1", "-V 311", "-V auto")
		var e *clierr.Error
		if !errors.As(err, &e) || e.Reason != 0x84 {
			t.Errorf("reason of %v = %v, want 0x84 (unsupported protocol version)", err, e)
		}

		auto := cfg
		auto.Version = VAuto
		var trace ui.SyncBuffer
		auto.Debug = &trace
		if c := dial(t, auto); c.Info().Version != V311 {
			t.Errorf("-V auto connected with MQTT %s, want 3.1.1", c.Info().Version)
		}
		if out := trace.String(); !strings.Contains(out, "level=5") || !strings.Contains(out, "connecting again with MQTT 3.1.1") || !strings.Contains(out, "level=4") {
			t.Errorf("trace of -V auto does not show MQTT 5, the fallback, then 3.1.1:\n%s", out)
		}
		auto.Debug = nil
		roundTrip(t, auto)

		expiry := time.Hour
		auto.SessionExpiry = &expiry
		wantErr(t, connectErr(t, auto), clierr.KindRefused, "does not speak MQTT 5", "-x/--session-expiry needs MQTT 5")

		// Against a broker with MQTT 5, -V auto keeps it.
		auto.SessionExpiry = nil
		auto.Port = b.Port()
		if c := dial(t, auto); c.Info().Version != V5 {
			t.Errorf("-V auto against %s connected with MQTT %s, want 5", b.Name, c.Info().Version)
		}
	})
}
