package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The mqtk binary the process tests build lives outside t.TempDir (it
	// is shared by the whole run): remove it at the end.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if mqtkBuild.dir != "" {
			os.RemoveAll(mqtkBuild.dir)
		}
		os.Exit(code)
	}))
}

// startBroker starts a broker on a free loopback port and stops it with the test.
func startBroker(t testing.TB, o Options) *Broker {
	t.Helper()
	return startAdjusted(t, o, nil)
}

// startAdjusted is startBroker with a chance to change the broker between
// New and Start, while nothing else runs yet.
func startAdjusted(t testing.TB, o Options, adjust func(*Broker)) *Broker {
	t.Helper()
	if len(o.Listeners) == 0 {
		o.Listeners = []string{"tcp://127.0.0.1:0"}
	}
	if o.Log == nil {
		o.Log = &syncBuf{}
	}
	b, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if adjust != nil {
		adjust(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func (b *Broker) tcpAddr(t testing.TB) string {
	t.Helper()
	for _, l := range b.Listeners() {
		if l.Scheme == "tcp" {
			return l.Addr
		}
	}
	t.Fatal("no tcp listener")
	return ""
}

// syncBuf is a goroutine-safe log sink for tests.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rawClient speaks MQTT byte by byte, using mochi's codec only to encode
// and decode single packets, so tests see exactly what the broker sends.
type rawClient struct {
	t       testing.TB
	c       net.Conn
	r       *bufio.Reader
	version byte
}

func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c), version: version}
}

func (rc *rawClient) send(pk packets.Packet) {
	rc.t.Helper()
	pk.ProtocolVersion = rc.version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		err = fmt.Errorf("test cannot encode %v", pk.FixedHeader.Type)
	}
	if err != nil {
		rc.t.Fatalf("encode: %v", err)
	}
	_ = rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.c.Write(buf.Bytes()); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// recv reads one packet, failing the test after 10 s.
func (rc *rawClient) recv() packets.Packet {
	rc.t.Helper()
	pk, err := rc.tryRecv(10 * time.Second)
	if err != nil {
		rc.t.Fatalf("read packet: %v", err)
	}
	return pk
}

func (rc *rawClient) tryRecv(d time.Duration) (packets.Packet, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(d))
	var pk packets.Packet
	b, err := rc.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(rc.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = rc.version
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Pingresp:
	default:
		err = fmt.Errorf("test cannot decode %v", pk.FixedHeader.Type)
	}
	return pk, err
}

func connectPacket(id string, clean bool, keepalive uint16) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			ClientIdentifier: id,
			Clean:            clean,
			Keepalive:        keepalive,
		},
	}
}

// connect sends CONNECT and expects a successful CONNACK.
func (rc *rawClient) connect(pk packets.Packet) packets.Packet {
	rc.t.Helper()
	pk.Connect.ProtocolName = []byte("MQTT")
	if rc.version == 3 {
		pk.Connect.ProtocolName = []byte("MQIsdp")
	}
	rc.send(pk)
	ack := rc.recv()
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		rc.t.Fatalf("CONNACK: got type %v reason 0x%02x", ack.FixedHeader.Type, ack.ReasonCode)
	}
	return ack
}

func (rc *rawClient) subscribe(id uint16, filters ...string) []byte {
	rc.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: 1})
	}
	rc.send(pk)
	for {
		ack := rc.recv()
		if ack.FixedHeader.Type == packets.Suback {
			return ack.ReasonCodes
		}
	}
}

func (rc *rawClient) publish(topic, payload string, qos byte, retain bool) {
	rc.t.Helper()
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		TopicName:   topic,
		Payload:     []byte(payload),
	}
	if qos > 0 {
		pk.PacketID = 7
	}
	rc.send(pk)
	if qos == 1 {
		for {
			ack := rc.recv()
			if ack.FixedHeader.Type == packets.Puback {
				return
			}
		}
	}
}

// nextPublish returns the next PUBLISH, acknowledging QoS 1.
func (rc *rawClient) nextPublish(d time.Duration) (packets.Packet, error) {
	for {
		pk, err := rc.tryRecv(d)
		if err != nil {
			return pk, err
		}
		if pk.FixedHeader.Type == packets.Publish {
			if pk.FixedHeader.Qos == 1 {
				rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
			}
			return pk, nil
		}
	}
}

// dialSmallWindow is dialRaw (MQTT 3.1.1) with a 4 KiB receive buffer, so
// that the broker's writes to a client that stops reading block soon.
func dialSmallWindow(t testing.TB, addr string) *rawClient {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c), version: 4}
}

// routed returns once every publish pub has made is routed. mochi
// acknowledges a QoS 1 publish before it routes it, so a PUBACK alone does
// not say the message reached (or was refused by) its subscribers; one
// reader goroutine routes a connection's publishes in order, so once a
// later publish from pub arrives at a watcher, the earlier ones are done.
func routed(t testing.TB, addr string, pub *rawClient) {
	t.Helper()
	topic := fmt.Sprintf("barrier/%p", pub)
	w := dialRaw(t, addr, pub.version)
	w.connect(connectPacket(fmt.Sprintf("barrier-%p", pub), true, 30))
	w.subscribe(1, topic)
	pub.publish(topic, "b", 1, false)
	if pk, err := w.nextPublish(10 * time.Second); err != nil || string(pk.Payload) != "b" {
		t.Fatalf("barrier publish not routed: %q, %v", pk.Payload, err)
	}
	w.c.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestPubSubRoundTrip(t *testing.T) {
	b := startBroker(t, Options{})
	for _, v := range []byte{3, 4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			sub := dialRaw(t, b.tcpAddr(t), v)
			sub.connect(connectPacket(fmt.Sprintf("sub%d", v), true, 30))
			if codes := sub.subscribe(1, "rt/#"); len(codes) != 1 || codes[0] != 1 {
				t.Fatalf("SUBACK codes %v, want [1]", codes)
			}
			pub := dialRaw(t, b.tcpAddr(t), v)
			pub.connect(connectPacket(fmt.Sprintf("pub%d", v), true, 30))
			pub.publish("rt/x", "hello", 1, false)
			pk, err := sub.nextPublish(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if pk.TopicName != "rt/x" || string(pk.Payload) != "hello" {
				t.Fatalf("got %q %q", pk.TopicName, pk.Payload)
			}
		})
	}
}
