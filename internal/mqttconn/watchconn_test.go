package mqttconn

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/mqtk/mqtk/internal/packet"
)

func TestWholePackets(t *testing.T) {
	pingreq := []byte{0xC0, 0x00}
	// PUBLISH qos 0, topic "a", payload "xy" (3.1.1): remaining length 5.
	publish := []byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y'}
	both := append(append([]byte{}, publish...), pingreq...)
	for _, tc := range []struct {
		in   []byte
		want int
	}{
		{nil, 0},
		{pingreq, 2},
		{publish[:1], 0},
		{publish[:4], 0},
		{publish, 7},
		{both, 9},
		{both[:8], 7},
		{[]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, 6}, // malformed length passes through
	} {
		if got := wholePackets(tc.in); got != tc.want {
			t.Errorf("wholePackets(% x) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestWatchConnCoalesces: pieces of one packet reach the transport as one
// write, and the trace shows the packet once.
func TestWatchConnCoalesces(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var trace bytes.Buffer
	w := newWatchConn(a, V311, &trace)
	got := make(chan [][]byte, 1)
	go func() {
		var reads [][]byte
		for i := 0; i < 2; i++ {
			buf := make([]byte, 64)
			n, err := b.Read(buf)
			if err != nil {
				break
			}
			reads = append(reads, buf[:n])
		}
		got <- reads
	}()
	publish := []byte{0x32, 0x07, 0x00, 0x01, 'a', 0x00, 0x09, 'x', 'y'}
	for _, piece := range [][]byte{publish[:2], publish[2:5], publish[5:]} {
		if n, err := w.Write(piece); err != nil || n != len(piece) {
			t.Fatalf("write = %d, %v", n, err)
		}
	}
	if _, err := w.Write([]byte{0xC0, 0x00}); err != nil {
		t.Fatal(err)
	}
	reads := <-got
	if len(reads) != 2 || !bytes.Equal(reads[0], publish) || !bytes.Equal(reads[1], []byte{0xC0, 0x00}) {
		t.Fatalf("transport saw writes % x, want the PUBLISH whole then PINGREQ", reads)
	}
	lines := strings.Split(strings.TrimSpace(trace.String()), "\n")
	if len(lines) != 2 || lines[0] != `mqtk: → PUBLISH topic=a qos=1 id=9 len=2 payload="xy"` || lines[1] != "mqtk: → PINGREQ" {
		t.Errorf("trace = %q", lines)
	}
}

func TestDescribeV5Properties(t *testing.T) {
	// CONNECT, MQTT 5, clean=false, keepalive 60, session expiry 0xFFFFFFFF,
	// client id "c".
	connect := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x00, 0x00, 0x3C,
		0x05, 0x11, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 'c'}
	got := packet.DescribeRaw(0x10, connect, packet.V5)
	want := `CONNECT protocol=MQTT level=5 id="c" clean=false keepalive=60 session-expiry-interval=4294967295`
	if got != want {
		t.Errorf("describe CONNECT = %q, want %q", got, want)
	}
	// CONNACK success with receive maximum 20 and an assigned id "x".
	connack := []byte{0x00, 0x00, 0x07, 0x21, 0x00, 0x14, 0x12, 0x00, 0x01, 'x'}
	got = packet.DescribeRaw(0x20, connack, packet.V5)
	want = `CONNACK session-present=false reason=0x00 (success) assigned-client-identifier="x" receive-maximum=20`
	if got != want {
		t.Errorf("describe CONNACK = %q, want %q", got, want)
	}
	// A truncated body says so instead of panicking.
	if got := packet.DescribeRaw(0x10, connect[:9], packet.V5); !strings.Contains(got, "CONNECT (invalid: packet ends inside") {
		t.Errorf("describe truncated = %q", got)
	}
}

// FuzzDescribe: the trace reads whatever the broker sends, so no input may
// make it panic.
func FuzzDescribe(f *testing.F) {
	f.Add(byte(0x10), []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x00, 0x00, 0x3C, 0x05, 0x11, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 'c'}, true)
	f.Add(byte(0x32), []byte{0x00, 0x01, 'a', 0x00, 0x09, 0x03, 0x0B, 0xff, 0x7f, 'x'}, true)
	f.Add(byte(0x90), []byte{0x00, 0x01, 0x00, 0x80}, false)
	f.Fuzz(func(t *testing.T, h byte, body []byte, v5 bool) {
		v := V311
		if v5 {
			v = V5
		}
		_ = packet.DescribeRaw(h, body, packet.Version(v))
		_ = wholePackets(body)
	})
}

func TestClientID(t *testing.T) {
	cfg := Default()
	cfg.ClientID = "given"
	if got := clientID(&cfg); got != "given" {
		t.Errorf("clientID with -i = %q", got)
	}
	cfg.ClientID = ""
	a, b := clientID(&cfg), clientID(&cfg)
	if !strings.HasPrefix(a, "mqtk-") || a == b {
		t.Errorf("generated ids %q, %q: want mqtk- prefix and randomness", a, b)
	}
	cfg.IDPrefix = "sensor-"
	if got := clientID(&cfg); !strings.HasPrefix(got, "sensor-") || len(got) <= len("sensor-") {
		t.Errorf("clientID with -I = %q", got)
	}
	cfg.Version = V31
	cfg.IDPrefix = "a-very-long-prefix-for-mqtt-3.1-"
	if got := clientID(&cfg); len(got) > 23 || !strings.HasPrefix(got, "a-very") {
		t.Errorf("MQTT 3.1 id %q: want at most 23 bytes starting with the prefix", got)
	}
}
