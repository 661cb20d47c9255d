package broker

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// FuzzConnection feeds arbitrary bytes to a listener connection. The broker
// must neither crash nor hang: each input's connection ends (the broker
// closes it or answers until our half-close), and afterwards a normal
// client still connects.
func FuzzConnection(f *testing.F) {
	enc := func(pk packets.Packet, v byte) []byte {
		var buf bytes.Buffer
		pk.ProtocolVersion = v
		switch pk.FixedHeader.Type {
		case packets.Connect:
			_ = pk.ConnectEncode(&buf)
		case packets.Publish:
			_ = pk.PublishEncode(&buf)
		case packets.Subscribe:
			_ = pk.SubscribeEncode(&buf)
		}
		return buf.Bytes()
	}
	for _, v := range []byte{3, 4, 5} {
		c := connectPacket("fz", true, 30)
		if v == 3 {
			c.Connect.ProtocolName = []byte("MQIsdp")
		}
		conn := enc(c, v)
		pub := enc(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1, TopicName: "a/b", Payload: []byte("x")}, v)
		sub := enc(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 2, Filters: packets.Subscriptions{{Filter: "a/#", Qos: 2}}}, v)
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
	okConnect := enc(connectPacket("health", true, 30), 4)

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
