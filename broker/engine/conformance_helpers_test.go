package engine

// Helpers for the raw-packet conformance tests (conformance_*_test.go):
// a peer reads whole packets as bytes, so a test can compare what the
// engine wrote with the bytes the specification fixes, and the same
// scenario can be run against Debian's mosquitto (target) to compare.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/topic"
)

// Waits. quiet is how long a test listens to be sure nothing more comes;
// the engine answers on loopback in microseconds, so it is generous.
const (
	waitFor = 5 * time.Second
	quiet   = 300 * time.Millisecond
)

// peer is a raw client whose reads return whole packets as bytes.
type peer struct {
	*raw
}

func dialPeer(t testing.TB, addr string, v packet.Version) *peer {
	t.Helper()
	return &peer{dial(t, addr, v)}
}

// enc is packet.Encode that fails the test on an error.
func enc(t testing.TB, p packet.Packet, v packet.Version) []byte {
	t.Helper()
	b, err := packet.Encode(p, v)
	if err != nil {
		t.Fatalf("encode %s: %v", p.Type(), err)
	}
	return b
}

// unhex turns "20 02 00 00" into bytes.
func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func hexOf(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%02X", c)
	}
	return sb.String()
}

// appendLen appends MQTT's variable byte integer.
func appendLen(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// readRaw reads one whole packet, fixed header included, within d.
func (p *peer) readRaw(d time.Duration) ([]byte, error) {
	_ = p.nc.SetReadDeadline(time.Now().Add(d))
	h, body, err := p.rd.Next(func(byte) bool { return true })
	if err != nil {
		return nil, err
	}
	b := appendLen([]byte{h}, len(body))
	return append(b, body...), nil
}

// decode decodes a raw packet for the peer's version.
func (p *peer) decode(b []byte) packet.Packet {
	p.t.Helper()
	rd := packet.NewReader(bytes.NewReader(b), 0)
	pk, err := rd.ReadPacket(p.v)
	if err != nil {
		p.t.Fatalf("decode %s: %v", hexOf(b), err)
	}
	return pk
}

func (p *peer) describe(b []byte) string {
	rd := packet.NewReader(bytes.NewReader(b), 0)
	pk, err := rd.ReadPacket(p.v)
	if err != nil {
		return fmt.Sprintf("%s (undecodable: %v)", hexOf(b), err)
	}
	return fmt.Sprintf("%s [%s]", packet.Describe(pk, p.v), hexOf(b))
}

// expectRaw reads one packet and compares its bytes with want.
func (p *peer) expectRaw(what string, want []byte) {
	p.t.Helper()
	got, err := p.readRaw(waitFor)
	if err != nil {
		p.t.Fatalf("%s: read: %v (want %s)", what, err, hexOf(want))
	}
	if !bytes.Equal(got, want) {
		p.t.Fatalf("%s:\n got %s\nwant %s", what, p.describe(got), hexOf(want))
	}
}

// expectPacket reads and decodes one packet.
func (p *peer) expectPacket(what string) packet.Packet {
	p.t.Helper()
	b, err := p.readRaw(waitFor)
	if err != nil {
		p.t.Fatalf("%s: read: %v", what, err)
	}
	return p.decode(b)
}

// expectPublish reads one packet, which must be a PUBLISH.
func (p *peer) expectPublish(what string) *packet.Publish {
	p.t.Helper()
	pk := p.expectPacket(what)
	pub, ok := pk.(*packet.Publish)
	if !ok {
		p.t.Fatalf("%s: got %s, want PUBLISH", what, packet.Describe(pk, p.v))
	}
	return pub
}

// expectMessage reads a PUBLISH and checks its topic and payload.
func (p *peer) expectMessage(what, topicName, payload string) *packet.Publish {
	p.t.Helper()
	pub := p.expectPublish(what)
	if pub.Topic != topicName || string(pub.Payload) != payload {
		p.t.Fatalf("%s: got %s, want %q on %q", what, packet.Describe(pub, p.v), payload, topicName)
	}
	return pub
}

// isClosed reports whether err means the other end closed the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE)
}

