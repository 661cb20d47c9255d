package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/charmbracelet/lipgloss"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/muesli/termenv"
)

// tracePayloadLimit is how many payload bytes a trace line shows; the full
// size is always printed beside it.
const tracePayloadLimit = 64

// traceHook prints every MQTT packet read from or written to a client (the
// --trace flag). It is only added to the server when asked for, so a broker
// without --trace pays nothing for it.
//
// Concurrency: hooks run on every client's goroutines; mu serialises writes
// so lines never interleave.
type traceHook struct {
	mqtt.HookBase
	mu        sync.Mutex
	w         io.Writer
	jsonLines bool
	now       func() time.Time
	st        traceStyles
}

type traceStyles struct {
	time, client, in, out, kind, topic, flag, props, payload paint
}

// paint is a style reduced to the escape sequences around its text,
// worked out once. lipgloss's Style.Render measures, pads and re-parses on
// every call, which took 29% of a tracing broker's CPU under load; the
// trace only needs colour around single-line text.
type paint struct{ pre, post string }

func newPaint(st lipgloss.Style) paint {
	const mark = "\x00"
	pre, post, ok := strings.Cut(st.Render(mark), mark)
	if !ok {
		return paint{}
	}
	return paint{pre: pre, post: post}
}

// Render returns text between the style's sequences.
func (p paint) Render(text string) string {
	if p.pre == "" && p.post == "" {
		return text
	}
	return p.pre + text + p.post
}

// newTraceHook writes a line per packet to w: coloured text when color is
// true, plain text when not, JSON lines (stable field names, never coloured)
// when jsonLines is true.
func newTraceHook(w io.Writer, jsonLines bool, color bool) *traceHook {
	// Our own renderer with the profile the caller chose: the terminal
	// guess is not consulted, and a ui.Stream's shared renderer is left alone.
	r := lipgloss.NewRenderer(w)
	if color {
		r.SetColorProfile(termenv.ANSI256)
	} else {
		r.SetColorProfile(termenv.Ascii)
	}
	st := traceStyles{
		time:    newPaint(r.NewStyle().Faint(true)),
		client:  newPaint(r.NewStyle().Foreground(lipgloss.Color("6"))),
		in:      newPaint(r.NewStyle().Foreground(lipgloss.Color("2")).Bold(true)),
		out:     newPaint(r.NewStyle().Foreground(lipgloss.Color("5")).Bold(true)),
		kind:    newPaint(r.NewStyle().Bold(true)),
		topic:   newPaint(r.NewStyle().Foreground(lipgloss.Color("3"))),
		flag:    newPaint(r.NewStyle().Foreground(lipgloss.Color("1"))),
		props:   newPaint(r.NewStyle().Faint(true)),
		payload: newPaint(r.NewStyle()),
	}
	return &traceHook{w: w, jsonLines: jsonLines, now: time.Now, st: st}
}

// ID implements mqtt.Hook.
func (h *traceHook) ID() string { return "mqtk-trace" }

// Provides implements mqtt.Hook.
func (h *traceHook) Provides(b byte) bool {
	return b == mqtt.OnPacketRead || b == mqtt.OnPacketSent
}

// OnPacketRead traces an incoming packet. It never modifies it.
func (h *traceHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.trace(cl, "in", pk)
	return pk, nil
}

// OnPacketSent traces a packet once its bytes were written to the client.
// It shows the packet as the client received it rather than trusting pk:
// mochi's encoder drops properties that are invalid for the packet type and
// omits success reason codes. The b mochi passes is empty whenever it wrote
// straight to the connection (bytes.Buffer.WriteTo drains it), so the packet
// is re-encoded here, which is deterministic, and decoded again.
func (h *traceHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, b []byte) {
	if len(b) == 0 {
		b = encodeWire(pk)
	}
	if wire, ok := decodeWire(b, cl.Properties.ProtocolVersion); ok {
		pk = wire
	}
	h.trace(cl, "out", pk)
}

