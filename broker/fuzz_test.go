package broker

import (
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// FuzzConnection feeds arbitrary bytes to a listener connection. The broker
// must neither crash nor hang: each input's connection ends (the broker
// closes it or answers until our half-close), and afterwards a normal
// client still connects.
func FuzzConnection(f *testing.F) {
	enc := func(pk packet.Packet, v packet.Version) []byte {
		b, err := packet.Encode(pk, v)
		if err != nil {
			f.Fatalf("seed %s: %v", pk.Type(), err)
		}
		return b
	}
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		conn := enc(connectPacket("fz", true, 30), v) // "MQIsdp" for 3.1
		pub := enc(&packet.Publish{QoS: 1, PacketID: 1, Topic: "a/b", Payload: []byte("x")}, v)
		sub := enc(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "a/#", QoS: 2}}}, v)
		f.Add(conn)
		f.Add(append(append(append([]byte{}, conn...), sub...), pub...))
		f.Add(append(append([]byte{}, conn...), 0xc0, 0x00, 0xe0, 0x00))
	}
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))

	// A unix socket: the same accept path as TCP, without the tens of
	// thousands of TIME_WAIT ports a fast fuzzer would use up (it stalled
	// after ~25 s on TCP).
	sock := filepath.Join(f.TempDir(), "fuzz.sock")
	startBroker(f, Options{
		Log:       io.Discard, // thousands of refused connections
		Listeners: []string{"unix://" + sock},
		Limits:    Limits{ConnectTimeout: 2 * time.Second, MaxPacketSize: 64 << 10, AuthFailDelay: time.Millisecond},
	})
	okConnect := enc(connectPacket("health", true, 30), packet.V311)

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(data)
		_ = c.(*net.UnixConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil && isTimeout(err) {
			t.Fatalf("broker neither closed nor finished the connection within 10s for input %q", data)
		}

		h, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			t.Fatalf("broker stopped accepting after input %q: %v", data, err)
		}
		defer h.Close()
		_ = h.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := h.Write(okConnect); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		if _, err := io.ReadFull(h, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("broker no longer accepts a valid CONNECT after input %q: % x %v", data, ack, err)
		}
	})
}
