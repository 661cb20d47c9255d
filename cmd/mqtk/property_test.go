package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/ui"
)

// -D publish fills the same pub.Props the dedicated flags fill, so both
// reach the broker by one path; other flags' values are not taken for -D.
func TestPropertyFlagFillsPubProps(t *testing.T) {
	byFlags, err := parsePub(t, "-t", "a", "-m", "x", "--user-property", "k=v", "--content-type", "text/plain",
		"--response-topic", "re/ply", "--correlation-data", "hex:0a0b", "--message-expiry", "60",
		"--payload-format-indicator", "1", "--topic-alias", "3")
	if err != nil {
		t.Fatal(err)
	}
	byD, err := parsePub(t, "-t", "a", "-m", "x", "-D", "publish", "user-property", "k", "v", "-D", "PUBLISH", "content-type", "text/plain",
		"-D", "publish", "response-topic", "re/ply", "-D", "publish", "correlation-data", "hex:0a0b",
		"-D", "publish", "message-expiry-interval", "60", "-D", "publish", "payload-format-indicator", "1",
		"--property", "publish", "topic-alias", "3")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(byFlags.Props, byD.Props) {
		t.Errorf("-D gave %+v, the flags %+v", byD.Props, byFlags.Props)
	}
	// A value that looks like -D belongs to its flag; "--" ends -D's reach.
	o, err := parsePub(t, "-t", "a", "-m", "-D", "-D", "publish", "user-property", "-k", "-v")
	if err != nil || o.Message != "-D" || fmt.Sprint(o.Props.UserProperties) != "[{-k -v}]" {
		t.Errorf("-m -D: %v %+v", err, o)
	}
	// Connection-level properties land on the Config, -D connect
	// session-expiry-interval on the field -x fills.
	o, err = parsePub(t, "-t", "a", "-m", "x", "-D", "connect", "session-expiry-interval", "30", "-D", "connect", "receive-maximum", "5",
		"-D", "connect", "maximum-packet-size", "1000", "-D", "connect", "topic-alias-maximum", "4", "-D", "connect", "request-problem-information", "0",
		"-D", "connect", "request-response-information", "1", "-D", "connect", "user-property", "a", "b",
		"-D", "connect", "authentication-method", "m", "-D", "connect", "authentication-data", "base64:AAE=",
		"--will-topic", "w", "-D", "will", "will-delay-interval", "9", "-D", "will", "content-type", "ct", "-D", "will", "correlation-data", "hex:ff",
		"-D", "disconnect", "session-expiry-interval", "0", "-D", "disconnect", "reason-string", "bye", "-D", "disconnect", "user-property", "c", "d")
	if err != nil {
		t.Fatal(err)
	}
	c, p := o.Conn, o.Conn.Props
	if *c.SessionExpiry != 30*time.Second || *p.ReceiveMaximum != 5 || *p.MaximumPacketSize != 1000 || *p.TopicAliasMaximum != 4 ||
		*p.RequestProblemInfo != 0 || *p.RequestResponseInfo != 1 || fmt.Sprint(p.ConnectUser) != "[{a b}]" || p.AuthMethod != "m" ||
		!bytes.Equal(p.AuthData, []byte{0, 1}) || *c.Will.DelayInterval != 9 || c.Will.ContentType != "ct" ||
		!bytes.Equal(c.Will.CorrelationData, []byte{0xff}) || *p.DisconnectSessionExpiry != 0 || p.DisconnectReason != "bye" ||
		fmt.Sprint(p.DisconnectUser) != "[{c d}]" {
		t.Errorf("config: %+v props %+v will %+v", c, p, c.Will)
	}
	// sub: -D subscribe subscription-identifier is --subscription-id.
	so, err := parseSub(t, "-t", "a", "-D", "subscribe", "subscription-identifier", "7", "-D", "subscribe", "user-property", "k", "v",
		"-D", "unsubscribe", "user-property", "u", "w")
	if err != nil || so.SubscriptionID != 7 || fmt.Sprint(so.Conn.Props.SubscribeUser) != "[{k v}]" || fmt.Sprint(so.Conn.Props.UnsubscribeUser) != "[{u w}]" {
		t.Errorf("sub -D: %v %+v", err, so)
	}
}