// encodeWire encodes a server-to-client packet as mochi's WritePacket does.
func encodeWire(pk packets.Packet) []byte {
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Suback:
		err = pk.SubackEncode(&buf)
	case packets.Unsuback:
		err = pk.UnsubackEncode(&buf)
	case packets.Pingresp:
		err = pk.PingrespEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Auth:
		err = pk.AuthEncode(&buf)
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	return buf.Bytes()
}

// decodeWire parses one encoded packet. b may be mochi's buffer, valid only
// during the hook call; the trace record is built before the hook returns.
func decodeWire(b []byte, version byte) (packets.Packet, bool) {
	var pk packets.Packet
	if len(b) < 2 || pk.FixedHeader.Decode(b[0]) != nil {
		return pk, false
	}
	n, used, err := packets.DecodeLength(bytes.NewReader(b[1:]))
	if err != nil || 1+used+n != len(b) {
		return pk, false
	}
	pk.FixedHeader.Remaining = n
	pk.ProtocolVersion = version
	body := b[1+used:]
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Auth:
		err = pk.AuthDecode(body)
	case packets.Pingresp:
	default:
		return pk, false
	}
	return pk, err == nil
}

// traceFilter is one filter of a SUBSCRIBE or UNSUBSCRIBE.
type traceFilter struct {
	Filter            string `json:"filter"`
	Qos               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
}

// traceRecord is one JSON line. Field names are part of the interface:
// scripts filter on them, so they never change meaning.
type traceRecord struct {
	Time            string         `json:"time"`
	at              time.Time      // Time before formatting, for the text form
	Client          string         `json:"client"`
	Remote          string         `json:"remote,omitempty"`
	Direction       string         `json:"direction"`
	Type            string         `json:"type"`
	ProtocolVersion byte           `json:"protocol_version,omitempty"`
	PacketID        uint16         `json:"packet_id,omitempty"`
	Topic           string         `json:"topic,omitempty"`
	Qos             *byte          `json:"qos,omitempty"`
	Dup             bool           `json:"dup,omitempty"`
	Retain          bool           `json:"retain,omitempty"`
	ReasonCode      *byte          `json:"reason_code,omitempty"`
	ReasonCodes     []byte         `json:"reason_codes,omitempty"`
	SessionPresent  bool           `json:"session_present,omitempty"`
	Clean           *bool          `json:"clean,omitempty"`
	Keepalive       *uint16        `json:"keepalive,omitempty"`
	Username        string         `json:"username,omitempty"`
	WillTopic       string         `json:"will_topic,omitempty"`
	Filters         []traceFilter  `json:"filters,omitempty"`
	Properties      map[string]any `json:"properties,omitempty"`
	Payload         *string        `json:"payload,omitempty"`
	PayloadSize     *int           `json:"payload_size,omitempty"`
	Truncated       bool           `json:"truncated,omitempty"`
}

func (h *traceHook) record(cl *mqtt.Client, dir string, pk packets.Packet) traceRecord {
	t := pk.FixedHeader.Type
	now := h.now().UTC()
	rec := traceRecord{
		Time:      now.Format(time.RFC3339Nano),
		at:        now,
		Client:    cl.ID,
		Remote:    cl.Net.Remote,
		Direction: dir,
		Type:      strings.ToUpper(packets.PacketNames[t]),
		PacketID:  pk.PacketID,
	}
	version := cl.Properties.ProtocolVersion
	if pk.ProtocolVersion != 0 {
		version = pk.ProtocolVersion
	}
	switch t {
	case packets.Connect:
		// Until CONNECT is processed the client has a placeholder id.
		rec.Client = pk.Connect.ClientIdentifier
		rec.ProtocolVersion = pk.ProtocolVersion
		clean, ka := pk.Connect.Clean, pk.Connect.Keepalive
		rec.Clean, rec.Keepalive = &clean, &ka
		rec.Username = string(pk.Connect.Username) // never the password
		if pk.Connect.WillFlag {
			rec.WillTopic = pk.Connect.WillTopic
		}
	case packets.Publish:
		q := pk.FixedHeader.Qos
		rec.Topic, rec.Qos = pk.TopicName, &q
		rec.Dup, rec.Retain = pk.FixedHeader.Dup, pk.FixedHeader.Retain
		preview, truncated := payloadPreview(pk.Payload, tracePayloadLimit)
		n := len(pk.Payload)
		rec.Payload, rec.PayloadSize, rec.Truncated = &preview, &n, truncated
	case packets.Connack:
		rc := pk.ReasonCode
		rec.ReasonCode, rec.SessionPresent = &rc, pk.SessionPresent
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp, packets.Disconnect, packets.Auth:
		if pk.ReasonCode != 0 {
			rc := pk.ReasonCode
			rec.ReasonCode = &rc
		}
	case packets.Subscribe, packets.Unsubscribe:
		for _, f := range pk.Filters {
			rec.Filters = append(rec.Filters, traceFilter{
				Filter: f.Filter, Qos: f.Qos, NoLocal: f.NoLocal,
				RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling,
			})
		}
	case packets.Suback, packets.Unsuback:
		rec.ReasonCodes = pk.ReasonCodes
	}
	if version == 5 {
		rec.Properties = traceProperties(pk.Properties)
	}
	return rec
}

