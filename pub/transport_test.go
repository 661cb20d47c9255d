package pub

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// testCerts writes a CA and a server certificate for 127.0.0.1 into dir.
// (pub may not import the tlsgen package: siblings stay independent.)
func testCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pub test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}

func TestTLSAndWebSocket(t *testing.T) {
	ca, cert, key := testCerts(t, t.TempDir())
	tls := &mosquittotest.TLS{CAFile: ca, CertFile: cert, KeyFile: key}
	b := broker(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{}, {TLS: tls}, {WebSockets: true}, {WebSockets: true, TLS: tls},
	}})
	p := newProbe(t, tcpArgs(b), "tr/#")
	configs := map[string]func(v mqttconn.Version) mqttconn.Config{
		"mqtts": func(v mqttconn.Version) mqttconn.Config {
			c := mqttconn.Default()
			c.Host, c.Port, c.Version = "127.0.0.1", b.Ports[1], v
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
			o := Options{Config: cfg, Source: SourceMessage, Topic: topic, Message: "000102feff", Encoding: EncHex, QoS: 1}
			if err, stderr := run(t, &o, nil); err != nil {
				t.Fatalf("%s %s: %v\n%s", name, v, err, stderr)
			}
			want = append(want, fmt.Sprintf("%s %x", topic, payload))
		}
	}
	got := p.lines(len(want), "%t %x")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %q\nwant %q", got, want)
	}
}
