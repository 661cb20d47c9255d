package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/ui"
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
		o.Log = &ui.SyncBuffer{}
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

// rawClient speaks MQTT packet by packet over one connection, encoding and
// decoding with internal/packet, so tests see exactly what the broker
// sends and nothing interprets it for them.
type rawClient struct {
	t       testing.TB
	c       net.Conn
	r       *packet.Reader
	version packet.Version
}

func dialRaw(t testing.TB, addr string, version packet.Version) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return newRawClient(t, c, version)
}

// newRawClient speaks MQTT version over c (any transport) and closes it
// when the test ends.
func newRawClient(t testing.TB, c net.Conn, version packet.Version) *rawClient {
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: packet.NewReader(c, 0), version: version}
}

func (rc *rawClient) send(p packet.Packet) {
	rc.t.Helper()
	b, err := packet.Encode(p, rc.version)
	if err != nil {
		rc.t.Fatalf("encode %s: %v", p.Type(), err)
	}
	_ = rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// recv reads one packet, failing the test after 10 s.
func (rc *rawClient) recv() packet.Packet {
	rc.t.Helper()
	pk, err := rc.tryRecv(10 * time.Second)
	if err != nil {
		rc.t.Fatalf("read packet: %v", err)
	}
	return pk
}

// tryRecv reads one packet within d. A packet the codec refuses is an
// error: the broker sent something malformed.
func (rc *rawClient) tryRecv(d time.Duration) (packet.Packet, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(d))
	return rc.r.ReadPacket(rc.version)
}

// typeOf is p's packet type, 0 for none (a failed read).
func typeOf(p packet.Packet) packet.Type {
	if p == nil {
		return 0
	}
	return p.Type()
}

// reasonOf is the reason (or 3.1.1 return) code of a CONNACK, an ack or a
// DISCONNECT; 0xff for any other packet, so a test expecting a code never
// mistakes one for success.
func reasonOf(p packet.Packet) packet.ReasonCode {
	switch p := p.(type) {
	case *packet.Connack:
		return p.Code
	case *packet.Ack:
		return p.Code
	case *packet.Disconnect:
		return p.Code
	}
	return 0xff
}

// describe prints p for a failure message.
func (rc *rawClient) describe(p packet.Packet) string {
	if p == nil {
		return "no packet"
	}
	return packet.Describe(p, rc.version)
}

func connectPacket(id string, clean bool, keepalive uint16) *packet.Connect {
	return &packet.Connect{ClientID: id, CleanStart: clean, KeepAlive: keepalive}
}

// connect sends CONNECT and expects a successful CONNACK.
func (rc *rawClient) connect(pk *packet.Connect) *packet.Connack {
	rc.t.Helper()
	rc.send(pk)
	p := rc.recv()
	ack, ok := p.(*packet.Connack)
	if !ok || ack.Code != packet.Success {
		rc.t.Fatalf("CONNECT %q: got %s, want a CONNACK accepting it", pk.ClientID, rc.describe(p))
	}
	return ack
}

// subscribe asks for QoS 1 on each filter and returns the SUBACK's codes.
func (rc *rawClient) subscribe(id uint16, filters ...string) []byte {
	rc.t.Helper()
	pk := &packet.Subscribe{PacketID: id}
	for _, f := range filters {
		pk.Subscriptions = append(pk.Subscriptions, packet.Subscription{Filter: f, QoS: 1})
	}
	return rc.subscribePacket(pk)
}

// subscribePacket sends pk and returns the SUBACK's codes, skipping
// whatever else arrives first.
func (rc *rawClient) subscribePacket(pk *packet.Subscribe) []byte {
	rc.t.Helper()
	rc.send(pk)
	for {
		if ack, ok := rc.recv().(*packet.Suback); ok {
			codes := make([]byte, len(ack.Codes))
			for i, c := range ack.Codes {
				codes[i] = byte(c)
			}
			return codes
		}
	}
}

// publish sends a PUBLISH (packet id 7 at QoS 1 and 2) and, at QoS 1,
// waits for its PUBACK.
func (rc *rawClient) publish(topic, payload string, qos byte, retain bool) {
	rc.t.Helper()
	pk := &packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}
	if qos > 0 {
		pk.PacketID = 7
	}
	rc.send(pk)
	if qos == 1 {
		for {
			if ack, ok := rc.recv().(*packet.Ack); ok && ack.Kind == packet.TypePuback {
				return
			}
		}
	}
}