func (h *traceHook) trace(cl *mqtt.Client, dir string, pk packets.Packet) {
	rec := h.record(cl, dir, pk)
	var line []byte
	if h.jsonLines {
		b, err := json.Marshal(rec)
		if err != nil {
			// Only reachable if a property holds something JSON cannot
			// encode; say so rather than dropping the packet silently.
			b = fmt.Appendf(nil, `{"time":%q,"error":%q}`, rec.Time, err.Error())
		}
		line = append(b, '\n')
	} else {
		line = []byte(h.text(rec) + "\n")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, _ = h.w.Write(line)
}

func (h *traceHook) text(r traceRecord) string {
	var b strings.Builder
	b.WriteString(h.st.time.Render(r.at.Format("15:04:05.000")))
	b.WriteByte(' ')
	client := r.Client
	if client == "" {
		client = "-"
	}
	b.WriteString(h.st.client.Render(client))
	b.WriteByte(' ')
	if r.Direction == "in" {
		b.WriteString(h.st.in.Render("->"))
	} else {
		b.WriteString(h.st.out.Render("<-"))
	}
	b.WriteByte(' ')
	b.WriteString(h.st.kind.Render(r.Type))
	field := func(k string, v any) { fmt.Fprintf(&b, " %s=%v", k, v) }
	if r.Topic != "" {
		b.WriteByte(' ')
		b.WriteString(h.st.topic.Render(r.Topic))
	}
	if r.Qos != nil {
		field("qos", *r.Qos)
	}
	if r.PacketID != 0 {
		field("id", r.PacketID)
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{r.Dup, "dup"}, {r.Retain, "retain"}, {r.SessionPresent, "session-present"}} {
		if f.on {
			b.WriteByte(' ')
			b.WriteString(h.st.flag.Render(f.name))
		}
	}
	if r.ProtocolVersion != 0 {
		field("v", r.ProtocolVersion)
	}
	if r.Clean != nil {
		field("clean", *r.Clean)
	}
	if r.Keepalive != nil {
		field("keepalive", *r.Keepalive)
	}
	if r.Username != "" {
		field("username", r.Username)
	}
	if r.WillTopic != "" {
		field("will", r.WillTopic)
	}
	if r.Type == "CONNECT" && r.Remote != "" {
		// The client id may be empty (server-assigned); say where it came from.
		field("from", r.Remote)
	}
	if r.ReasonCode != nil {
		fmt.Fprintf(&b, " reason=0x%02x", *r.ReasonCode)
	}
	if len(r.ReasonCodes) > 0 {
		codes := make([]string, len(r.ReasonCodes))
		for i, c := range r.ReasonCodes {
			codes[i] = fmt.Sprintf("0x%02x", c)
		}
		field("reasons", strings.Join(codes, ","))
	}
	for _, f := range r.Filters {
		b.WriteByte(' ')
		b.WriteString(h.st.topic.Render(f.Filter))
		fmt.Fprintf(&b, "(qos=%d)", f.Qos)
	}
	if len(r.Properties) > 0 {
		keys := make([]string, 0, len(r.Properties))
		for k := range r.Properties {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%v", k, r.Properties[k])
		}
		b.WriteByte(' ')
		b.WriteString(h.st.props.Render("{" + strings.Join(parts, " ") + "}"))
	}
	if r.Payload != nil {
		more := ""
		if r.Truncated {
			more = "…"
		}
		fmt.Fprintf(&b, " %s (%d bytes)", h.st.payload.Render(`"`+*r.Payload+more+`"`), *r.PayloadSize)
	}
	return b.String()
}

// payloadPreview returns at most limit bytes of p as printable text: valid
// UTF-8 is kept, control characters and invalid bytes are escaped (\n, \x00),
// so a binary payload can never corrupt the terminal.
func payloadPreview(p []byte, limit int) (string, bool) {
	truncated := len(p) > limit
	if truncated {
		p = p[:limit]
	}
	var b strings.Builder
	b.Grow(len(p) + 8)
	// hexByte writes \xNN; fmt.Fprintf here was 17% of a tracing broker's
	// CPU under a binary payload load.
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
			if truncated && !utf8.FullRune(p) {
				// A multi-byte character cut by the limit: stop before it.
				return b.String(), truncated
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
	return b.String(), truncated
}

// traceProperties lists the MQTT 5 properties that are present, by their
// spec names in snake case. Authentication data is never shown.
func traceProperties(p packets.Properties) map[string]any {
	m := map[string]any{}
	set := func(k string, ok bool, v any) {
		if ok {
			m[k] = v
		}
	}
	set("payload_format", p.PayloadFormatFlag, p.PayloadFormat)
	set("message_expiry_interval", p.MessageExpiryInterval > 0, p.MessageExpiryInterval)
	set("content_type", p.ContentType != "", p.ContentType)
	set("response_topic", p.ResponseTopic != "", p.ResponseTopic)
	if len(p.CorrelationData) > 0 {
		s, _ := payloadPreview(p.CorrelationData, tracePayloadLimit)
		m["correlation_data"] = s
	}
	set("subscription_identifier", len(p.SubscriptionIdentifier) > 0, p.SubscriptionIdentifier)
	set("session_expiry_interval", p.SessionExpiryIntervalFlag || p.SessionExpiryInterval > 0, p.SessionExpiryInterval)
	set("assigned_client_identifier", p.AssignedClientID != "", p.AssignedClientID)
	set("server_keep_alive", p.ServerKeepAliveFlag, p.ServerKeepAlive)
	set("authentication_method", p.AuthenticationMethod != "", p.AuthenticationMethod)
	set("request_problem_information", p.RequestProblemInfoFlag, p.RequestProblemInfo)
	set("will_delay_interval", p.WillDelayInterval > 0, p.WillDelayInterval)
	set("request_response_information", p.RequestResponseInfo > 0, p.RequestResponseInfo)
	set("response_information", p.ResponseInfo != "", p.ResponseInfo)
	set("server_reference", p.ServerReference != "", p.ServerReference)
	set("reason_string", p.ReasonString != "", p.ReasonString)
	set("receive_maximum", p.ReceiveMaximum > 0, p.ReceiveMaximum)
	set("topic_alias_maximum", p.TopicAliasMaximum > 0, p.TopicAliasMaximum)
	set("topic_alias", p.TopicAliasFlag || p.TopicAlias > 0, p.TopicAlias)
	set("maximum_qos", p.MaximumQosFlag, p.MaximumQos)
	set("retain_available", p.RetainAvailableFlag, p.RetainAvailable)
	set("maximum_packet_size", p.MaximumPacketSize > 0, p.MaximumPacketSize)
	set("wildcard_subscription_available", p.WildcardSubAvailableFlag, p.WildcardSubAvailable)
	set("subscription_identifier_available", p.SubIDAvailableFlag, p.SubIDAvailable)
	set("shared_subscription_available", p.SharedSubAvailableFlag, p.SharedSubAvailable)
	if len(p.User) > 0 {
		u := make([]string, len(p.User))
		for i, kv := range p.User {
			u[i] = kv.Key + "=" + kv.Val
		}
		m["user"] = u
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
