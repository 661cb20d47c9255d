package packet

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file is the one packet printer: the clients' -d trace and the
// broker's --trace both describe packets through it, in text (Describe,
// AppendText) or as JSON (Summarize). It shows every flag, property and
// subscription option; it never shows a password or authentication data,
// only that they are there and how long they are.

// Kind tells a Styler what a piece of a text trace line is, so the broker
// can colour it; the clients print it plain.
type Kind uint8

// The kinds of text a line is made of.
const (
	KindPlain   Kind = iota // field names, numbers, punctuation
	KindType                // the packet type
	KindTopic               // topic names and filters
	KindFlag                // dup, retain, session-present and the like
	KindProps               // MQTT 5 properties
	KindPayload             // a payload preview
)

// Styler wraps a piece of text for display; nil means plain text.
type Styler func(k Kind, s string) string

// PayloadPreview is how many bytes of a payload (and of correlation data)
// a trace shows; the full size is always printed beside it.
const PayloadPreview = 64

// Describe is AppendText as a string, unstyled.
func Describe(p Packet, v Version) string {
	return string(AppendText(nil, p, v, nil))
}

// DescribeRaw decodes one packet from its first byte and the bytes after
// its remaining length, and describes it. A packet the codec refuses is
// shown by its type with the reason and its first 32 bytes, since seeing
// exactly what a peer got wrong is what a trace is for.
func DescribeRaw(header byte, body []byte, v Version) string {
	p, err := Decode(header, body, v)
	if err != nil {
		return fmt.Sprintf("%s (invalid: %v; %d bytes: % x)", Type(header>>4).String(), err, len(body), body[:min(len(body), 32)])
	}
	return Describe(p, v)
}

// line builds one trace line.
type line struct {
	b  []byte
	st Styler
}

func (l *line) raw(s string) { l.b = append(l.b, s...) }

func (l *line) styled(k Kind, s string) {
	if l.st != nil {
		s = l.st(k, s)
	}
	l.b = append(l.b, s...)
}

// field writes " name=value", the value unstyled.
func (l *line) field(name, value string) {
	l.b = append(l.b, ' ')
	l.b = append(l.b, name...)
	l.b = append(l.b, '=')
	l.b = append(l.b, value...)
}

func (l *line) num(name string, v uint64) { l.field(name, strconv.FormatUint(v, 10)) }

func (l *line) flag(name string) {
	l.b = append(l.b, ' ')
	l.styled(KindFlag, name)
}

func (l *line) topic(name, t string) {
	l.b = append(l.b, ' ')
	l.b = append(l.b, name...)
	l.b = append(l.b, '=')
	l.styled(KindTopic, quoteIfNeeded(t))
}

func (l *line) reason(c ReasonCode, name string) {
	l.field("reason", "0x"+hex2(byte(c))+" ("+name+")")
}

