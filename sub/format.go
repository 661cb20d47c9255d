package sub

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// Format is a compiled mosquitto_sub -F format string. It is compiled once
// and then applied to every message without further parsing, which matters
// at tens of thousands of messages per second.
type Format struct {
	segs []segment
	// Pretty lays out %j and %J as mosquitto_sub --pretty does (cJSON's
	// formatted output: one member per line, tab-indented, ":\t" after
	// each key, arrays on one line).
	Pretty bool
}

// segment is either literal text or one % or @ conversion.
type segment struct {
	lit  []byte
	verb byte // % verb, or 0 for literal
	time byte // @ conversion (strftime letter), or 0
	zero bool
	left bool
	wid  int
	prec int  // -1 when not given
	sep  byte // %x/%X: separator between groups of prec bytes (mosquitto 2.1's %.2:x), 0 for none
}

// Which verbs honour which modifiers, as mosquitto_sub documents them.
const (
	widthVerbs = "ACEFIlmpRStxXfd"
	precVerbs  = "CIRtfd"
	zeroVerbs  = "AEFlmSXxfd"
	allVerbs   = "%ACDEFIjJlmPpqRrStUxXfd"
)

// CompileFormat parses a mosquitto_sub format string: % conversions with
// optional flags (0, -), width and precision, @ strftime conversions, and
// \ escapes (\\ \0 \a \e \n \r \t \v).
func CompileFormat(s string) (*Format, error) {
	f := &Format{}
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			f.segs = append(f.segs, segment{lit: lit})
			lit = nil
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("format ends with a lone '\\': write '\\\\' for a backslash")
			}
			i++
			e, ok := map[byte]byte{'\\': '\\', '0': 0, 'a': '\a', 'e': 0x1b, 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v'}[s[i]]
			if !ok {
				return nil, fmt.Errorf("invalid escape '\\%c' in format: use \\\\ \\0 \\a \\e \\n \\r \\t or \\v", s[i])
			}
			lit = append(lit, e)
		case '@':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("format ends with a lone '@': write '@@' for an @")
			}
			i++
			if s[i] == '@' {
				lit = append(lit, '@')
				continue
			}
			if !strings.ContainsRune(strftimeLetters, rune(s[i])) {
				return nil, fmt.Errorf("invalid time conversion '@%c' in format", s[i])
			}
			flush()
			f.segs = append(f.segs, segment{time: s[i], prec: -1})
		case '%':
			seg := segment{prec: -1}
			i++
			for ; i < len(s) && (s[i] == '0' || s[i] == '-'); i++ {
				if s[i] == '0' {
					seg.zero = true
				} else {
					seg.left = true
				}
			}
			start := i
			for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			}
			if i > start {
				seg.wid, _ = strconv.Atoi(s[start:i])
			}
			if i < len(s) && s[i] == '.' {
				i++
				start = i
				for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
				}
				seg.prec, _ = strconv.Atoi(s[start:i])
				// mosquitto 2.1's grouped hex: %.2:x writes the payload's
				// hex in groups of 2 bytes separated by ':'.
				if i+1 < len(s) && (s[i+1] == 'x' || s[i+1] == 'X') && !strings.ContainsRune(allVerbs, rune(s[i])) && s[i] != '\\' {
					if seg.prec < 1 {
						return nil, fmt.Errorf("grouped hex %%.N%cx needs a group size N of at least 1", s[i])
					}
					seg.sep = s[i]
					i++
				}
			}
			if i >= len(s) {
				return nil, fmt.Errorf("format ends inside a %% conversion: write '%%%%' for a percent sign")
			}
			seg.verb = s[i]
			if !strings.ContainsRune(allVerbs, rune(seg.verb)) {
				return nil, fmt.Errorf("invalid format specifier '%c': see --help for %%t %%p %%x and the rest", seg.verb)
			}
			if seg.verb == '%' {
				lit = append(lit, '%')
				continue
			}
			if !strings.ContainsRune(widthVerbs, rune(seg.verb)) {
				seg.wid = 0
			}
			if !strings.ContainsRune(precVerbs, rune(seg.verb)) && seg.sep == 0 {
				seg.prec = -1
			}
			if !strings.ContainsRune(zeroVerbs, rune(seg.verb)) || seg.left {
				seg.zero = false
			}
			flush()
			f.segs = append(f.segs, seg)
		default:
			lit = append(lit, c)
		}
	}
	flush()
	return f, nil
}

