package mqttconn

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// srvServer answers DNS SRV questions on 127.0.0.1 from records (name →
// port, target localhost), and NXDOMAIN for anything else. It stands in
// for a DNS server: tests never ask real DNS.
func srvServer(t *testing.T, records map[string]uint16) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			port, ok := records[strings.ToLower(q.Name.String())]
			if ok && q.Type == dnsmessage.TypeSRV {
				_ = b.SRVResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
					dnsmessage.SRVResource{Priority: 10, Weight: 1, Port: port, Target: dnsmessage.MustNewName("localhost.")})
			} else if !ok {
				b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError})
				_ = b.StartQuestions()
				_ = b.Question(q)
			}
			msg, err := b.Finish()
			if err != nil {
				continue
			}
			_, _ = pc.WriteTo(msg, from)
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// -S finds the broker through _mqtt._tcp.HOST and connects to the port
// the record names, not to -p; a name without a record fails as a
// network error naming the record it looked for.
func TestSRVLookup(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		res := srvServer(t, map[string]uint16{"_mqtt._tcp.brokers.test.": uint16(b.Port())})
		for _, native := range []bool{false, true} {
			cfg := defaultFor(native)
			cfg.Host, cfg.Port, cfg.SRV, cfg.Resolver = "brokers.test", 1, true, res
			roundTrip(t, cfg)
		}

		cfg := Default()
		cfg.Host, cfg.SRV, cfg.Resolver = "nothing.test", true, res
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := Dial(ctx, cfg)
		if err == nil || clierr.KindOf(err) != clierr.KindNetwork || !strings.Contains(err.Error(), "_mqtt._tcp.nothing.test") {
			t.Fatalf("-S for a name without a record: %v (kind %v), want a network error naming _mqtt._tcp.nothing.test", err, clierr.KindOf(err))
		}
	})
}

// -S with a transport its records cannot name is a usage error.
func TestSRVNeedsTCP(t *testing.T) {
	cfg := Default()
	cfg.URL, cfg.SRV = "ws://brokers.test/mqtt", true
	err := cfg.Resolve()
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), "-S") || len(clierr.HintsOf(err)) == 0 {
		t.Fatalf("-S with ws://: %v, want a usage error about -S with a hint", err)
	}
}