// AppendText appends a one-line description of p, as received or sent on a
// connection of version v, to dst.
func AppendText(dst []byte, p Packet, v Version, st Styler) []byte {
	l := &line{b: dst, st: st}
	l.styled(KindType, p.Type().String())
	switch p := p.(type) {
	case *Connect:
		name := p.ProtocolName
		if name == "" {
			name = protocolName(v)
		}
		level := p.Version
		if level == 0 {
			level = v
		}
		l.field("protocol", quoteIfNeeded(name))
		l.num("level", uint64(level))
		l.field("id", quote(p.ClientID))
		l.field("clean", strconv.FormatBool(p.CleanStart))
		l.num("keepalive", uint64(p.KeepAlive))
		l.props(&p.Properties, "")
		if w := p.Will; w != nil {
			l.topic("will-topic", w.Topic)
			l.num("will-qos", uint64(w.QoS))
			if w.Retain {
				l.flag("will-retain")
			}
			l.props(&w.Properties, "will-")
			l.payload("will-payload", w.Payload)
		}
		if p.HasUsername {
			l.field("username", quote(p.Username))
		}
		if p.HasPassword {
			// Never the password itself.
			l.field("password", "("+strconv.Itoa(len(p.Password))+" bytes)")
		}
	case *Connack:
		l.field("session-present", strconv.FormatBool(p.SessionPresent))
		if v == V5 {
			l.reason(p.Code, p.Code.String())
			l.props(&p.Properties, "")
		} else {
			l.field("rc", strconv.Itoa(int(p.Code))+" ("+ConnackName311(p.Code)+")")
		}
	case *Publish:
		l.topic("topic", p.Topic)
		l.num("qos", uint64(p.QoS))
		if p.QoS > 0 {
			l.num("id", uint64(p.PacketID))
		}
		if p.Retain {
			l.flag("retain")
		}
		if p.Dup {
			l.flag("dup")
		}
		l.props(&p.Properties, "")
		l.payload("payload", p.Payload)
	case *Ack:
		l.num("id", uint64(p.PacketID))
		if v == V5 {
			l.reason(p.Code, p.Code.String())
			l.props(&p.Properties, "")
		}
	case *Subscribe:
		l.num("id", uint64(p.PacketID))
		l.props(&p.Properties, "")
		for _, s := range p.Subscriptions {
			l.raw(" filter=")
			l.styled(KindTopic, quoteIfNeeded(s.Filter))
			l.raw("(qos=" + strconv.Itoa(int(s.QoS)))
			if v == V5 {
				if s.NoLocal {
					l.raw(",no-local")
				}
				if s.RetainAsPublished {
					l.raw(",retain-as-published")
				}
				l.raw(",retain-handling=" + strconv.Itoa(int(s.RetainHandling)))
			}
			l.raw(")")
		}
	case *Suback:
		l.num("id", uint64(p.PacketID))
		l.props(&p.Properties, "")
		l.codes(p.Codes)
	case *Unsubscribe:
		l.num("id", uint64(p.PacketID))
		l.props(&p.Properties, "")
		for _, f := range p.Filters {
			l.raw(" filter=")
			l.styled(KindTopic, quoteIfNeeded(f))
		}
	case *Unsuback:
		l.num("id", uint64(p.PacketID))
		if v == V5 {
			l.props(&p.Properties, "")
			l.codes(p.Codes)
		}
	case *Disconnect:
		if v == V5 {
			name := p.Code.String()
			if p.Code == Success {
				name = "normal disconnection"
			}
			l.reason(p.Code, name)
			l.props(&p.Properties, "")
		}
	case *Auth:
		l.reason(p.Code, p.Code.String())
		l.props(&p.Properties, "")
	}
	return l.b
}

func (l *line) codes(codes []ReasonCode) {
	if len(codes) == 0 {
		return
	}
	l.raw(" codes=")
	for i, c := range codes {
		if i > 0 {
			l.raw(",")
		}
		l.raw("0x" + hex2(byte(c)))
	}
}

func (l *line) payload(name string, b []byte) {
	l.num(name[:len(name)-len("payload")]+"len", uint64(len(b)))
	if len(b) == 0 {
		return
	}
	s, more := preview(b, PayloadPreview)
	l.raw(" " + name + "=")
	if more {
		s += "…"
	}
	l.styled(KindPayload, `"`+s+`"`)
}

// props writes every present property as name=value, prefixed (for will
// properties) with prefix.
func (l *line) props(p *Properties, prefix string) {
	if p.fastEmpty() {
		return
	}
	for _, id := range propOrder {
		if !p.Has(id) {
			continue
		}
		name := propTable[id].name
		if !strings.HasPrefix(name, prefix) {
			name = prefix + name
		}
		v := p.get(id)
		var parts []string
		switch propTable[id].kind {
		case kByte, kU16, kU32:
			parts = append(parts, name+"="+strconv.FormatUint(uint64(v.num), 10))
		case kVarint:
			for _, s := range v.ids {
				parts = append(parts, name+"="+strconv.FormatUint(uint64(s), 10))
			}
		case kStr:
			parts = append(parts, name+"="+quote(v.str))
		case kBin:
			if id == PropAuthData {
				parts = append(parts, name+"=("+strconv.Itoa(len(v.bin))+" bytes)")
				break
			}
			s, more := preview(v.bin, PayloadPreview)
			if more {
				s += "…"
			}
			parts = append(parts, name+`="`+s+`"`)
		case kPair:
			for _, u := range v.user {
				parts = append(parts, name+"="+quoteIfNeeded(u.Key)+":"+quoteIfNeeded(u.Value))
			}
		}
		for _, s := range parts {
			l.raw(" ")
			l.styled(KindProps, s)
		}
	}
}

