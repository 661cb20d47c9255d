package mqttconn

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Record is the lossless JSON-lines form of one message: what
// `mqtk sub --output jsonl` writes and `mqtk pub --replay` and
// `mqtk pub -l --line-format jsonl` read. Field names are stable.
type Record struct {
	Time            string       `json:"time,omitempty"` // RFC 3339 with nanoseconds, when received
	Topic           string       `json:"topic"`
	QoS             byte         `json:"qos"`
	Retain          bool         `json:"retain"`
	Dup             bool         `json:"dup,omitempty"`
	PacketID        uint16       `json:"packet_id,omitempty"`
	Payload         string       `json:"payload"`
	PayloadEncoding string       `json:"payload_encoding"` // "utf8" or "base64"
	Properties      *RecordProps `json:"properties,omitempty"`
}

// RecordProps holds the MQTT 5 properties of a Record; binary values are
// base64.
type RecordProps struct {
	PayloadFormat   *byte          `json:"payload_format,omitempty"`
	MessageExpiry   *uint32        `json:"message_expiry,omitempty"`
	ContentType     string         `json:"content_type,omitempty"`
	ResponseTopic   string         `json:"response_topic,omitempty"`
	CorrelationData string         `json:"correlation_data,omitempty"` // base64
	UserProperties  []UserProperty `json:"user_properties,omitempty"`
	SubscriptionIDs []int          `json:"subscription_ids,omitempty"`
}

// Payload encodings in a Record.
const (
	EncodingUTF8   = "utf8"
	EncodingBase64 = "base64"
)

// RecordTime is the records' time layout: RFC 3339 with all nine fraction
// digits, unlike time.RFC3339Nano, which trims trailing zeros, so that the
// records of one zone sort as strings in time order. Parsing with
// RFC3339Nano (ParseRecord) reads both forms.
const RecordTime = "2006-01-02T15:04:05.000000000Z07:00"

// NewRecord converts m to its record form.
func NewRecord(m *Message) Record {
	r := Record{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Dup: m.Dup, PacketID: m.PacketID}
	if !m.Received.IsZero() {
		r.Time = m.Received.UTC().Format(RecordTime)
	}
	if utf8.Valid(m.Payload) {
		r.Payload, r.PayloadEncoding = string(m.Payload), EncodingUTF8
	} else {
		r.Payload, r.PayloadEncoding = base64.StdEncoding.EncodeToString(m.Payload), EncodingBase64
	}
	p := RecordProps{
		PayloadFormat:   m.PayloadFormat,
		MessageExpiry:   m.MessageExpiry,
		ContentType:     m.ContentType,
		ResponseTopic:   m.ResponseTopic,
		UserProperties:  m.UserProperties,
		SubscriptionIDs: m.SubscriptionIDs,
	}
	if m.CorrelationData != nil {
		p.CorrelationData = base64.StdEncoding.EncodeToString(m.CorrelationData)
	}
	if p.PayloadFormat != nil || p.MessageExpiry != nil || p.ContentType != "" || p.ResponseTopic != "" ||
		p.CorrelationData != "" || len(p.UserProperties) > 0 || len(p.SubscriptionIDs) > 0 {
		r.Properties = &p
	}
	return r
}

// Message converts a record back to a message. Received is parsed from
// Time when present (a replay uses it for spacing).
func (r Record) Message() (*Message, error) {
	m := &Message{Topic: r.Topic, QoS: r.QoS, Retain: r.Retain, Dup: r.Dup, PacketID: r.PacketID}
	switch r.PayloadEncoding {
	case EncodingUTF8, "":
		m.Payload = []byte(r.Payload)
	case EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(r.Payload)
		if err != nil {
			return nil, fmt.Errorf("payload is not valid base64: %w", err)
		}
		m.Payload = b
	default:
		return nil, fmt.Errorf("unknown payload_encoding %q: want %q or %q", r.PayloadEncoding, EncodingUTF8, EncodingBase64)
	}
	if r.QoS > 2 {
		return nil, fmt.Errorf("qos %d out of range 0..2", r.QoS)
	}
	if r.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, r.Time)
		if err != nil {
			return nil, fmt.Errorf("time %q is not RFC 3339: %w", r.Time, err)
		}
		m.Received = t
	}
	if p := r.Properties; p != nil {
		m.PayloadFormat, m.MessageExpiry = p.PayloadFormat, p.MessageExpiry
		m.ContentType, m.ResponseTopic = p.ContentType, p.ResponseTopic
		m.UserProperties, m.SubscriptionIDs = p.UserProperties, p.SubscriptionIDs
		if p.CorrelationData != "" {
			b, err := base64.StdEncoding.DecodeString(p.CorrelationData)
			if err != nil {
				return nil, fmt.Errorf("correlation_data is not valid base64: %w", err)
			}
			m.CorrelationData = b
		}
	}
	return m, nil
}

// ParseRecord decodes one JSON line into a message.
func ParseRecord(line []byte) (*Message, error) {
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("not a JSON record: %w", err)
	}
	if r.Topic == "" {
		return nil, fmt.Errorf("record has no topic")
	}
	return r.Message()
}
