package packet

import (
	"bytes"
	"errors"
	"testing"
)

// Exact-byte tests of the decoder's validation: each input breaks one
// rule, and the decoder must refuse it with the reason code the
// specification gives for that rule.

// pk returns a packet: first byte, remaining length, then the parts.
func pk(first byte, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	return append(appendVarint([]byte{first}, uint32(len(body))), body...)
}

// s is a two-byte-length string (or binary) field.
func s(v string) []byte { return appendStr(nil, v) }

// b is raw bytes.
func b(v ...byte) []byte { return v }

// pr is an MQTT 5 property block: its length, then the properties.
func pr(props ...[]byte) []byte {
	body := bytes.Join(props, nil)
	return append(appendVarint(nil, uint32(len(body))), body...)
}

// user is one user property.
func user(k, v string) []byte { return bytes.Join([][]byte{{0x26}, s(k), s(v)}, nil) }

// connect5 is a valid MQTT 5 CONNECT with the given flags, properties and
// payload after the client identifier "c".
func connect5(flags byte, props []byte, rest ...[]byte) []byte {
	return pk(0x10, append([][]byte{s("MQTT"), b(5, flags, 0, 60), props, s("c")}, rest...)...)
}

// connect311 is the MQTT 3.1.1 equivalent.
func connect311(flags byte, rest ...[]byte) []byte {
	return pk(0x10, append([][]byte{s("MQTT"), b(4, flags, 0, 60), s("c")}, rest...)...)
}

type validateCase struct {
	name string
	v    Version
	in   []byte
	code ReasonCode
	spec string // the statement broken
}

