package mqttconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/testpki"
)

// wsProxy is a WebSocket endpoint at /custom that insists on the "mqtt"
// subprotocol and an Authorization header, then relays bytes to a real
// broker's TCP listener: it proves what the client sends in the upgrade.
func wsProxy(t *testing.T, brokerAddr string) *httptest.Server {
	t.Helper()
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/custom" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if ws.Subprotocol() != "mqtt" {
			return
		}
		tcp, err := net.Dial("tcp", brokerAddr)
		if err != nil {
			return
		}
		defer tcp.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				n, err := tcp.Read(buf)
				if n > 0 && ws.WriteMessage(websocket.BinaryMessage, buf[:n]) != nil {
					return
				}
				if err != nil {
					ws.Close()
					return
				}
			}
		}()
		for {
			_, r, err := ws.NextReader()
			if err != nil {
				tcp.Close()
				return
			}
			if _, err := io.Copy(tcp, r); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return srv
}

func TestWebSocketPathAndHeaders(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		srv := wsProxy(t, b.Addr(0))
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		for _, v := range versions {
			t.Run(v.String(), func(t *testing.T) {
				cfg := Default()
				cfg.Version = v
				cfg.URL = fmt.Sprintf("ws://127.0.0.1:%d/custom", port)
				cfg.WSHeaders = map[string][]string{"Authorization": {"Bearer t0ken"}}
				roundTrip(t, cfg)
			})
		}
		t.Run("wrong-path", func(t *testing.T) {
			cfg := Default()
			cfg.URL = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", port)
			cfg.WSHeaders = map[string][]string{"Authorization": {"Bearer t0ken"}}
			wantErr(t, connectErr(t, cfg), clierr.KindNetwork, "websocket upgrade refused with HTTP 404", "--ws-path")
		})
		t.Run("no-header", func(t *testing.T) {
			cfg := Default()
			cfg.URL = fmt.Sprintf("ws://127.0.0.1:%d/custom", port)
			wantErr(t, connectErr(t, cfg), clierr.KindNetwork, "HTTP 401")
		})
	})
}

func TestTLSOptions(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "named", "broker.example")
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}},
	}}, func(t *testing.T, b *brokertest.Broker) {
		capath := t.TempDir()
		pem, err := os.ReadFile(pki.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(capath, "ca.crt"), pem, 0o600); err != nil {
			t.Fatal(err)
		}
		// --sni names the certificate's host while dialling an address;
		// --capath finds the CA in a directory; --tls-version 1.3 and --alpn
		// are accepted by the broker.
		for _, v := range []Version{V5, V311} {
			t.Run(v.String(), func(t *testing.T) {
				cfg := Default()
				cfg.Version = v
				cfg.Host, cfg.Port = "127.0.0.1", b.Port()
				cfg.TLS = TLS{CAPath: capath, ServerName: "broker.example", MinVersion: "1.3", ALPN: []string{"mqtt"}}
				roundTrip(t, cfg)
			})
		}
		// Against a TLS 1.2-only server that records what was negotiated:
		// --tls-version 1.3 must refuse it, and --alpn must be offered.
		t.Run("tls-version-and-alpn", func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				t.Fatal(err)
			}
			l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{pair}, MaxVersion: tls.VersionTLS12, NextProtos: []string{"other", "mqtt"},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			negotiated := make(chan string, 4)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					tc := c.(*tls.Conn)
					_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
					if tc.Handshake() == nil {
						negotiated <- tc.ConnectionState().NegotiatedProtocol
					}
					c.Close() // no MQTT here: the handshake is what is tested
				}
			}()
			port := l.Addr().(*net.TCPAddr).Port
			cfg := Default()
			cfg.Host, cfg.Port = "127.0.0.1", port
			cfg.TLS = TLS{CAFile: pki.CAFile, ServerName: "broker.example", MinVersion: "1.3"}
			wantErr(t, connectErr(t, cfg), clierr.KindTLS, "protocol version", "--tls-version 1.2")
			select {
			case p := <-negotiated:
				t.Fatalf("a TLS 1.3 minimum completed a handshake with a TLS 1.2 server (ALPN %q)", p)
			default:
			}
			cfg.TLS.MinVersion, cfg.TLS.ALPN = "1.2", []string{"mqtt"}
			_ = connectErr(t, cfg) // the server closes after the handshake
			select {
			case p := <-negotiated:
				if p != "mqtt" {
					t.Fatalf("negotiated ALPN %q, want mqtt", p)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no handshake completed with --tls-version 1.2")
			}
		})
		t.Run("bad-cafile", func(t *testing.T) {
			notPEM := filepath.Join(t.TempDir(), "x.pem")
			if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := Default()
			cfg.Host, cfg.Port = "127.0.0.1", b.Port()
			cfg.TLS.CAFile = notPEM
			wantErr(t, connectErr(t, cfg), clierr.KindUsage, "holds no PEM certificate")
		})
		// The broker's own certificate given as --cafile: Go alone would
		// accept it; mosquitto_pub refuses the same file, and so does mqtk.
		t.Run("server-cert-as-cafile", func(t *testing.T) {
			cfg := Default()
			cfg.Host, cfg.Port = "127.0.0.1", b.Port()
			cfg.TLS.CAFile, cfg.TLS.ServerName = cert, "broker.example"
			wantErr(t, connectErr(t, cfg), clierr.KindUsage, "holds no CA certificate", `"CN=named"`, "give the CA that signed it")
			if pub, err := exec.LookPath("mosquitto_pub"); err == nil {
				out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "--cafile", cert, "--insecure", "-t", "x", "-m", "y").CombinedOutput()
				if err == nil {
					t.Errorf("mosquitto_pub accepted the server certificate as its CA file, so refusing it is not needed:\n%s", out)
				}
			}
		})
	})
}

// A self-signed server certificate (no CA) pinned with --cafile is a
// deliberate choice OpenSSL accepts too: it must keep working.
func TestSelfSignedLeafAsCAFile(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "pinned"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "pinned.pem"), filepath.Join(dir, "pinned-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	brokertest.Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{TLS: &mosquittotest.TLS{CAFile: certFile, CertFile: certFile, KeyFile: keyFile}},
	}}, func(t *testing.T, b *brokertest.Broker) {
		cfg := Default()
		cfg.Host, cfg.Port = "127.0.0.1", b.Port()
		cfg.TLS.CAFile = certFile
		roundTrip(t, cfg)
	})
}