// FormatEnv is what a Format needs besides the message.
type FormatEnv struct {
	// Escape makes output safe for a terminal: invalid UTF-8 and control
	// characters in %t %p %C %D %P %R are written as \xNN, and in %j and
	// %J as JSON \u00XX escapes. Without it (a pipe) bytes pass as
	// mosquitto_sub passes them.
	Escape bool
	// Warn receives a complaint about one message (%J with a payload that
	// is not JSON); nil drops it.
	Warn func(string)

	pretty bool // from Format.Pretty
}

// Append writes m formatted by f to dst and returns the extended slice.
// now is the time used by %I, %U, %j and @ conversions.
func (f *Format) Append(dst []byte, m *mqttconn.Message, now time.Time, env FormatEnv) []byte {
	env.pretty = f.Pretty
	for i := range f.segs {
		s := &f.segs[i]
		switch {
		case s.lit != nil:
			dst = append(dst, s.lit...)
		case s.time != 0:
			dst = strftime(dst, s.time, now)
		default:
			dst = s.appendVerb(dst, m, now, env)
		}
	}
	return dst
}

func (s *segment) appendVerb(dst []byte, m *mqttconn.Message, now time.Time, env FormatEnv) []byte {
	var v []byte
	switch s.verb {
	case 't':
		v = []byte(m.Topic)
		if env.Escape {
			v = escapeBinary(v)
		}
	case 'p':
		v = m.Payload
		if env.Escape {
			v = escapeBinary(v)
		}
		if s.wid > 0 && len(v) > s.wid {
			// mosquitto_sub writes exactly width bytes of a longer payload.
			v = v[:runeBoundary(v, s.wid)]
		}
	case 'x', 'X':
		if s.sep != 0 {
			for i := 0; i < len(m.Payload); i += s.prec {
				if i > 0 {
					v = append(v, s.sep)
				}
				v = hexAppend(v, m.Payload[i:min(i+s.prec, len(m.Payload))], s.verb == 'X')
			}
			// The precision was the group size, not a cut.
			return (&segment{zero: s.zero, left: s.left, wid: s.wid, prec: -1}).pad(dst, v)
		}
		v = hexAppend(nil, m.Payload, s.verb == 'X')
	case 'f', 'd':
		// mosquitto 2.1: the payload as one IEEE 754 number, 4 bytes for
		// %f and 8 for %d, in the byte order of the machines that send
		// them (little-endian); any other length prints nothing.
		v = appendIEEE(nil, m.Payload, s.verb == 'd', s.prec)
		return (&segment{zero: s.zero, left: s.left, wid: s.wid, prec: -1}).pad(dst, v)
	case 'l':
		v = strconv.AppendInt(nil, int64(len(m.Payload)), 10)
	case 'q':
		return append(dst, '0'+m.QoS)
	case 'r':
		return append(dst, boolDigit(m.Retain))
	case 'm':
		v = strconv.AppendUint(nil, uint64(m.PacketID), 10)
	case 'I':
		v = now.AppendFormat(nil, "2006-01-02T15:04:05-0700")
	case 'U':
		v = fmt.Appendf(nil, "%d.%09d", now.Unix(), now.Nanosecond())
	case 'j', 'J':
		if env.pretty {
			return appendPrettyJSON(dst, appendMosquittoJSON(nil, m, now, s.verb == 'J', env))
		}
		return appendMosquittoJSON(dst, m, now, s.verb == 'J', env)
	case 'A':
		if m.TopicAlias != 0 {
			v = strconv.AppendUint(nil, uint64(m.TopicAlias), 10)
		}
	case 'C':
		v = []byte(m.ContentType)
		if env.Escape {
			v = escapeBinary(v)
		}
	case 'D':
		v = m.CorrelationData
		if env.Escape {
			v = escapeBinary(v)
		}
	case 'E':
		if m.MessageExpiry != nil {
			v = strconv.AppendUint(nil, uint64(*m.MessageExpiry), 10)
		}
	case 'F':
		if m.PayloadFormat != nil {
			v = strconv.AppendUint(nil, uint64(*m.PayloadFormat), 10)
		}
	case 'P':
		for i, p := range m.UserProperties {
			if i > 0 {
				v = append(v, ' ')
			}
			v = append(append(append(v, p.Key...), ':'), p.Value...)
		}
		if env.Escape {
			v = escapeBinary(v)
		}
	case 'R':
		// mosquitto_sub prints nothing at all, not even padding, for an
		// absent response topic.
		if m.ResponseTopic == "" {
			return dst
		}
		v = []byte(m.ResponseTopic)
		if env.Escape {
			v = escapeBinary(v)
		}
	case 'S':
		for i, id := range m.SubscriptionIDs {
			if i > 0 {
				v = append(v, ',')
			}
			v = strconv.AppendInt(v, int64(id), 10)
		}
	}
	return s.pad(dst, v)
}