// nextPublish returns the next PUBLISH, acknowledging QoS 1. On error the
// PUBLISH returned is empty, never nil.
func (rc *rawClient) nextPublish(d time.Duration) (*packet.Publish, error) {
	for {
		p, err := rc.tryRecv(d)
		if err != nil {
			return &packet.Publish{}, err
		}
		if pk, ok := p.(*packet.Publish); ok {
			if pk.QoS == 1 {
				rc.send(&packet.Ack{Kind: packet.TypePuback, PacketID: pk.PacketID})
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
	return newRawClient(t, c, packet.V311)
}

// routed returns once every publish pub has made is routed. A PUBACK
// says the broker took responsibility for a message, not that it has
// reached (or been refused by) every subscriber yet; but a broker routes
// one connection's publishes in order [MQTT-4.6.0-6], so once a later
// publish from pub arrives at a watcher, the earlier ones are done.
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

// quietClient is a raw MQTT connection for goroutines other than the
// test's own: it returns errors where rawClient fails the test.
type quietClient struct {
	c net.Conn
	r *packet.Reader
	v packet.Version
}

// dialQuiet connects to addr with pk and waits for a CONNACK accepting it.
func dialQuiet(addr string, v packet.Version, pk *packet.Connect) (*quietClient, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	q := &quietClient{c: c, r: packet.NewReader(c, 0), v: v}
	if err := q.send(pk); err != nil {
		c.Close()
		return nil, err
	}
	p, err := q.recv()
	if ack, ok := p.(*packet.Connack); err != nil || !ok || ack.Code != packet.Success {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: got %v, %v", pk.ClientID, p, err)
	}
	return q, nil
}

func (q *quietClient) send(p packet.Packet) error {
	b, err := packet.Encode(p, q.v)
	if err != nil {
		return err
	}
	_ = q.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = q.c.Write(b)
	return err
}

func (q *quietClient) recv() (packet.Packet, error) {
	_ = q.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return q.r.ReadPacket(q.v)
}

// publish1 publishes at QoS 1 with packet id id and waits for a PUBACK
// that accepts it.
func (q *quietClient) publish1(topic string, payload []byte, retain bool, id uint16) error {
	if err := q.send(&packet.Publish{QoS: 1, PacketID: id, Retain: retain, Topic: topic, Payload: payload}); err != nil {
		return err
	}
	for {
		p, err := q.recv()
		if err != nil {
			return err
		}
		if ack, ok := p.(*packet.Ack); ok && ack.Kind == packet.TypePuback && ack.PacketID == id {
			if ack.Code >= 0x80 {
				return fmt.Errorf("PUBACK 0x%02x", byte(ack.Code))
			}
			return nil
		}
	}
}

// clientInfo is one entry of the --http endpoint's /api/clients, the
// broker's own account of its sessions: tests wait on it where a client
// cannot see the broker's state (has it noticed that a connection closed?
// has a session ended?).
type clientInfo struct {
	ID              string `json:"id"`
	Username        string `json:"username"`
	ProtocolVersion byte   `json:"protocol_version"`
	Connected       bool   `json:"connected"`
	Clean           bool   `json:"clean"`
	Subscriptions   int    `json:"subscriptions"`
	Inflight        int    `json:"inflight"`
}

// sessions reads /api/clients of b, which must have been started with
// HTTPAddr set.
func sessions(t testing.TB, b *Broker) map[string]clientInfo {
	t.Helper()
	if b.HTTPAddr() == "" {
		t.Fatal("the broker has no --http endpoint: start it with HTTPAddr")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + b.HTTPAddr() + "/api/clients")
	if err != nil {
		t.Fatalf("GET /api/clients: %v", err)
	}
	defer resp.Body.Close()
	var list []clientInfo
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("/api/clients: %v", err)
	}
	m := make(map[string]clientInfo, len(list))
	for _, c := range list {
		m[c.ID] = c
	}
	return m
}

// waitOffline waits until b keeps id's session without a connection.
func waitOffline(t *testing.T, b *Broker, id string) {
	t.Helper()
	waitFor(t, func() bool { c, ok := sessions(t, b)[id]; return ok && !c.Connected })
}

// waitGone waits until b no longer knows a session with id.
func waitGone(t *testing.T, b *Broker, id string) {
	t.Helper()
	waitFor(t, func() bool { _, ok := sessions(t, b)[id]; return !ok })
}

// scrape reads b's /metrics (b must have been started with HTTPAddr) and
// returns its samples keyed by `name{labels}`.
func scrape(t *testing.T, b *Broker) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, "http://"+b.HTTPAddr()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics status %d", code)
	}
	return parseProm(t, body)
}

// dropped is the sum of mqtk_broker_messages_dropped_total over every
// reason.
func dropped(t *testing.T, b *Broker) float64 {
	t.Helper()
	var n float64
	for k, v := range scrape(t, b) {
		if strings.HasPrefix(k, "mqtk_broker_messages_dropped_total") {
			n += v
		}
	}
	return n
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestPubSubRoundTrip(t *testing.T) {
	b := startBroker(t, Options{})
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
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
			if pk.Topic != "rt/x" || string(pk.Payload) != "hello" {
				t.Fatalf("got %q %q", pk.Topic, pk.Payload)
			}
		})
	}
}
