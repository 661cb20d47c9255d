package mqttconn

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	one, exp := byte(1), uint32(30)
	msgs := []*Message{
		{Topic: "a/b", Payload: []byte("hello"), QoS: 1, Retain: true, Received: time.Date(2026, 11, 25, 1, 2, 3, 456789012, time.UTC)},
		{Topic: "bin", Payload: []byte{0, 0xff, 0xfe, 'x'}, QoS: 2, PacketID: 7, Dup: true},
		{Topic: "p", Payload: []byte{}, PayloadFormat: &one, MessageExpiry: &exp, ContentType: "application/json",
			ResponseTopic: "r/1", CorrelationData: []byte{1, 2, 3},
			UserProperties: []UserProperty{{"k", "v"}, {"k", "v2"}}, SubscriptionIDs: []int{3}},
	}
	for _, m := range msgs {
		line, err := json.Marshal(NewRecord(m))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseRecord(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if len(m.Payload) == 0 {
			m.Payload = []byte{}
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", line, got, m)
		}
	}
}

func TestRecordEncodings(t *testing.T) {
	r := NewRecord(&Message{Topic: "t", Payload: []byte{0xff}})
	if r.PayloadEncoding != EncodingBase64 || r.Payload != "/w==" {
		t.Errorf("binary payload: %+v", r)
	}
	r = NewRecord(&Message{Topic: "t", Payload: []byte("é")})
	if r.PayloadEncoding != EncodingUTF8 || r.Payload != "é" {
		t.Errorf("text payload: %+v", r)
	}
	for _, bad := range []string{`{}`, `{"topic":"t","payload":"!","payload_encoding":"base64"}`, `{"topic":"t","payload_encoding":"rot13"}`, `{"topic":"t","qos":3}`, `nope`} {
		if _, err := ParseRecord([]byte(bad)); err == nil {
			t.Errorf("%s: want error", bad)
		}
	}
}