// pad applies precision (maximum width), then width with blank or zero
// padding. Widths count bytes, as mosquitto_sub's do, so output lines up
// byte for byte with the tool it replaces; the one difference is that a
// cut never splits a UTF-8 sequence (mosquitto_sub's can).
func (s *segment) pad(dst, v []byte) []byte {
	if s.prec >= 0 && len(v) > s.prec {
		v = v[:runeBoundary(v, s.prec)]
	}
	fill := s.wid - len(v)
	if fill <= 0 {
		return append(dst, v...)
	}
	if s.left {
		dst = append(dst, v...)
		return append(dst, bytes.Repeat([]byte{' '}, fill)...)
	}
	c := byte(' ')
	if s.zero {
		c = '0'
	}
	dst = append(dst, bytes.Repeat([]byte{c}, fill)...)
	return append(dst, v...)
}

// runeBoundary returns the largest n <= max such that v[:n] does not end
// inside a UTF-8 sequence (binary data is cut at max).
func runeBoundary(v []byte, max int) int {
	if !utf8.Valid(v) {
		return max
	}
	n := max
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return n
}

func boolDigit(b bool) byte {
	if b {
		return '1'
	}
	return '0'
}

func hexAppend(dst, p []byte, upper bool) []byte {
	n := len(dst)
	dst = hex.AppendEncode(dst, p)
	if upper {
		for i := n; i < len(dst); i++ {
			if dst[i] >= 'a' {
				dst[i] -= 'a' - 'A'
			}
		}
	}
	return dst
}

// escapeBinary returns p unchanged when it is printable UTF-8 text
// (newlines and tabs allowed); otherwise a copy where invalid bytes and
// control characters are \xNN, so a terminal never receives raw bytes.
func escapeBinary(p []byte) []byte {
	if safeText(p) {
		return p
	}
	out := make([]byte, 0, len(p)+16)
	for i := 0; i < len(p); {
		r, sz := utf8.DecodeRune(p[i:])
		if (r == utf8.RuneError && sz == 1) || (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			for _, b := range p[i : i+sz] {
				out = fmt.Appendf(out, "\\x%02x", b)
			}
		} else {
			out = append(out, p[i:i+sz]...)
		}
		i += sz
	}
	return out
}

func safeText(p []byte) bool {
	for _, b := range p {
		if b < 0x20 && b != '\n' && b != '\t' || b == 0x7f || b >= 0x80 {
			return utf8.Valid(p) && !hasControl(p)
		}
	}
	return true
}

