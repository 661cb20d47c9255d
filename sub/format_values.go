package sub

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// How -F renders values: mosquitto_sub's %j/%J JSON, strftime's letters
// for @ and %I-style times, and %f/%d's IEEE numbers.

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