// quote returns s in double quotes with the escapes of preview.
func quote(s string) string {
	q, _ := preview([]byte(s), len(s))
	return `"` + q + `"`
}

// quoteIfNeeded leaves plain printable text as it is and quotes anything
// with spaces, quotes, separators or control characters, so a trace line
// always splits into its fields.
func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '\\' || r == '=' || r == ':' || r == ',' || r == '(' || r == ')' ||
			r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return quote(s)
		}
	}
	return s
}

// preview returns at most limit bytes of p as printable text: valid UTF-8 is
// kept, control characters and invalid bytes are escaped (\n, \x00), so a
// binary payload can never corrupt a terminal. more says p was longer.
func preview(p []byte, limit int) (s string, more bool) {
	more = len(p) > limit
	if more {
		p = p[:limit]
	}
	var b strings.Builder
	b.Grow(len(p) + 8)
	hexByte := func(c byte) {
		const digits = "0123456789abcdef"
		b.WriteString(`\x`)
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&0xf])
	}
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		switch {
		case r == utf8.RuneError && size <= 1:
			if more && !utf8.FullRune(p) {
				// A character cut by the limit: stop before it.
				return b.String(), more
			}
			hexByte(p[0])
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			hexByte(byte(r)) // C0 and C1 controls, all below 0x100
		default:
			b.WriteRune(r)
		}
		p = p[size:]
	}
	return b.String(), more
}

// Preview is the escaped, bounded payload text the traces show.
func Preview(p []byte, limit int) (string, bool) { return preview(p, limit) }

// Filter is one filter of a SUBSCRIBE or UNSUBSCRIBE in a Summary.
type Filter struct {
	Filter            string `json:"filter"`
	Qos               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
}

// Summary is a packet as a JSON trace record shows it. The field names are
// an interface: scripts filter on them, so they never change meaning.
type Summary struct {
	Type            string         `json:"type"`
	ProtocolVersion byte           `json:"protocol_version,omitempty"`
	PacketID        uint16         `json:"packet_id,omitempty"`
	Topic           string         `json:"topic,omitempty"`
	Qos             *byte          `json:"qos,omitempty"`
	Dup             bool           `json:"dup,omitempty"`
	Retain          bool           `json:"retain,omitempty"`
	ReasonCode      *byte          `json:"reason_code,omitempty"`
	ReasonCodes     []int          `json:"reason_codes,omitempty"`
	SessionPresent  bool           `json:"session_present,omitempty"`
	ClientID        *string        `json:"client_id,omitempty"`
	Clean           *bool          `json:"clean,omitempty"`
	Keepalive       *uint16        `json:"keepalive,omitempty"`
	Username        string         `json:"username,omitempty"`
	PasswordSize    *int           `json:"password_size,omitempty"`
	WillTopic       string         `json:"will_topic,omitempty"`
	WillQos         *byte          `json:"will_qos,omitempty"`
	WillRetain      bool           `json:"will_retain,omitempty"`
	WillProperties  map[string]any `json:"will_properties,omitempty"`
	WillPayloadSize *int           `json:"will_payload_size,omitempty"`
	Filters         []Filter       `json:"filters,omitempty"`
	Properties      map[string]any `json:"properties,omitempty"`
	Payload         *string        `json:"payload,omitempty"`
	PayloadSize     *int           `json:"payload_size,omitempty"`
	Truncated       bool           `json:"truncated,omitempty"`
}

