package mqttconn

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/testpki"
)

// wsProxy is a WebSocket endpoint at /custom that insists on the "mqtt"
// subprotocol and an Authorization header, then relays bytes to a real
// mosquitto TCP listener: it proves what the client sends in the upgrade.
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
	b := mosquittotest.Start(t, mosquittotest.Options{})
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
		wantErr(t, connectErr(t, cfg), KindNetwork, "websocket upgrade refused with HTTP 404", "--ws-path")
	})
	t.Run("no-header", func(t *testing.T) {
		cfg := Default()
		cfg.URL = fmt.Sprintf("ws://127.0.0.1:%d/custom", port)
		wantErr(t, connectErr(t, cfg), KindNetwork, "HTTP 401")
	})
}

func TestTLSOptions(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Server(t, "named", "broker.example")
	b := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{
		{TLS: &mosquittotest.TLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}},
	}})
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
	// are accepted by mosquitto.
	for _, v := range []Version{V5, V311} {
		t.Run(v.String(), func(t *testing.T) {
			cfg := Default()
			cfg.Version = v
			cfg.Host, cfg.Port = "127.0.0.1", b.Port()
			cfg.TLS = TLS{CAPath: capath, ServerName: "broker.example", MinVersion: "1.3", ALPN: []string{"mqtt"}}
			roundTrip(t, cfg)
		})
	}
	t.Run("bad-cafile", func(t *testing.T) {
		notPEM := filepath.Join(t.TempDir(), "x.pem")
		if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := Default()
		cfg.Host, cfg.Port = "127.0.0.1", b.Port()
		cfg.TLS.CAFile = notPEM
		wantErr(t, connectErr(t, cfg), KindUsage, "holds no PEM certificate")
	})
}