// A property mqtk cannot send, or sends nowhere in this command's
// packets, is a usage error naming the valid ones, as mosquitto refuses
// them (mosquitto exits 1 with "content-type property not allowed for
// connect").
func TestPropertyUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-D", "connect", "content-type", "x"}, "content-type is not a CONNECT property: connect takes session-expiry-interval, receive-maximum"},
		{[]string{"-D", "foo", "content-type", "x"}, `"foo" is not a command` + "\nhint: use one of connect, publish, subscribe, unsubscribe, disconnect, will"},
		{[]string{"-D", "connect", "nonsense", "x"}, `"nonsense" is not an MQTT 5 property`},
		{[]string{"-D", "publish", "subscription-identifier", "5"}, "subscription-identifier is set by the broker, not the client, in PUBLISH"},
		{[]string{"-D", "auth", "authentication-method", "x"}, "mqtk sends no AUTH packet of its own, as mosquitto's clients do not\nhint: give the authentication method and data with -D connect authentication-method"},
		{[]string{"-D", "puback", "reason-string", "x"}, "puback is a packet the broker sends or an acknowledgement"},
		{[]string{"-D", "disconnect", "server-reference", "x"}, "server-reference is set by the broker, not the client, in DISCONNECT"},
		{[]string{"-D", "publish", "user-property", "k"}, "user-property takes a KEY and a VALUE\nhint: write e.g. -D publish user-property key value"},
		{[]string{"-D", "publish", "content-type"}, "-D publish content-type: want COMMAND NAME VALUE (COMMAND user-property KEY VALUE)\nhint: write e.g. -D publish content-type text/plain"},
		{[]string{"-D", "connect", "receive-maximum", "0"}, "receive-maximum takes a whole number from 1 to 65535"},
		{[]string{"-D", "connect", "receive-maximum", "70000"}, "receive-maximum takes a whole number from 1 to 65535"},
		{[]string{"-D", "connect", "maximum-packet-size", "0"}, "maximum-packet-size takes a whole number from 1 to 4294967295"},
		{[]string{"-D", "publish", "message-expiry-interval", "-1"}, "message-expiry-interval takes a whole number"},
		{[]string{"-D", "publish", "payload-format-indicator", "2"}, "payload-format-indicator takes a whole number from 0 to 1"},
		{[]string{"-D", "publish", "topic-alias", "0"}, "topic-alias takes a whole number from 1 to 65535"},
		{[]string{"-D", "publish", "correlation-data", "hex:zz"}, "not valid hex"},
		{[]string{"--content-type", "a", "-D", "publish", "content-type", "b"}, "content-type is already set"},
		{[]string{"-x", "10", "-D", "connect", "session-expiry-interval", "5"}, "session-expiry-interval is already set"},
		{[]string{"-D", "disconnect", "session-expiry-interval", "5"}, "a DISCONNECT session expiry of 5 s needs a non-zero session expiry in CONNECT"},
		{[]string{"-V", "311", "-D", "publish", "content-type", "x"}, "-D publish content-type x: properties are MQTT 5, and -V 3.1.1 has none"},
		{[]string{"-D", "connect", "user-property", "k", "v", "-V", "31"}, "properties are MQTT 5, and -V 3.1 has none"},
	} {
		args := append([]string{"pub", "-p", "1", "-t", "a", "-m", "x"}, tc.args...)
		code, _, stderr := runMqtk(t, "", args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
		if strings.Contains(stderr, "\x00") || strings.Contains(stderr, `\x00`) {
			t.Errorf("%q: the joined words show in %q", tc.args, stderr)
		}
	}
}

// sameExceptExpiryTick compares two lines of the -F format above. The
// seventh field, %E, is the message expiry interval left when the broker
// sent the message: the two messages were published and read at
// different moments, so a second may have passed for one and not the
// other. Everything else must be equal.
func sameExceptExpiryTick(a, b string) bool {
	fa, fb := strings.Split(a, "|"), strings.Split(b, "|")
	if len(fa) != len(fb) || len(fa) < 7 {
		return a == b
	}
	ea, erra := strconv.Atoi(fa[6])
	eb, errb := strconv.Atoi(fb[6])
	if erra != nil || errb != nil || ea-eb > 1 || eb-ea > 1 {
		return a == b
	}
	fa[6], fb[6] = "", ""
	return slices.Equal(fa, fb)
}