var validateCases = []validateCase{
	// Fixed header flags: each type but PUBLISH has fixed flags.
	{"connect flags", V5, append([]byte{0x11}, connect5(0x02, pr())[1:]...), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"connack flags", V5, pk(0x21, b(0, 0), pr()), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"puback flags", V5, pk(0x41, b(0, 1)), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"pubrec flags", V5, pk(0x52, b(0, 1)), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"pubrel flags 0000", V5, pk(0x60, b(0, 1)), MalformedPacket, "[MQTT-3.6.1-1]"},
	{"pubrel flags 0011 v3.1.1", V311, pk(0x63, b(0, 1)), MalformedPacket, "3.1.1 [MQTT-3.6.1-1]"},
	{"pubcomp flags", V5, pk(0x78, b(0, 1)), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"subscribe flags 0000", V5, pk(0x80, b(0, 1), pr(), s("a"), b(0)), MalformedPacket, "[MQTT-3.8.1-1]"},
	{"subscribe flags 0000 v3.1.1", V311, pk(0x80, b(0, 1), s("a"), b(0)), MalformedPacket, "3.1.1 [MQTT-3.8.1-1]"},
	{"suback flags", V5, pk(0x91, b(0, 1), pr(), b(0)), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"unsubscribe flags 0000", V5, pk(0xA0, b(0, 1), pr(), s("a")), MalformedPacket, "[MQTT-3.10.1-1]"},
	{"unsubscribe flags 0110 v3.1.1", V311, pk(0xA6, b(0, 1), s("a")), MalformedPacket, "3.1.1 [MQTT-3.10.1-1]"},
	{"unsuback flags", V5, pk(0xB4, b(0, 1), pr(), b(0)), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"pingreq flags", V311, pk(0xC1), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"pingresp flags", V5, pk(0xD2), MalformedPacket, "[MQTT-2.1.3-1]"},
	{"disconnect flags", V5, pk(0xE8), MalformedPacket, "[MQTT-3.14.1-1]"},
	{"disconnect flags v3.1.1", V311, pk(0xE1), MalformedPacket, "3.1.1 [MQTT-3.14.1-1]"},
	{"auth flags", V5, pk(0xF1, b(0x18), pr()), MalformedPacket, "[MQTT-3.15.1-1]"},
	{"reserved type 0", V5, pk(0x00), MalformedPacket, "2.1.2: type 0 is reserved"},

	// CONNECT.
	{"connect reserved flag", V5, connect5(0x03, pr()), MalformedPacket, "[MQTT-3.1.2-3]"},
	{"connect reserved flag v3.1.1", V311, connect311(0x03), MalformedPacket, "3.1.1 [MQTT-3.1.2-3]"},
	{"will qos 3", V5, connect5(0x1E, pr(), pr(), s("w"), s("m")), MalformedPacket, "[MQTT-3.1.2-12]"},
	{"will qos without will", V5, connect5(0x0A, pr()), MalformedPacket, "[MQTT-3.1.2-11]"},
	{"will retain without will", V311, connect311(0x22), MalformedPacket, "[MQTT-3.1.2-13]"},
	{"password without user name v3.1.1", V311, connect311(0x42, s("p")), MalformedPacket, "3.1.1 [MQTT-3.1.2-22]"},
	{"protocol name MQTX", V5, pk(0x10, s("MQTX"), b(5, 2, 0, 60), pr(), s("c")), UnsupportedProtocolVersion, "[MQTT-3.1.2-1]"},
	{"protocol level 6", V5, pk(0x10, s("MQTT"), b(6, 2, 0, 60), pr(), s("c")), UnsupportedProtocolVersion, "[MQTT-3.1.2-2]"},
	{"protocol level 3 named MQTT", V311, pk(0x10, s("MQTT"), b(3, 2, 0, 60), s("c")), UnsupportedProtocolVersion, "[MQTT-3.1.2-2]"},
	{"protocol level 4 named MQIsdp", V311, pk(0x10, s("MQIsdp"), b(4, 2, 0, 60), s("c")), UnsupportedProtocolVersion, "[MQTT-3.1.2-1]"},
	{"client id invalid utf-8", V5, pk(0x10, s("MQTT"), b(5, 2, 0, 60), pr(), s("\xC3\x28")), MalformedPacket, "[MQTT-1.5.4-1]"},
	{"client id surrogate", V311, pk(0x10, s("MQTT"), b(4, 2, 0, 60), s("a\xED\xA0\x80")), MalformedPacket, "[MQTT-1.5.4-1]"},
	{"client id U+0000", V5, pk(0x10, s("MQTT"), b(5, 2, 0, 60), pr(), s("a\x00b")), MalformedPacket, "[MQTT-1.5.4-2]"},
	{"will topic U+0000", V311, connect311(0x06, s("w\x00"), s("m")), MalformedPacket, "[MQTT-1.5.4-2]"},
	{"user name invalid utf-8", V311, connect311(0x82, s("\xFF")), MalformedPacket, "[MQTT-1.5.4-1]"},
	{"connect property not allowed", V5, connect5(0x02, pr(b(0x23, 0, 1))), MalformedPacket, "2.2.2.2: topic-alias in CONNECT"},
	{"will property not allowed", V5, connect5(0x06, pr(), pr(b(0x11, 0, 0, 0, 1)), s("w"), s("m")), MalformedPacket, "2.2.2.2: session-expiry in will properties"},
	{"connect receive maximum 0", V5, connect5(0x02, pr(b(0x21, 0, 0))), ProtocolError, "3.1.2.11.3"},
	{"connect maximum packet size 0", V5, connect5(0x02, pr(b(0x27, 0, 0, 0, 0))), ProtocolError, "3.1.2.11.4"},
	{"connect request problem information 2", V5, connect5(0x02, pr(b(0x17, 2))), ProtocolError, "3.1.2.11.7"},
	{"connect duplicate session expiry", V5, connect5(0x02, pr(b(0x11, 0, 0, 0, 1), b(0x11, 0, 0, 0, 2))), ProtocolError, "3.1.2.11.2"},
	{"connect authentication data without method", V5, connect5(0x02, pr(b(0x16), s("x"))), ProtocolError, "3.1.2.11.10"},
	{"connect user property invalid utf-8", V5, connect5(0x02, pr(user("k", "\xC0\x80"))), MalformedPacket, "[MQTT-1.5.4-1]"},
	{"connect user property U+0000", V5, connect5(0x02, pr(user("k\x00", "v"))), MalformedPacket, "[MQTT-1.5.4-2]"},
	{"connect trailing byte", V311, connect311(0x02, b(0)), MalformedPacket, "[MQTT-3.1.4-1]: not the format of 3.1"},
	{"connect ends in protocol name", V5, pk(0x10, b(0, 4, 'M')), MalformedPacket, "[MQTT-3.1.4-1]"},
	{"connect ends before will", V5, connect5(0x06, pr()), MalformedPacket, "[MQTT-3.1.4-1]"},
	{"connect ends before user name", V311, connect311(0x82), MalformedPacket, "[MQTT-3.1.4-1]"},
	{"connect ends inside password", V311, connect311(0xC2, s("u"), b(0, 5, 'p')), MalformedPacket, "[MQTT-3.1.4-1]"},

	// CONNACK.
	{"connack reserved flags", V5, pk(0x20, b(0x02, 0), pr()), MalformedPacket, "[MQTT-3.2.2-1]"},
	{"connack reserved flags v3.1.1", V311, pk(0x20, b(0x80, 0)), MalformedPacket, "3.1.1 3.2.2.1"},
	{"connack session present with refusal", V5, pk(0x20, b(1, 0x87), pr()), ProtocolError, "[MQTT-3.2.2-6]"},
	{"connack receive maximum 0", V5, pk(0x20, b(0, 0), pr(b(0x21, 0, 0))), ProtocolError, "3.2.2.3.3"},
	{"connack maximum qos 2", V5, pk(0x20, b(0, 0), pr(b(0x24, 2))), ProtocolError, "3.2.2.3.4"},
	{"connack maximum packet size 0", V5, pk(0x20, b(0, 0), pr(b(0x27, 0, 0, 0, 0))), ProtocolError, "3.2.2.3.6"},
	{"connack property not allowed", V5, pk(0x20, b(0, 0), pr(b(0x17, 1))), MalformedPacket, "2.2.2.2: request-problem-information in CONNACK"},
	{"connack trailing byte", V5, pk(0x20, b(0, 0), pr(), b(0)), MalformedPacket, "3.2"},
	{"connack trailing byte v3.1.1", V311, pk(0x20, b(0, 0, 0)), MalformedPacket, "3.1.1 3.2"},
	{"connack cut short", V5, pk(0x20, b(0)), MalformedPacket, "3.2"},

	// PUBLISH.
	{"publish qos 3", V5, pk(0x36, s("a"), b(0, 1), pr()), MalformedPacket, "[MQTT-3.3.1-4]"},
	{"publish dup at qos 0", V311, pk(0x38, s("a")), MalformedPacket, "[MQTT-3.3.1-2]"},
	{"publish packet id 0", V5, pk(0x32, s("a"), b(0, 0), pr()), ProtocolError, "[MQTT-2.2.1-3]"},
	{"publish packet id 0 v3.1.1", V311, pk(0x34, s("a"), b(0, 0)), ProtocolError, "[MQTT-2.2.1-3]"},
	{"publish topic +", V5, pk(0x30, s("a/+"), pr()), TopicNameInvalid, "[MQTT-3.3.2-2]"},
	{"publish topic # v3.1.1", V311, pk(0x30, s("#")), TopicNameInvalid, "[MQTT-3.3.2-2]"},
	{"publish empty topic v3.1.1", V311, pk(0x30, s(""), b('x')), TopicNameInvalid, "[MQTT-4.7.3-1]"},
	{"publish empty topic without alias", V5, pk(0x30, s(""), pr(), b('x')), ProtocolError, "3.3.2.3.4"},
	{"publish topic invalid utf-8", V311, pk(0x30, s("\xFF")), MalformedPacket, "[MQTT-1.5.4-1]"},
	{"publish topic U+0000", V5, pk(0x30, s("a\x00"), pr()), MalformedPacket, "[MQTT-1.5.4-2]"},
	{"publish topic alias 0", V5, pk(0x30, s("a"), pr(b(0x23, 0, 0))), TopicAliasInvalid, "[MQTT-3.3.2-8]"},
	{"publish duplicate payload format", V5, pk(0x30, s("a"), pr(b(0x01, 0), b(0x01, 1))), ProtocolError, "3.3.2.3.2"},
	{"publish duplicate topic alias", V5, pk(0x30, s("a"), pr(b(0x23, 0, 1), b(0x23, 0, 2))), ProtocolError, "3.3.2.3.4"},
	{"publish payload format 2", V5, pk(0x30, s("a"), pr(b(0x01, 2))), ProtocolError, "3.3.2.3.2"},
	{"publish response topic with wildcard", V5, pk(0x30, s("a"), pr(b(0x08), s("r/#"))), ProtocolError, "[MQTT-3.3.2-14]"},
	{"publish subscription identifier 0", V5, pk(0x30, s("a"), pr(b(0x0B, 0))), ProtocolError, "3.3.2.3.8"},
	{"publish property not allowed", V5, pk(0x30, s("a"), pr(b(0x11, 0, 0, 0, 1))), MalformedPacket, "2.2.2.2: session-expiry in PUBLISH"},
	{"publish unknown property", V5, pk(0x30, s("a"), pr(b(0x04, 0))), MalformedPacket, "2.2.2.2: no property 0x04"},
	{"publish user property invalid utf-8", V5, pk(0x30, s("a"), pr(user("\xED\xBF\xBF", "v"))), MalformedPacket, "[MQTT-1.5.4-1]"},
	{"publish user property U+0000", V5, pk(0x30, s("a"), pr(user("k", "\x00"))), MalformedPacket, "[MQTT-1.5.4-2]"},
	{"publish ends in topic", V311, pk(0x30, b(0, 10, 'a', 'b')), MalformedPacket, "1.5.4: string longer than the packet"},
	{"publish ends in packet id", V311, pk(0x32, s("a"), b(0)), MalformedPacket, "3.3.2.2"},
	{"publish property length past the end", V5, pk(0x30, s("a"), b(5, 0x01)), MalformedPacket, "2.2.2.1"},
	{"publish property cut short", V5, pk(0x30, s("a"), b(2, 0x02, 0)), MalformedPacket, "2.2.2.2"},
	{"publish property length of 5 bytes", V5, pk(0x30, s("a"), b(0x80, 0x80, 0x80, 0x80, 0x01)), MalformedPacket, "[MQTT-1.5.5-1]"},
	{"publish subscription identifier of 5 bytes", V5, pk(0x30, s("a"), pr(b(0x0B, 0x81, 0x80, 0x80, 0x80, 0x01))), MalformedPacket, "[MQTT-1.5.5-1]"},

	// Acknowledgements.
	{"puback packet id 0", V5, pk(0x40, b(0, 0)), ProtocolError, "[MQTT-2.2.1-3]"},
	{"puback code 0x92", V5, pk(0x40, b(0, 1, 0x92)), ProtocolError, "3.4.2.1"},
	{"pubrec code 0x01", V5, pk(0x50, b(0, 1, 0x01)), ProtocolError, "3.5.2.1"},
	{"pubrel code 0x10", V5, pk(0x62, b(0, 1, 0x10)), ProtocolError, "3.6.2.1"},
	{"pubcomp code 0x80", V5, pk(0x70, b(0, 1, 0x80)), ProtocolError, "3.7.2.1"},
	{"puback property not allowed", V5, pk(0x40, b(0, 1, 0), pr(b(0x01, 1))), MalformedPacket, "2.2.2.2: payload-format in PUBACK"},
	{"puback duplicate reason string", V5, pk(0x40, b(0, 1, 0x80), pr(b(0x1F), s("a"), b(0x1F), s("b"))), ProtocolError, "3.4.2.2.2"},
	{"puback trailing byte v3.1.1", V311, pk(0x40, b(0, 1, 0)), MalformedPacket, "3.1.1 3.4.1: remaining length 2"},
	{"pubrel trailing byte", V5, pk(0x62, b(0, 1, 0), pr(), b(0)), MalformedPacket, "3.6"},
	{"puback cut short", V311, pk(0x40, b(0)), MalformedPacket, "3.4.2"},
	{"suback code 0x03", V5, pk(0x90, b(0, 1), pr(), b(0, 0x03)), ProtocolError, "3.9.3"},
	{"suback code 0x87 v3.1.1", V311, pk(0x90, b(0, 1, 0x87)), ProtocolError, "3.1.1 [MQTT-3.9.3-2]"},
	{"suback without codes", V5, pk(0x90, b(0, 1), pr()), ProtocolError, "3.9.3"},
	{"unsuback code 0x01", V5, pk(0xB0, b(0, 1), pr(), b(0x01)), ProtocolError, "3.11.3"},
	{"unsuback without codes", V5, pk(0xB0, b(0, 1), pr()), ProtocolError, "3.11.3"},
	{"unsuback trailing byte v3.1.1", V311, pk(0xB0, b(0, 1, 0)), MalformedPacket, "3.1.1 3.11.1: remaining length 2"},

	// SUBSCRIBE and UNSUBSCRIBE.
	{"subscribe packet id 0", V5, pk(0x82, b(0, 0), pr(), s("a"), b(0)), ProtocolError, "[MQTT-2.2.1-3]"},
	{"subscribe without filters", V5, pk(0x82, b(0, 1), pr()), ProtocolError, "3.8.3 [MQTT-3.8.3-2]"},
	{"subscribe without filters v3.1.1", V311, pk(0x82, b(0, 1)), ProtocolError, "3.1.1 [MQTT-3.8.3-3]"},
	{"subscribe qos 3", V311, pk(0x82, b(0, 1), s("a"), b(3)), MalformedPacket, "3.1.1 [MQTT-3-8.3-4]"},
	{"subscribe retain handling 3", V5, pk(0x82, b(0, 1), pr(), s("a"), b(0x30)), ProtocolError, "3.8.3.1"},
	{"subscribe reserved option bits", V5, pk(0x82, b(0, 1), pr(), s("a"), b(0x40)), MalformedPacket, "[MQTT-3.8.3-5]"},
	{"subscribe reserved option bits v3.1.1", V311, pk(0x82, b(0, 1), s("a"), b(0x04)), MalformedPacket, "3.1.1 [MQTT-3-8.3-4]"},
	{"subscribe no-local on $share", V5, pk(0x82, b(0, 1), pr(), s("$share/g/t"), b(0x04)), ProtocolError, "[MQTT-3.8.3-4]"},
	{"subscribe subscription identifier 0", V5, pk(0x82, b(0, 1), pr(b(0x0B, 0)), s("a"), b(0)), ProtocolError, "3.8.2.1.2"},
	{"subscribe two subscription identifiers", V5, pk(0x82, b(0, 1), pr(b(0x0B, 1), b(0x0B, 2)), s("a"), b(0)), ProtocolError, "3.8.2.1.2"},
	{"subscribe property not allowed", V5, pk(0x82, b(0, 1), pr(b(0x1F), s("r")), s("a"), b(0)), MalformedPacket, "2.2.2.2: reason-string in SUBSCRIBE"},
	{"subscribe filter invalid utf-8", V311, pk(0x82, b(0, 1), s("\xC3"), b(0)), MalformedPacket, "[MQTT-1.5.4-1]"},
	{"subscribe filter without options", V5, pk(0x82, b(0, 1), pr(), s("a")), MalformedPacket, "3.8.3"},
	{"unsubscribe packet id 0", V311, pk(0xA2, b(0, 0), s("a")), ProtocolError, "[MQTT-2.2.1-3]"},
	{"unsubscribe without filters", V5, pk(0xA2, b(0, 1), pr()), ProtocolError, "3.10.3 [MQTT-3.10.3-2]"},
	{"unsubscribe without filters v3.1.1", V311, pk(0xA2, b(0, 1)), ProtocolError, "3.1.1 [MQTT-3.10.3-2]"},
	{"unsubscribe filter U+0000", V5, pk(0xA2, b(0, 1), pr(), s("a\x00")), MalformedPacket, "[MQTT-1.5.4-2]"},
	{"unsubscribe filter cut short", V311, pk(0xA2, b(0, 1, 0, 3, 'a')), MalformedPacket, "3.10.3"},

	// PINGREQ, PINGRESP, DISCONNECT, AUTH.
	{"pingreq with a body", V311, pk(0xC0, b(0)), MalformedPacket, "3.12.1: no body"},
	{"pingresp with a body", V5, pk(0xD0, b(0)), MalformedPacket, "3.13.1: no body"},
	{"disconnect with a body v3.1.1", V311, pk(0xE0, b(0)), MalformedPacket, "3.1.1 3.14.1: no body"},
	{"disconnect code 0x01", V5, pk(0xE0, b(0x01)), ProtocolError, "3.14.2.1"},
	{"disconnect property not allowed", V5, pk(0xE0, b(0), pr(b(0x12), s("id"))), MalformedPacket, "2.2.2.2: assigned-client-identifier in DISCONNECT"},
	{"disconnect trailing byte", V5, pk(0xE0, b(0), pr(), b(0)), MalformedPacket, "3.14"},
	{"auth under v3.1.1", V311, pk(0xF0), MalformedPacket, "3.1.1 2.2.1: type 15 is reserved"},
	{"auth code 0x01", V5, pk(0xF0, b(0x01)), ProtocolError, "[MQTT-3.15.2-1]"},
	{"auth property not allowed", V5, pk(0xF0, b(0x18), pr(b(0x11, 0, 0, 0, 1))), MalformedPacket, "2.2.2.2: session-expiry in AUTH"},
	{"auth trailing byte", V5, pk(0xF0, b(0x18), pr(), b(0)), MalformedPacket, "3.15"},

	// The remaining length itself.
	{"remaining length of 5 bytes", V5, b(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), MalformedPacket, "[MQTT-1.5.5-1]"},
	{"remaining length of 5 bytes v3.1.1", V311, b(0xC0, 0x80, 0x80, 0x80, 0x80, 0x00), MalformedPacket, "[MQTT-1.5.5-1]"},
}