func hasControl(p []byte) bool {
	for _, r := range string(p) {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

// appendMosquittoJSON writes the object mosquitto_sub prints for %j and %J,
// with the same keys in the same order and its timestamp layout, so that
// scripts parsing mosquitto_sub's JSON keep working.
func appendMosquittoJSON(dst []byte, m *mqttconn.Message, now time.Time, rawPayload bool, env FormatEnv) []byte {
	// An empty payload is JSON null for both %j and %J, as mosquitto_sub
	// writes it, rather than "" or a complaint that it is not JSON.
	if rawPayload && len(m.Payload) > 0 && !json.Valid(m.Payload) {
		if env.Warn != nil {
			env.Warn(fmt.Sprintf("message payload is not valid JSON on topic %s", m.Topic))
		}
		return dst
	}
	dst = append(dst, `{"tst":"`...)
	dst = now.AppendFormat(dst, "2006-01-02T15:04:05")
	dst = fmt.Appendf(dst, ".%06dZ", now.Nanosecond()/1000)
	dst = now.AppendFormat(dst, "-0700")
	dst = append(dst, `","topic":`...)
	dst = appendJSONString(dst, []byte(m.Topic), env.Escape)
	dst = fmt.Appendf(dst, `,"qos":%d,"retain":%c,"payloadlen":%d`, m.QoS, boolDigit(m.Retain), len(m.Payload))
	if m.QoS > 0 {
		dst = fmt.Appendf(dst, `,"mid":%d`, m.PacketID)
	}
	if hasProps(m) {
		dst = append(dst, `,"properties":{`...)
		first := true
		key := func(k string) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(append(append(dst, '"'), k...), `":`...)
		}
		if len(m.UserProperties) > 0 {
			key("user-properties")
			dst = append(dst, '{')
			for i, p := range m.UserProperties {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, []byte(p.Key), env.Escape)
				dst = append(dst, ':')
				dst = appendJSONString(dst, []byte(p.Value), env.Escape)
			}
			dst = append(dst, '}')
		}
		if m.ContentType != "" {
			key("content-type")
			dst = appendJSONString(dst, []byte(m.ContentType), env.Escape)
		}
		if m.CorrelationData != nil {
			key("correlation-data")
			dst = appendJSONString(dst, m.CorrelationData, env.Escape)
		}
		if m.ResponseTopic != "" {
			key("response-topic")
			dst = appendJSONString(dst, []byte(m.ResponseTopic), env.Escape)
		}
		if m.PayloadFormat != nil {
			key("payload-format-indicator")
			dst = strconv.AppendUint(dst, uint64(*m.PayloadFormat), 10)
		}
		if m.MessageExpiry != nil {
			key("message-expiry-interval")
			dst = strconv.AppendUint(dst, uint64(*m.MessageExpiry), 10)
		}
		for _, id := range m.SubscriptionIDs {
			key("subscription-identifier")
			dst = strconv.AppendInt(dst, int64(id), 10)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"payload":`...)
	switch {
	case len(m.Payload) == 0:
		dst = append(dst, "null"...)
	case rawPayload && env.Escape:
		dst = appendJSONSafe(dst, m.Payload)
	case rawPayload:
		// As mosquitto_sub: the payload's own bytes, whatever they are.
		dst = append(dst, m.Payload...)
	default:
		dst = appendJSONString(dst, m.Payload, env.Escape)
	}
	return append(dst, '}')
}

func hasProps(m *mqttconn.Message) bool {
	return len(m.UserProperties) > 0 || m.ContentType != "" || m.CorrelationData != nil || m.ResponseTopic != "" ||
		m.PayloadFormat != nil || m.MessageExpiry != nil || len(m.SubscriptionIDs) > 0
}

// appendJSONString quotes b as a JSON string; invalid UTF-8 bytes become
// \u00XX of the byte value rather than being lost. With c1, the C1
// controls U+0080..U+009F are escaped too, for a terminal.
func appendJSONString(dst, b []byte, c1 bool) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = fmt.Appendf(dst, `\u%04x`, c)
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, sz := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && sz == 1:
			dst = fmt.Appendf(dst, `\u%04x`, c)
		case c1 && r < 0xa0:
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, b[i:i+sz]...)
		}
		i += sz
	}
	return append(dst, '"')
}

// appendJSONSafe appends the JSON text j with every byte a terminal could
// act on written as a \u00XX escape: invalid UTF-8 bytes (as the byte
// value), DEL and the C1 controls. In valid JSON these can only occur
// inside strings, where the escape is an equal (or, for invalid bytes,
// the closest) JSON text.
func appendJSONSafe(dst, j []byte) []byte {
	for i := 0; i < len(j); {
		c := j[i]
		if c < utf8.RuneSelf && c != 0x7f {
			dst = append(dst, c)
			i++
			continue
		}
		r, sz := utf8.DecodeRune(j[i:])
		switch {
		case r == utf8.RuneError && sz == 1:
			dst = fmt.Appendf(dst, `\u%04x`, c)
		case r < 0xa0:
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, j[i:i+sz]...)
		}
		i += sz
	}
	return dst
}

const strftimeLetters = "aAbBcCdDeFgGhHIjklmMnNpPrRsStTuUVwWxXyYzZ%"

// strftime appends one strftime(3) conversion as glibc writes it in the C
// locale (mosquitto_sub passes @X to strftime as %X, and does not set a
// locale), plus mosquitto's @N extension for nanoseconds.
func strftime(dst []byte, c byte, t time.Time) []byte {
	switch c {
	case 'a':
		return t.AppendFormat(dst, "Mon")
	case 'A':
		return t.AppendFormat(dst, "Monday")
	case 'b', 'h':
		return t.AppendFormat(dst, "Jan")
	case 'B':
		return t.AppendFormat(dst, "January")
	case 'c':
		return t.AppendFormat(dst, "Mon Jan _2 15:04:05 2006")
	case 'C':
		return fmt.Appendf(dst, "%02d", floorDiv(t.Year(), 100))
	case 'd':
		return t.AppendFormat(dst, "02")
	case 'D', 'x':
		return t.AppendFormat(dst, "01/02/06")
	case 'e':
		return t.AppendFormat(dst, "_2")
	case 'F':
		return t.AppendFormat(dst, "2006-01-02")
	case 'g':
		y, _ := t.ISOWeek()
		return fmt.Appendf(dst, "%02d", (y%100+100)%100)
	case 'G':
		y, _ := t.ISOWeek()
		return strconv.AppendInt(dst, int64(y), 10)
	case 'H':
		return t.AppendFormat(dst, "15")
	case 'I':
		return t.AppendFormat(dst, "03")
	case 'j':
		return fmt.Appendf(dst, "%03d", t.YearDay())
	case 'k':
		return fmt.Appendf(dst, "%2d", t.Hour())
	case 'l':
		// The 12-hour clock padded with a blank; Go's layouts have no
		// blank-padded hour ("_3" is not one).
		h := t.Hour() % 12
		if h == 0 {
			h = 12
		}
		return fmt.Appendf(dst, "%2d", h)
	case 'm':
		return t.AppendFormat(dst, "01")
	case 'M':
		return t.AppendFormat(dst, "04")
	case 'n':
		return append(dst, '\n')
	case 'N':
		return fmt.Appendf(dst, "%09d", t.Nanosecond())
	case 'p':
		return t.AppendFormat(dst, "PM")
	case 'P':
		return t.AppendFormat(dst, "pm")
	case 'r':
		return t.AppendFormat(dst, "03:04:05 PM")
	case 'R':
		return t.AppendFormat(dst, "15:04")
	case 's':
		return strconv.AppendInt(dst, t.Unix(), 10)
	case 'S':
		return t.AppendFormat(dst, "05")
	case 't':
		return append(dst, '\t')
	case 'T', 'X':
		return t.AppendFormat(dst, "15:04:05")
	case 'U':
		// Weeks starting on Sunday; days before the first Sunday are week 0.
		return fmt.Appendf(dst, "%02d", (t.YearDay()-1+7-int(t.Weekday()))/7)
	case 'V':
		_, w := t.ISOWeek()
		return fmt.Appendf(dst, "%02d", w)
	case 'W':
		// Weeks starting on Monday; days before the first Monday are week 0.
		return fmt.Appendf(dst, "%02d", (t.YearDay()-1+7-(int(t.Weekday())+6)%7)/7)
	case 'u':
		wd := int(t.Weekday())
		if wd == 0 {
			wd = 7
		}
		return strconv.AppendInt(dst, int64(wd), 10)
	case 'w':
		return strconv.AppendInt(dst, int64(t.Weekday()), 10)
	case 'y':
		return t.AppendFormat(dst, "06")
	case 'Y':
		return t.AppendFormat(dst, "2006")
	case 'z':
		return t.AppendFormat(dst, "-0700")
	case 'Z':
		return t.AppendFormat(dst, "MST")
	case '%':
		return append(dst, '%')
	}
	return dst
}

// floorDiv is a / b rounded down, as glibc computes the century of a year.
func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// appendIEEE appends p read as a little-endian float32 (or float64 with
// double) as C's printf %f writes it: prec decimals (6 when prec < 0),
// nan and inf in lower case. A payload of another length appends nothing.
func appendIEEE(dst, p []byte, double bool, prec int) []byte {
	var x float64
	switch {
	case double && len(p) == 8:
		x = math.Float64frombits(binary.LittleEndian.Uint64(p))
	case !double && len(p) == 4:
		x = float64(math.Float32frombits(binary.LittleEndian.Uint32(p)))
	default:
		return dst
	}
	switch {
	case math.IsNaN(x):
		if math.Signbit(x) {
			return append(dst, "-nan"...)
		}
		return append(dst, "nan"...)
	case math.IsInf(x, 1):
		return append(dst, "inf"...)
	case math.IsInf(x, -1):
		return append(dst, "-inf"...)
	}
	if prec < 0 {
		prec = 6
	}
	return strconv.AppendFloat(dst, x, 'f', prec, 64)
}

// appendPrettyJSON re-lays the compact JSON j the way cJSON's formatted
// printer does, which is what mosquitto_sub --pretty prints: an object's
// members one per line, indented with one tab per level of nesting
// (arrays count as a level), "key":<TAB>value, and arrays on one line
// with ", " between elements. Strings and numbers are copied unchanged.
func appendPrettyJSON(dst, j []byte) []byte {
	var stack []byte // the open '{' and '['
	tabs := func(n int) {
		for ; n > 0; n-- {
			dst = append(dst, '\t')
		}
	}
	next := func(i int) int {
		for i < len(j) && (j[i] == ' ' || j[i] == '\t' || j[i] == '\n' || j[i] == '\r') {
			i++
		}
		return i
	}
	for i := 0; i < len(j); i++ {
		c := j[i]
		switch c {
		case ' ', '\t', '\n', '\r':
		case '"':
			k := i + 1
			for k < len(j) && j[k] != '"' {
				if j[k] == '\\' {
					k++
				}
				k++
			}
			end := min(k+1, len(j))
			dst = append(dst, j[i:end]...)
			i = end - 1
		case '{':
			stack = append(stack, c)
			dst = append(dst, '{', '\n')
			if n := next(i + 1); n < len(j) && j[n] == '}' {
				tabs(len(stack) - 1)
				dst = append(dst, '}')
				stack = stack[:len(stack)-1]
				i = n
				continue
			}
			tabs(len(stack))
		case '[':
			stack = append(stack, c)
			dst = append(dst, '[')
		case '}':
			dst = append(dst, '\n')
			tabs(len(stack) - 1)
			dst = append(dst, '}')
			stack = stack[:max(len(stack)-1, 0)]
		case ']':
			dst = append(dst, ']')
			stack = stack[:max(len(stack)-1, 0)]
		case ':':
			dst = append(dst, ':', '\t')
		case ',':
			if len(stack) > 0 && stack[len(stack)-1] == '{' {
				dst = append(dst, ',', '\n')
				tabs(len(stack))
			} else {
				dst = append(dst, ',', ' ')
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