// expectClosed checks that the connection is closed with no (further)
// packet sent.
func (p *peer) expectClosed(what string) {
	p.t.Helper()
	b, err := p.readRaw(waitFor)
	switch {
	case err == nil:
		p.t.Fatalf("%s: got %s, want the connection closed", what, p.describe(b))
	case isTimeout(err):
		p.t.Fatalf("%s: connection still open after %s, want it closed", what, waitFor)
	case !isClosed(err):
		p.t.Fatalf("%s: read: %v, want the connection closed", what, err)
	}
}

// expectSilence checks that nothing arrives within d (and that the
// connection stays open).
func (p *peer) expectSilence(what string, d time.Duration) {
	p.t.Helper()
	b, err := p.readRaw(d)
	switch {
	case err == nil:
		p.t.Fatalf("%s: got %s, want nothing", what, p.describe(b))
	case !isTimeout(err):
		p.t.Fatalf("%s: read: %v, want nothing and the connection open", what, err)
	}
}

// expectDisconnect reads an MQTT 5 DISCONNECT with code (a reason string
// and user properties may come with it: the specification leaves them
// to the server) and then the close.
func (p *peer) expectDisconnect(what string, code packet.ReasonCode) {
	p.t.Helper()
	pk := p.expectPacket(what)
	d, ok := pk.(*packet.Disconnect)
	if !ok {
		p.t.Fatalf("%s: got %s, want DISCONNECT 0x%02X", what, packet.Describe(pk, p.v), byte(code))
	}
	if d.Code != code {
		p.t.Fatalf("%s: got %s, want DISCONNECT 0x%02X", what, packet.Describe(pk, p.v), byte(code))
	}
	props := d.Properties
	props.Delete(packet.PropReasonString)
	props.Delete(packet.PropUser)
	if !props.Empty() {
		p.t.Fatalf("%s: DISCONNECT carries unexpected properties: %s", what, packet.Describe(pk, p.v))
	}
	p.expectClosed(what + " (after DISCONNECT)")
}

// connectOK sends c and requires an accepting CONNACK.
func (p *peer) connectOK(c *packet.Connect) *packet.Connack {
	p.t.Helper()
	ack := p.connect(c)
	if ack.Code != packet.Success {
		p.t.Fatalf("CONNECT %q refused: %s", c.ClientID, packet.Describe(ack, p.v))
	}
	return ack
}

// subscribe sends one SUBSCRIBE and requires the SUBACK to grant each
// filter; it returns the SUBACK.
func (p *peer) subscribe(id uint16, subs ...packet.Subscription) *packet.Suback {
	p.t.Helper()
	return p.subscribeWith(id, packet.Properties{}, subs...)
}

func (p *peer) subscribeWith(id uint16, props packet.Properties, subs ...packet.Subscription) *packet.Suback {
	p.t.Helper()
	p.send(&packet.Subscribe{PacketID: id, Properties: props, Subscriptions: subs})
	pk := p.expectPacket("SUBACK")
	sa, ok := pk.(*packet.Suback)
	if !ok || sa.PacketID != id || len(sa.Codes) != len(subs) {
		p.t.Fatalf("got %s, want SUBACK %d for %d filters", packet.Describe(pk, p.v), id, len(subs))
	}
	for i, c := range sa.Codes {
		if c != packet.ReasonCode(subs[i].QoS) {
			p.t.Fatalf("SUBACK for %q: 0x%02X, want QoS %d granted", subs[i].Filter, byte(c), subs[i].QoS)
		}
	}
	return sa
}

// publish1 publishes at QoS 1 and requires a plain PUBACK (or, in MQTT
// 5, one with 0x10 "no matching subscribers", which mosquitto sends).
func (p *peer) publish1(id uint16, topicName, payload string) {
	p.t.Helper()
	p.send(&packet.Publish{Topic: topicName, QoS: 1, PacketID: id, Payload: []byte(payload)})
	p.expectAck("PUBACK for "+topicName, 0x40, id)
}