func TestValidate(t *testing.T) {
	for _, tc := range validateCases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewReader(bytes.NewReader(tc.in), 0).ReadPacket(tc.v)
			if err == nil {
				t.Fatalf("% x (v%s) decoded as %s; want code 0x%02X (%s)", tc.in, tc.v, Describe(p, tc.v), byte(tc.code), tc.spec)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("% x (v%s): %v is not a *packet.Error; want code 0x%02X (%s)", tc.in, tc.v, err, byte(tc.code), tc.spec)
			}
			if got := CodeOf(err); got != tc.code {
				t.Errorf("% x (v%s): code 0x%02X (%v), want 0x%02X (%s)", tc.in, tc.v, byte(got), err, byte(tc.code), tc.spec)
			}
			// Only a CONNECT of an unsupported protocol comes back with
			// the packet, so that the server can answer in its version.
			if tc.code == UnsupportedProtocolVersion {
				c, ok := p.(*Connect)
				if !ok || c.ProtocolName == "" || c.Version == 0 {
					t.Errorf("% x: got %#v, want the *Connect naming its protocol", tc.in, p)
				}
			} else if p != nil && p.Type() != TypeConnect {
				t.Errorf("% x: a %s came back with the error", tc.in, p.Type())
			}
		})
	}
}

