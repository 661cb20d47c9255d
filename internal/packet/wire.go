package packet

import (
	"encoding/binary"
	"unicode/utf8"
)

// rd reads the body of one packet. Strings are cut from s, one string
// conversion of (a prefix of) the body made up front, so that decoding a
// packet with many string fields costs one allocation, not one per field;
// a string that lies beyond s is converted on its own.
//
// The first error sticks: later reads return zero values, and the decoder
// checks err once at the end of a section.
type rd struct {
	b   []byte
	s   string // the same bytes as b[:len(s)]
	pos int
	err error
}

func newRd(b []byte, headerLen int) rd {
	if headerLen > len(b) {
		headerLen = len(b)
	}
	return rd{b: b, s: string(b[:headerLen])}
}

func (r *rd) fail(code ReasonCode, format string, args ...any) {
	if r.err == nil {
		r.err = errorf(code, format, args...)
	}
}

func (r *rd) left() int { return len(r.b) - r.pos }

func (r *rd) short(what string) {
	r.fail(MalformedPacket, "packet ends inside its %s", what)
}

func (r *rd) u8(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.left() < 1 {
		r.short(what)
		return 0
	}
	v := r.b[r.pos]
	r.pos++
	return v
}

func (r *rd) u16(what string) uint16 {
	if r.err != nil {
		return 0
	}
	if r.left() < 2 {
		r.short(what)
		return 0
	}
	v := binary.BigEndian.Uint16(r.b[r.pos:])
	r.pos += 2
	return v
}

func (r *rd) u32(what string) uint32 {
	if r.err != nil {
		return 0
	}
	if r.left() < 4 {
		r.short(what)
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.pos:])
	r.pos += 4
	return v
}

// varint reads a variable byte integer [MQTT-1.5.5]: at most four bytes.
func (r *rd) varint(what string) uint32 {
	if r.err != nil {
		return 0
	}
	v, n, err := decodeVarint(r.b[r.pos:])
	if err != nil {
		if n == 0 {
			r.short(what)
		} else {
			r.fail(MalformedPacket, "%s: %v", what, err)
		}
		return 0
	}
	r.pos += n
	return v
}

// bin reads two-byte-length binary data [MQTT-1.5.6]. The result aliases
// the body.
func (r *rd) bin(what string) []byte {
	n := int(r.u16(what))
	if r.err != nil {
		return nil
	}
	if r.left() < n {
		r.short(what)
		return nil
	}
	v := r.b[r.pos : r.pos+n : r.pos+n]
	r.pos += n
	return v
}

// str reads a UTF-8 encoded string [MQTT-1.5.4]: well-formed UTF-8 without
// surrogates [MQTT-1.5.4-1] and without U+0000 [MQTT-1.5.4-2]; either
// fault makes the packet malformed.
func (r *rd) str(what string) string {
	n := int(r.u16(what))
	if r.err != nil {
		return ""
	}
	if r.left() < n {
		r.short(what)
		return ""
	}
	raw := r.b[r.pos : r.pos+n]
	if err := checkUTF8(raw); err != "" {
		r.fail(MalformedPacket, "%s %s", what, err)
		return ""
	}
	var v string
	if r.pos+n <= len(r.s) {
		v = r.s[r.pos : r.pos+n]
	} else {
		v = string(raw)
	}
	r.pos += n
	return v
}

// checkUTF8 returns what is wrong with b as an MQTT UTF-8 string, or "".
// utf8.Valid already refuses encoded surrogates (U+D800..U+DFFF).
func checkUTF8(b []byte) string {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == 0 {
			return "contains U+0000"
		}
		if c >= utf8.RuneSelf {
			if !utf8.Valid(b[i:]) {
				return "is not valid UTF-8"
			}
			for _, c := range b[i:] {
				if c == 0 {
					return "contains U+0000"
				}
			}
			return ""
		}
	}
	return ""
}

// checkUTF8String is checkUTF8 for the encoder's strings.
func checkUTF8String(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return "contains U+0000"
		}
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	return ""
}

// rest returns the remaining bytes (a PUBLISH payload, for instance).
func (r *rd) rest() []byte {
	v := r.b[r.pos:len(r.b):len(r.b)]
	r.pos = len(r.b)
	return v
}

// end makes trailing bytes an error: a packet whose content is shorter than
// its remaining length is malformed.
func (r *rd) end(what string) {
	if r.err == nil && r.left() != 0 {
		r.fail(MalformedPacket, "%d unexpected bytes after the %s", r.left(), what)
	}
}

var errVarintLong = &Error{Code: MalformedPacket, Msg: "variable byte integer longer than four bytes"}
var errVarintShort = &Error{Code: MalformedPacket, Msg: "variable byte integer cut short"}

// decodeVarint decodes a variable byte integer from the start of b. It
// returns the bytes used; n == 0 with an error means b ended inside it.
func decodeVarint(b []byte) (v uint32, n int, err error) {
	var mult uint32 = 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, errVarintShort
		}
		v += uint32(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
		mult *= 128
	}
	// [MQTT-1.5.5-1] at most four bytes.
	return 0, 4, errVarintLong
}

func varintLen(v uint32) int {
	switch {
	case v < 128:
		return 1
	case v < 16384:
		return 2
	case v < 2097152:
		return 3
	}
	return 4
}

func appendVarint(dst []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		dst = append(dst, c)
		if v == 0 {
			return dst
		}
	}
}

func appendU16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendStr(dst []byte, s string) []byte {
	dst = appendU16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBin(dst []byte, b []byte) []byte {
	dst = appendU16(dst, uint16(len(b)))
	return append(dst, b...)
}

// encErr collects the first encoding error, as rd does for decoding.
type encErr struct{ err error }

func (e *encErr) fail(code ReasonCode, format string, args ...any) {
	if e.err == nil {
		e.err = errorf(code, format, args...)
	}
}

// str checks a string the encoder is about to write.
func (e *encErr) str(what, s string) {
	if len(s) > 65535 {
		e.fail(MalformedPacket, "%s is %d bytes, over MQTT's limit of 65535", what, len(s))
		return
	}
	if msg := checkUTF8String(s); msg != "" {
		e.fail(MalformedPacket, "%s %s", what, msg)
	}
}

func (e *encErr) bin(what string, b []byte) {
	if len(b) > 65535 {
		e.fail(MalformedPacket, "%s is %d bytes, over MQTT's limit of 65535", what, len(b))
	}
}

// ParseVarint decodes the variable byte integer at the start of b (a
// remaining length, for a stream splitter). n == 0 with an error means b
// ends inside it; n > 0 with an error means it is longer than four bytes.
func ParseVarint(b []byte) (v uint32, n int, err error) { return decodeVarint(b) }