// expectAck reads a PUBACK or PUBREC (first byte kind) for id that
// reports success: the two-byte form, or in MQTT 5 the one with 0x10
// "no matching subscribers".
func (p *peer) expectAck(what string, kind byte, id uint16) {
	p.t.Helper()
	want := []byte{kind, 0x02, byte(id >> 8), byte(id)}
	got, err := p.readRaw(waitFor)
	if err != nil {
		p.t.Fatalf("%s: read: %v (want %s)", what, err, hexOf(want))
	}
	if bytes.Equal(got, want) || p.v == packet.V5 && bytes.Equal(got, []byte{kind, 0x03, byte(id >> 8), byte(id), 0x10}) {
		return
	}
	p.t.Fatalf("%s:\n got %s\nwant %s", what, p.describe(got), hexOf(want))
}

// publish2 completes a QoS 2 publish with a successful PUBREC and a plain
// PUBCOMP.
func (p *peer) publish2(id uint16, topicName, payload string) {
	p.t.Helper()
	p.send(&packet.Publish{Topic: topicName, QoS: 2, PacketID: id, Payload: []byte(payload)})
	p.expectAck("PUBREC for "+topicName, 0x50, id)
	p.write([]byte{0x62, 0x02, byte(id >> 8), byte(id)})
	p.expectRaw("PUBCOMP for "+topicName, []byte{0x70, 0x02, byte(id >> 8), byte(id)})
}

// ack acknowledges a delivered PUBLISH completely (PUBACK, or PUBREC then
// PUBREL then PUBCOMP), checking the PUBREL's bytes.
func (p *peer) ack(pub *packet.Publish) {
	p.t.Helper()
	id := []byte{byte(pub.PacketID >> 8), byte(pub.PacketID)}
	switch pub.QoS {
	case 1:
		p.write(append([]byte{0x40, 0x02}, id...))
	case 2:
		p.write(append([]byte{0x50, 0x02}, id...))
		p.expectRaw("PUBREL", append([]byte{0x62, 0x02}, id...))
		p.write(append([]byte{0x70, 0x02}, id...))
	}
}

// drop ends the connection without DISCONNECT, as a network failure
// would.
func (p *peer) drop() { _ = p.nc.Close() }

// v5Connack is the CONNACK the engine answers an accepted MQTT 5 CONNECT
// with under DefaultConfig: Receive Maximum 256, Topic Alias Maximum 10,
// Maximum Packet Size 1 MiB [MQTT-3.2.2-?] (3.2.2.3.3, .5, .8).
func v5Connack(sessionPresent bool) []byte {
	sp := "00"
	if sessionPresent {
		sp = "01"
	}
	// No Receive Maximum: the engine's is 65535, what its absence means
	// (3.2.2.3.3).
	return unhex("20 0B " + sp + " 00 08 22 00 0A 27 00 10 00 00")
}

// target is a broker a scenario runs against: the engine or Debian's
// mosquitto.
type target struct {
	name string
	addr string
	mosq bool
}

// engineTarget starts an engine with cfg.
func engineTarget(t testing.TB, cfg Config) target {
	t.Helper()
	_, addr := start(t, cfg)
	return target{name: "engine", addr: addr}
}

// mosquittoTarget starts Debian's mosquitto (the test is skipped when it
// is not installed). global is added to its configuration.
func mosquittoTarget(t testing.TB, global string) target {
	t.Helper()
	b := mosquittotest.Start(t, mosquittotest.Options{Global: global})
	return target{name: "mosquitto", addr: b.Addr(0), mosq: true}
}

// both runs scenario against the engine and against mosquitto, as
// subtests "engine" and "mosquitto".
func both(t *testing.T, cfg Config, scenario func(t *testing.T, tg target)) {
	t.Helper()
	t.Run("engine", func(t *testing.T) { t.Parallel(); scenario(t, engineTarget(t, cfg)) })
	t.Run("mosquitto", func(t *testing.T) { t.Parallel(); scenario(t, mosquittoTarget(t, "")) })
}