// TestValidateCasesAreMinimal checks that each validation case breaks its
// rule and nothing else: the same bytes with the fault repaired decode.
// It does this for the few cases where the repair is one byte, as a guard
// against cases that fail for a reason other than the one they name.
func TestValidateCasesAreMinimal(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    Version
		in   []byte
	}{
		{"connect", V5, connect5(0x02, pr())},
		{"connect v3.1.1", V311, connect311(0x02)},
		{"connect will", V5, connect5(0x0E, pr(), pr(), s("w"), s("m"))},
		{"connect password v3.1.1", V311, connect311(0xC2, s("u"), s("p"))},
		{"publish", V5, pk(0x32, s("a"), b(0, 1), pr())},
		{"publish alias", V5, pk(0x30, s(""), pr(b(0x23, 0, 1)), b('x'))},
		{"subscribe", V5, pk(0x82, b(0, 1), pr(), s("$share/g/t"), b(0x2A))},
		{"subscribe v3.1.1", V311, pk(0x82, b(0, 1), s("a"), b(2))},
		{"puback", V5, pk(0x40, b(0, 1, 0x10), pr(b(0x1F), s("a")))},
		{"suback v3.1.1", V311, pk(0x90, b(0, 1, 0x80))},
		{"pubrel", V5, pk(0x62, b(0, 1, 0x92), pr())},
		{"auth", V5, pk(0xF0, b(0x18), pr(b(0x15), s("m")))},
	} {
		if _, err := NewReader(bytes.NewReader(tc.in), 0).ReadPacket(tc.v); err != nil {
			t.Errorf("%s: the valid form % x fails: %v", tc.name, tc.in, err)
		}
	}
}