// Summarize describes p, as received or sent on a connection of version v,
// for a JSON trace.
func Summarize(p Packet, v Version) Summary {
	s := Summary{Type: p.Type().String()}
	code := func(c ReasonCode) { b := byte(c); s.ReasonCode = &b }
	var props *Properties
	switch p := p.(type) {
	case *Connect:
		level := p.Version
		if level == 0 {
			level = v
		}
		s.ProtocolVersion = byte(level)
		id, clean, ka := p.ClientID, p.CleanStart, p.KeepAlive
		s.ClientID, s.Clean, s.Keepalive = &id, &clean, &ka
		s.Username = p.Username
		if p.HasPassword {
			n := len(p.Password)
			s.PasswordSize = &n
		}
		if w := p.Will; w != nil {
			q, n := w.QoS, len(w.Payload)
			s.WillTopic, s.WillQos, s.WillRetain, s.WillPayloadSize = w.Topic, &q, w.Retain, &n
			s.WillProperties = propMap(&w.Properties)
		}
		props = &p.Properties
	case *Connack:
		code(p.Code)
		s.SessionPresent = p.SessionPresent
		props = &p.Properties
	case *Publish:
		q := p.QoS
		s.Topic, s.Qos, s.Dup, s.Retain, s.PacketID = p.Topic, &q, p.Dup, p.Retain, p.PacketID
		pv, more := preview(p.Payload, PayloadPreview)
		n := len(p.Payload)
		s.Payload, s.PayloadSize, s.Truncated = &pv, &n, more
		props = &p.Properties
	case *Ack:
		s.PacketID = p.PacketID
		if v == V5 {
			code(p.Code)
		}
		props = &p.Properties
	case *Subscribe:
		s.PacketID = p.PacketID
		for _, f := range p.Subscriptions {
			s.Filters = append(s.Filters, Filter{Filter: f.Filter, Qos: f.QoS, NoLocal: f.NoLocal,
				RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling})
		}
		props = &p.Properties
	case *Suback:
		s.PacketID = p.PacketID
		s.ReasonCodes = ints(p.Codes)
		props = &p.Properties
	case *Unsubscribe:
		s.PacketID = p.PacketID
		for _, f := range p.Filters {
			s.Filters = append(s.Filters, Filter{Filter: f})
		}
		props = &p.Properties
	case *Unsuback:
		s.PacketID = p.PacketID
		s.ReasonCodes = ints(p.Codes)
		props = &p.Properties
	case *Disconnect:
		if v == V5 {
			code(p.Code)
		}
		props = &p.Properties
	case *Auth:
		code(p.Code)
		props = &p.Properties
	}
	if props != nil && v == V5 {
		s.Properties = propMap(props)
	}
	return s
}

func ints(codes []ReasonCode) []int {
	if len(codes) == 0 {
		return nil
	}
	out := make([]int, len(codes))
	for i, c := range codes {
		out[i] = int(c)
	}
	return out
}

// propMap lists the present properties under their JSON names.
// Authentication data shows only its length.
func propMap(p *Properties) map[string]any {
	if p.fastEmpty() {
		return nil
	}
	m := map[string]any{}
	for _, id := range propOrder {
		if !p.Has(id) {
			continue
		}
		in := propTable[id]
		v := p.get(id)
		switch in.kind {
		case kByte, kU16, kU32:
			m[in.json] = v.num
		case kVarint:
			m[in.json] = v.ids
		case kStr:
			m[in.json] = v.str
		case kBin:
			if id == PropAuthData {
				m["authentication_data_size"] = len(v.bin)
				break
			}
			s, _ := preview(v.bin, PayloadPreview)
			m[in.json] = s
		case kPair:
			u := make([]string, len(v.user))
			for i, kv := range v.user {
				u[i] = kv.Key + "=" + kv.Value
			}
			m[in.json] = u
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
