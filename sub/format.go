package sub

import (
	"bytes"
	"encoding/hex"
	"fmt"
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