// TestAckReasonCodes tries every byte as the reason code of each
// acknowledgement and accepts exactly the codes its table lists.
func TestAckReasonCodes(t *testing.T) {
	for _, tc := range []struct {
		first byte
		body  func(c byte) []byte
		valid []ReasonCode
		spec  string
	}{
		{0x40, func(c byte) []byte { return b(0, 1, c) }, pubackCodes, "3.4.2.1"},
		{0x50, func(c byte) []byte { return b(0, 1, c) }, pubackCodes, "3.5.2.1"},
		{0x62, func(c byte) []byte { return b(0, 1, c) }, pubrelCodes, "3.6.2.1"},
		{0x70, func(c byte) []byte { return b(0, 1, c) }, pubrelCodes, "3.7.2.1"},
		{0x90, func(c byte) []byte { return b(0, 1, 0, c) }, subackCodes5, "3.9.3"},
		{0xB0, func(c byte) []byte { return b(0, 1, 0, c) }, unsubackCodes, "3.11.3"},
		{0xE0, func(c byte) []byte { return b(c) }, disconnectCode, "3.14.2.1"},
		{0xF0, func(c byte) []byte { return b(c) }, authCodes, "3.15.2.1"},
	} {
		for c := range 256 {
			in := pk(tc.first, tc.body(byte(c)))
			_, err := NewReader(bytes.NewReader(in), 0).ReadPacket(V5)
			want := false
			for _, v := range tc.valid {
				want = want || byte(v) == byte(c)
			}
			switch {
			case want && err != nil:
				t.Errorf("%s: code 0x%02X refused: %v", tc.spec, c, err)
			case !want && CodeOf(err) != ProtocolError:
				t.Errorf("%s: code 0x%02X: got %v, want a protocol error", tc.spec, c, err)
			}
		}
	}
	// MQTT 3.1.1 SUBACK return codes [MQTT-3.9.3-2].
	for c := range 256 {
		_, err := NewReader(bytes.NewReader(pk(0x90, b(0, 1, byte(c)))), 0).ReadPacket(V311)
		want := c == 0 || c == 1 || c == 2 || c == 0x80
		if want != (err == nil) {
			t.Errorf("3.1.1 SUBACK code 0x%02X: got %v", c, err)
		}
	}
}