// transcribe sends each of writes (raw bytes) in turn and records what
// comes back, packet by packet as hex, then "close" when the broker
// closes the connection, or "open" when it stays open for quiet after
// the last write. It is the common currency of engine-versus-mosquitto
// comparisons.
func (p *peer) transcribe(writes [][]byte) []string {
	var out []string
	for i, w := range writes {
		_ = p.nc.SetWriteDeadline(time.Now().Add(waitFor))
		if _, err := p.nc.Write(w); err != nil {
			out = append(out, "write failed")
			return out
		}
		// Collect what this write caused. An answer late for an earlier
		// write still lands in order in the flat list, so only the last
		// write needs the full quiet period to tell "open".
		wait := quiet / 3
		if i == len(writes)-1 {
			wait = quiet
		}
		for {
			b, err := p.readRaw(wait)
			switch {
			case err == nil:
				out = append(out, hexOf(b))
				continue
			case isTimeout(err):
			case isClosed(err):
				return append(out, "close")
			default:
				return append(out, "error: "+err.Error())
			}
			break
		}
	}
	return append(out, "open")
}

// testHooks is an authenticating, authorising Hooks for the security
// tests: alice (password "a") may publish and read alice/# and public/#;
// carol (password "c") may read public/# and publish nothing. Anonymous
// clients are refused. It records the filters MaySubscribe was asked
// about.
type testHooks struct {
	mu    sync.Mutex
	asked []string
}

var testUsers = map[string]struct {
	password string
	write    []string
	read     []string
}{
	"alice": {"a", []string{"alice/#", "public/#"}, []string{"alice/#", "public/#"}},
	"carol": {"c", nil, []string{"public/#"}},
	"dave":  {"d", []string{"dave/#"}, []string{"dave/#"}},
}

// mosquittoACL starts mosquitto with the users and rules of testHooks, in
// its password-file and ACL-file formats.
func mosquittoACL(t testing.TB) target {
	t.Helper()
	dir := t.TempDir()
	pw := mosquittotest.PasswordFile(t, "alice", "a")
	for _, u := range []string{"carol", "dave"} {
		bin, err := exec.LookPath("mosquitto_passwd")
		if err != nil {
			t.Skip("mosquitto_passwd is not installed")
		}
		if out, err := exec.Command(bin, "-b", pw, u, testUsers[u].password).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
		}
	}
	var acl strings.Builder
	for _, u := range []string{"alice", "carol", "dave"} {
		fmt.Fprintf(&acl, "user %s\n", u)
		for _, f := range testUsers[u].write {
			if slices.Contains(testUsers[u].read, f) {
				fmt.Fprintf(&acl, "topic readwrite %s\n", f)
			} else {
				fmt.Fprintf(&acl, "topic write %s\n", f)
			}
		}
		for _, f := range testUsers[u].read {
			if !slices.Contains(testUsers[u].write, f) {
				fmt.Fprintf(&acl, "topic read %s\n", f)
			}
		}
	}
	aclFile := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclFile, []byte(acl.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b := mosquittotest.Start(t, mosquittotest.Options{PasswordFile: pw, ACLFile: aclFile})
	return target{name: "mosquitto", addr: b.Addr(0), mosq: true}
}

func (h *testHooks) Authenticate(c *Client, password []byte, hasPassword bool) packet.ReasonCode {
	u, ok := testUsers[c.Username]
	switch {
	case !c.HasUser:
		return packet.NotAuthorized
	case !ok || !hasPassword || string(password) != u.password:
		return packet.BadUserNameOrPassword
	}
	return packet.Success
}

func (h *testHooks) MayPublish(c *Client, name string, _ bool) bool {
	for _, rule := range testUsers[c.Username].write {
		if topic.Covers(rule, name) {
			return true
		}
	}
	return false
}

func (h *testHooks) MaySubscribe(c *Client, filter string) bool {
	h.mu.Lock()
	h.asked = append(h.asked, filter)
	h.mu.Unlock()
	for _, rule := range testUsers[c.Username].read {
		if topic.Covers(rule, filter) {
			return true
		}
	}
	return false
}

func (h *testHooks) MayRead(c *Client, name string) bool {
	for _, rule := range testUsers[c.Username].read {
		if topic.Covers(rule, name) {
			return true
		}
	}
	return false
}

