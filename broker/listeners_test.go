package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/internal/wsconn"
)

func TestParseListen(t *testing.T) {
	for in, want := range map[string]listenerSpec{
		"tcp://127.0.0.1:0":     {scheme: "tcp", addr: "127.0.0.1:0"},
		"mqtt://localhost":      {scheme: "tcp", addr: "localhost:1883"},
		"mqtts://:8883":         {scheme: "tls", addr: ":8883"},
		"ws://127.0.0.1:8080":   {scheme: "ws", addr: "127.0.0.1:8080", path: "/mqtt"},
		"wss://[::1]:9/x/y":     {scheme: "wss", addr: "[::1]:9", path: "/x/y"},
		"unix:///run/mqtk.sock": {scheme: "unix", addr: "/run/mqtk.sock"},
		"unix://rel/mqtk.sock":  {scheme: "unix", addr: "rel/mqtk.sock"},
	} {
		got, err := parseListen(in)
		if err != nil || got != want {
			t.Errorf("parseListen(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"127.0.0.1:1883", "ftp://x:1", "unix://", "tcp://x:1/path"} {
		if _, err := parseListen(bad); err == nil {
			t.Errorf("parseListen(%q) accepted", bad)
		}
	}
}

func TestUnixSocketListener(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "b.sock")
	// A stale socket file from a killed broker does not stop a new one.
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(sock)
	b := startBroker(t, Options{Listeners: []string{"unix://" + sock}})
	if ls := b.Listeners(); len(ls) != 1 || ls[0].URL() != "unix://"+sock {
		t.Fatalf("listeners %+v", ls)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rc := newRawClient(t, c, packet.V5)
	rc.connect(connectPacket("unix", true, 30))
}

// wss: TLS, then WebSocket, then MQTT; the client certificate's CN reaches
// the auth hook through the HTTP request.
func TestSecureWebSocketListener(t *testing.T) {
	pki := newTestPKI(t)
	acl := writeFile(t, "acl", "user alice\ntopic readwrite wss/#\n")
	b := startBroker(t, Options{
		Listeners: []string{"wss://127.0.0.1:0/mqtt"},
		TLSCert:   pki.serverCert, TLSKey: pki.serverKey, TLSCA: pki.ca,
		RequireClientCert: true, CertAsUsername: true, ACLFile: acl,
	})
	l := b.Listeners()[0]
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(pki.ca)
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(pki.clientCert, pki.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		Subprotocols:     []string{"mqtt"},
		HandshakeTimeout: 10 * time.Second,
	}
	ws, _, err := d.Dial(l.URL(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", l.URL(), err)
	}
	defer ws.Close()
	c := wsconn.New(ws)
	rc := newRawClient(t, c, packet.V5)
	rc.connect(connectPacket("wss-client", true, 30))
	if codes := rc.subscribe(1, "wss/#", "other/#"); len(codes) != 2 || codes[0] != 1 || codes[1] != 0x87 {
		t.Fatalf("SUBACK % x: the certificate CN should be the ACL user", codes)
	}
}

func TestReloadPasswordFileKeepsClients(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	if err := SetPassword(file, "alice", []byte("old")); err != nil {
		t.Fatal(err)
	}
	log := &ui.SyncBuffer{}
	b := startBroker(t, Options{Log: log, PasswordFile: file, Limits: Limits{AuthFailDelay: time.Millisecond}})
	login := func(pw string) *rawClient {
		rc := dialRaw(t, b.tcpAddr(t), 5)
		pk := connectPacket("c-"+pw, true, 30)
		pk.HasUsername, pk.Username = true, "alice"
		pk.HasPassword, pk.Password = true, []byte(pw)
		rc.send(pk)
		if ack := rc.recv(); typeOf(ack) != packet.TypeConnack || reasonOf(ack) != packet.Success {
			return nil
		}
		return rc
	}
	kept := login("old")
	if kept == nil {
		t.Fatal("old password refused before reload")
	}
	if err := SetPassword(file, "alice", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if login("old") != nil || login("new") == nil {
		t.Fatal("reload did not switch passwords")
	}
	// The failed login is logged with the client's address.
	if l := log.String(); !strings.Contains(l, "login failed remote=127.0.0.1:") || !strings.Contains(l, "reason=wrong password") {
		t.Fatalf("log lacks the failed login:\n%s", l)
	}
	// The client connected before the reload is still served.
	kept.send(&packet.Pingreq{})
	if pk := kept.recv(); typeOf(pk) != packet.TypePingresp {
		t.Fatalf("got %s, want PINGRESP", kept.describe(pk))
	}
	// A broken file leaves the previous settings in force.
	if err := os.WriteFile(file, []byte("alice:plain\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("Reload err = %v", err)
	}
	if login("new") == nil {
		t.Fatal("a failed reload changed the passwords")
	}
}

func TestMaxKeepalive(t *testing.T) {
	b := startBroker(t, Options{Limits: Limits{MaxKeepalive: 60}})
	v5 := dialRaw(t, b.tcpAddr(t), 5)
	ack := v5.connect(connectPacket("ka5", true, 600))
	if !ack.Properties.Has(packet.PropServerKeepAlive) || ack.Properties.ServerKeepAlive != 60 {
		t.Fatalf("v5 CONNACK Server Keep Alive = %v/%d, want 60", ack.Properties.Has(packet.PropServerKeepAlive), ack.Properties.ServerKeepAlive)
	}
	ok := dialRaw(t, b.tcpAddr(t), 4)
	ok.connect(connectPacket("ka4-ok", true, 30))
	v4 := dialRaw(t, b.tcpAddr(t), 4)
	v4.send(connectPacket("ka4", true, 600))
	if ack := v4.recv(); typeOf(ack) != packet.TypeConnack || reasonOf(ack) != packet.ConnRefusedIdentifierRejected {
		t.Fatalf("3.1.1 keepalive above the maximum: got %s, want CONNACK 0x02", v4.describe(ack))
	}
}

func TestTopicAndClientIDLimits(t *testing.T) {
	b := startBroker(t, Options{Limits: Limits{MaxTopicLevels: 3, MaxTopicLength: 20, MaxClientIDLength: 8}})
	c := dialRaw(t, b.tcpAddr(t), 5)
	c.connect(connectPacket("short", true, 30))
	codes := c.subscribe(1, "a/b/c", "a/b/c/d", strings.Repeat("x", 21))
	if codes[0] != 1 || codes[1] != 0x87 || codes[2] != 0x87 {
		t.Fatalf("SUBACK % x", codes)
	}
	long := dialRaw(t, b.tcpAddr(t), 5)
	long.send(connectPacket("much-too-long", true, 30))
	if ack := long.recv(); typeOf(ack) != packet.TypeConnack || reasonOf(ack) != packet.ClientIdentifierNotValid {
		t.Fatalf("long client id: got %s, want CONNACK 0x85", long.describe(ack))
	}
}

func TestCloseSendsServerShuttingDown(t *testing.T) {
	b, err := New(Options{Listeners: []string{"tcp://127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, b.Listeners()[0].Addr, 5)
	c.connect(connectPacket("bye", true, 30))
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	pk := c.recv()
	if typeOf(pk) != packet.TypeDisconnect || reasonOf(pk) != packet.ServerShuttingDown {
		t.Fatalf("got %s, want DISCONNECT 0x8b", c.describe(pk))
	}
}