// A mosquitto_pub command line with -D runs unchanged under mqtk pub and
// gives the subscriber the same message, properties and all; so does a
// mosquitto_sub one with -D under mqtk sub. Against Debian's mosquitto
// and mqtk's own broker.
func TestPropertyCommandLinesLikeMosquitto(t *testing.T) {
	mpub, msub := mosquittotest.RequireClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mb := mosquittotest.Start(t, mosquittotest.Options{})
	for _, port := range []int{mb.Port(), startOwnBroker(t, ctx, "")} {
		conn := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(port)}
		read := func(topic string) string {
			t.Helper()
			code, out, stderr := runCmd(t, ctx, msub, append(conn, "-V", "mqttv5", "-t", topic, "-C", "1", "-W", "10",
				"-F", `%t|%p|%q|%r|%C|%D|%E|%F|%P|%R`)...)
			if code != 0 {
				t.Fatalf("mosquitto_sub %s: exit %d\n%s", topic, code, stderr)
			}
			return strings.TrimPrefix(out, topic)
		}
		for i, args := range [][]string{
			{"-m", "x", "-D", "publish", "content-type", "application/json", "-D", "publish", "user-property", "unit", "C",
				"-D", "publish", "user-property", "unit", "F", "-D", "publish", "correlation-data", "c0rr",
				"-D", "publish", "response-topic", "re/ply", "-D", "publish", "payload-format-indicator", "1", "-q", "1"},
			{"-m", "y", "-D", "publish", "message-expiry-interval", "3600", "-D", "connect", "user-property", "who", "me",
				"-D", "connect", "receive-maximum", "10", "-D", "connect", "topic-alias-maximum", "5", "-q", "2"},
			{"-m", "z", "-D", "publish", "topic-alias", "1", "-D", "disconnect", "reason-string", "bye", "-x", "60",
				"-D", "disconnect", "session-expiry-interval", "0", "-D", "will", "will-delay-interval", "5", "--will-topic", "w/x"},
		} {
			mt, qt := fmt.Sprintf("dm/%d/mosq", i), fmt.Sprintf("dm/%d/mqtk", i)
			if code, _, stderr := runCmd(t, ctx, mpub, append(append(conn, "-t", mt, "-r"), args...)...); code != 0 {
				t.Fatalf("mosquitto_pub %q: exit %d\n%s", args, code, stderr)
			}
			if code, _, stderr := runMqtk(t, "", append(append(append([]string{"pub"}, conn...), "-t", qt, "-r"), args...)...); code != 0 {
				t.Fatalf("mqtk pub %q: exit %d\n%s", args, code, stderr)
			}
			if want, got := read(mt), read(qt); !sameExceptExpiryTick(got, want) {
				t.Errorf("port %d %q: mqtk pub gave %q, mosquitto_pub %q", port, args, got, want)
			}
		}
		// Binary values mosquitto cannot give (mosquitto#3212).
		if code, _, stderr := runMqtk(t, "", append(append([]string{"pub"}, conn...), "-t", "dm/bin", "-r", "-m", "b",
			"-D", "publish", "correlation-data", "hex:00ff0a")...); code != 0 {
			t.Fatalf("mqtk pub hex: exit %d\n%s", code, stderr)
		}
		if got := read("dm/bin"); got != "|b|0|1||\x00\xff\n||||\n" {
			t.Errorf("hex: correlation data read back as %q", got)
		}
		// mqtk sub with mosquitto_sub's -D: the subscription identifier
		// reaches the broker (%S), the SUBSCRIBE carries the user property.
		for _, bin := range []string{msub, "mqtk"} {
			args := append(conn, "-V", "mqttv5", "-t", "dm/0/mqtk", "-C", "1", "-W", "10", "-F", "%S|%p",
				"-D", "subscribe", "subscription-identifier", "42", "-D", "subscribe", "user-property", "k", "v")
			var code int
			var out, stderr string
			if bin == "mqtk" {
				code, out, stderr = runMqtk(t, "", append([]string{"sub", "-d"}, args...)...)
				if !strings.Contains(stderr, "→ SUBSCRIBE id=1 subscription-identifier=42 user-property=k:v filter=dm/0/mqtk") {
					t.Errorf("mqtk sub -d: no SUBSCRIBE with the properties in\n%s", stderr)
				}
			} else {
				code, out, stderr = runCmd(t, ctx, bin, args...)
			}
			if code != 0 || out != "42|x\n" {
				t.Errorf("%s sub -D subscribe: exit %d, stdout %q\n%s", bin, code, out, stderr)
			}
		}
	}
}