func (h *testHooks) subscribeAsks() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.asked...)
}

// mstr is an MQTT UTF-8 string: two length bytes and the bytes.
func mstr(s string) []byte {
	return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...)
}

// rawConnect builds a CONNECT byte by byte, so that it may break the
// rules the encoder enforces: props nil means no property block (3.1,
// 3.1.1); payload is the client id and what follows, already encoded.
func rawConnect(name string, level, flags byte, props []byte, payload ...[]byte) []byte {
	body := mstr(name)
	body = append(body, level, flags, 0, 60)
	if props != nil {
		body = appendLen(body, len(props))
		body = append(body, props...)
	}
	for _, p := range payload {
		body = append(body, p...)
	}
	return append(appendLen([]byte{0x10}, len(body)), body...)
}

// exchange is one raw conversation with a broker and what must come back
// (as transcribe records it). mosq is what Debian's mosquitto 2.0.11
// answers when it differs from the engine (nil: the same); a comment
// beside it says why the difference is allowed or which one is wrong.
type exchange struct {
	name string
	v    packet.Version
	// connect, when set, is sent first and must be accepted; its CONNACK
	// is not part of the transcript (the engine's and mosquitto's MQTT 5
	// properties differ). MQTT 5 connects ask for no problem information,
	// so that DISCONNECTs carry no reason string and have fixed bytes.
	connect bool
	writes  func(id string) [][]byte
	want    []string
	mosq    []string
}

// connectFor is an accepted CONNECT for id at v: clean start, keep alive
// 60, and for MQTT 5 Request Problem Information 0.
func connectFor(id string, v packet.Version) []byte {
	switch v {
	case packet.V31:
		return rawConnect("MQIsdp", 3, 0x02, nil, mstr(id))
	case packet.V5:
		return rawConnect("MQTT", 5, 0x02, []byte{0x17, 0x00}, mstr(id))
	}
	return rawConnect("MQTT", 4, 0x02, nil, mstr(id))
}

// runExchanges runs each exchange against an engine started with cfg and
// against mosquitto configured with mosqConf, in parallel (each with its
// own client id).
func runExchanges(t *testing.T, cfg Config, mosqConf string, rows []exchange) {
	t.Helper()
	run := func(t *testing.T, tg target) {
		for i, ex := range rows {
			id := fmt.Sprintf("x%d-%s", i, tg.name)
			t.Run(ex.name, func(t *testing.T) {
				t.Parallel()
				want := ex.want
				if tg.mosq && ex.mosq != nil {
					want = ex.mosq
				}
				got := runExchange(t, tg.addr, ex, id)
				if strings.Join(got, " | ") != strings.Join(want, " | ") {
					t.Errorf("%s answered\n got %s\nwant %s", tg.name, strings.Join(got, " | "), strings.Join(want, " | "))
				}
			})
		}
	}
	t.Run("engine", func(t *testing.T) { t.Parallel(); run(t, engineTarget(t, cfg)) })
	t.Run("mosquitto", func(t *testing.T) { t.Parallel(); run(t, mosquittoTarget(t, mosqConf)) })
}

func runExchange(t *testing.T, addr string, ex exchange, id string) []string {
	t.Helper()
	writes := ex.writes(id)
	if ex.connect {
		p := dialPeer(t, addr, ex.v)
		p.write(connectFor(id, ex.v))
		ack, ok := p.expectPacket("CONNACK").(*packet.Connack)
		if !ok || ack.Code != packet.Success {
			t.Fatalf("CONNECT refused: %+v", ack)
		}
		return p.transcribe(writes)
	}
	return dialPeer(t, addr, ex.v).transcribe(writes)
}

// differs reports a departure from the specification: an error for the
// engine, a log line for mosquitto, whose faults are recorded, not held
// against this project.
func differs(t testing.TB, tg target, format string, args ...any) {
	t.Helper()
	if tg.mosq {
		t.Logf("mosquitto differs: "+format, args...)
		return
	}
	t.Errorf(format, args...)
}