// mqtk pub -d shows the CONNECT and will properties -D put on the wire,
// and the broker accepts them.
func TestPropertyConnectOnTheWire(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	code, _, stderr := runMqtk(t, "", "pub", "-d", "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-t", "w/a", "-m", "x",
		"-D", "connect", "receive-maximum", "10", "-D", "connect", "maximum-packet-size", "100000", "-D", "connect", "topic-alias-maximum", "5",
		"-D", "connect", "request-response-information", "1", "-D", "connect", "request-problem-information", "0",
		"-D", "connect", "user-property", "site", "lab", "-D", "connect", "session-expiry-interval", "30",
		"--will-topic", "w/will", "-D", "will", "will-delay-interval", "5", "-D", "will", "message-expiry-interval", "60",
		"-D", "will", "content-type", "text/plain", "-D", "will", "response-topic", "w/re", "-D", "will", "correlation-data", "hex:01",
		"-D", "will", "payload-format-indicator", "1", "-D", "will", "user-property", "wk", "wv",
		"-D", "disconnect", "user-property", "bye", "now")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"→ CONNECT ", "session-expiry-interval=30", "receive-maximum=10", "topic-alias-maximum=5", "maximum-packet-size=100000",
		"request-response-information=1", "request-problem-information=0", "user-property=site:lab", "will-topic=w/will",
		"will-delay-interval=5", "will-message-expiry-interval=60", `will-content-type="text/plain"`, `will-response-topic="w/re"`,
		`will-correlation-data="\x01"`, "will-payload-format-indicator=1", "will-user-property=wk:wv",
		"← CONNACK session-present=false reason=0x00", "→ DISCONNECT reason=0x00 (normal disconnection) user-property=bye:now",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("trace lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := exec.LookPath("mosquitto_pub"); err == nil {
		// mosquitto refuses what mqtk refuses before connecting.
		out, err := exec.Command("mosquitto_pub", "-p", fmt.Sprint(b.Port()), "-t", "a", "-m", "x", "-D", "connect", "content-type", "x").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "content-type property not allowed for connect") {
			t.Errorf("mosquitto_pub -D connect content-type: %v %s", err, out)
		}
	}
}

// The will properties -D gives reach the will's subscribers: mosquitto
// publishes the will when another client takes the session over, and a
// retained will is read back afterwards without racing it. paho.golang
// leaves five of them out of CONNECT; mqtk puts them back.
func TestPropertyWillDelivered(t *testing.T) {
	mpub, msub := mosquittotest.RequireClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := mosquittotest.Start(t, mosquittotest.Options{})
	conn := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(b.Port())}
	done := make(chan int, 1)
	go func() {
		code, _, _ := runSubCmd(ctx, append(append([]string{"sub"}, conn...), "-i", "willer", "-t", "x", "--no-reconnect",
			"--will-topic", "will/t", "--will-payload", "bye", "--will-retain",
			"-D", "will", "content-type", "ct", "-D", "will", "user-property", "a", "b", "-D", "will", "correlation-data", "hex:0102",
			"-D", "will", "message-expiry-interval", "300", "-D", "will", "payload-format-indicator", "1", "-D", "will", "response-topic", "r/t")...)
		done <- code
	}()
	for !strings.Contains(b.Log(), "as willer (p5") {
		select {
		case code := <-done:
			t.Fatalf("mqtk sub ended with %d before connecting\n%s", code, b.Log())
		case <-ctx.Done():
			t.Fatalf("mqtk sub never connected\n%s", b.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if code, _, stderr := runCmd(t, ctx, mpub, append(conn, "-i", "willer", "-t", "z", "-m", "x")...); code != 0 {
		t.Fatalf("takeover: exit %d\n%s", code, stderr)
	}
	if code := <-done; code != 3 {
		t.Errorf("mqtk sub after the takeover: exit %d, want 3 (--no-reconnect)", code)
	}
	code, out, stderr := runCmd(t, ctx, msub, append(conn, "-V", "mqttv5", "-t", "will/t", "-C", "1", "-W", "10",
		"-F", "%t|%p|%r|%C|%D|%E|%F|%P|%R")...)
	if code != 0 || out != "will/t|bye|1|ct|\x01\x02|300|1|a:b|r/t\n" {
		t.Errorf("will read back: exit %d, %q\n%s", code, out, stderr)
	}
}

// -D in the command `mqtk reply --exec` runs is that command's argument:
// its words are not joined as mqtk's -D would be.
func TestPropertyStopsAtExecArguments(t *testing.T) {
	streams, _, _ := ui.Test(nil)
	a := &app{io: streams, getenv: func(string) string { return "" }}
	args := []string{"reply", "-t", "svc", "-D", "connect", "user-property", "k", "v", "--exec", "grep", "-D", "skip", "x"}
	root := newRootCmd(a, args)
	got := withProperties(root, args)
	want := []string{"reply", "-t", "svc", "--property=connect" + propSep + "user-property" + propSep + "k" + propSep + "v",
		"--exec", "grep", "-D", "skip", "x"}
	if !slices.Equal(got, want) {
		t.Errorf("withProperties(%q)\n got %q\nwant %q", args, got, want)
	}
}
