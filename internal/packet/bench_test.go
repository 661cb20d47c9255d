package packet

import (
	"bytes"
	"io"
	"testing"

	paho5 "github.com/eclipse/paho.golang/packets"
	paho3 "github.com/eclipse/paho.mqtt.golang/packets"
)

// Decoding and encoding one PUBLISH with our codec and with those of
// paho.golang (MQTT 5) and paho.mqtt.golang (3.1.1),
// for BENCHMARKS.md. Run with
//
//	go test -run '^$' -bench . -benchmem -count 3 ./internal/packet/
//
// The packet: topic "sensors/kitchen/temp", QoS 1, a 32-byte payload,
// either without properties or with content type, response topic,
// correlation data and two user properties.

type benchCase struct {
	name string
	v    Version
	p    *Publish
}

func benchCases() []benchCase {
	payload := []byte(`{"t":21.5,"unit":"C","seq":1234}`) // 32 bytes
	if len(payload) != 32 {
		panic("payload is not 32 bytes")
	}
	plain := &Publish{Topic: "sensors/kitchen/temp", QoS: 1, PacketID: 42, Payload: payload}
	props := *plain
	props.Properties = Properties{ContentType: "application/json", ResponseTopic: "replies/kitchen",
		CorrelationData: []byte("req-0001"), User: []UserProperty{{"site", "home"}, {"sensor", "dht22"}}}
	return []benchCase{
		{"v5", V5, plain},
		{"v5-4props", V5, &props},
		{"v311", V311, plain},
	}
}

// repeatReader yields the same bytes over and over without allocating,
// so stream decoders can read one packet per iteration for ever.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// exactReader is a repeatReader that never reads ahead past a packet,
// so a decoder reading from it sees each read return at most what is left
// of the current packet, as from a socket that delivers one at a time.
type exactReader struct{ repeatReader }

func (r *exactReader) Read(p []byte) (int, error) {
	if rest := len(r.b) - r.off; len(p) > rest {
		p = p[:rest]
	}
	return r.repeatReader.Read(p)
}

func mustEncode(b *testing.B, p Packet, v Version) (wire []byte, header byte, body []byte) {
	wire, err := Encode(p, v)
	if err != nil {
		b.Fatal(err)
	}
	_, n, err := decodeVarint(wire[1:])
	if err != nil {
		b.Fatal(err)
	}
	return wire, wire[0], wire[1+n:]
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, bc := range benchCases() {
		wire, header, body := mustEncode(b, bc.p, bc.v)
		check := func(b *testing.B, topic string, payload []byte) {
			if topic != bc.p.Topic || !bytes.Equal(payload, bc.p.Payload) {
				b.Fatalf("decoded topic %q payload %q", topic, payload)
			}
		}

		b.Run(bc.name+"/ours-DecodeInto", func(b *testing.B) {
			var p Publish
			if err := DecodeInto(&p, header, body, bc.v); err != nil {
				b.Fatal(err)
			}
			check(b, p.Topic, p.Payload)
			for b.Loop() {
				if err := DecodeInto(&p, header, body, bc.v); err != nil {
					b.Fatal(err)
				}
			}
		})

		b.Run(bc.name+"/ours-ReadPacket", func(b *testing.B) {
			rd := NewReader(&exactReader{repeatReader{b: wire}}, 0)
			for b.Loop() {
				if _, err := rd.ReadPacket(bc.v); err != nil {
					b.Fatal(err)
				}
			}
		})

		if bc.v == V5 {
			b.Run(bc.name+"/paho.golang", func(b *testing.B) {
				r := &exactReader{repeatReader{b: wire}}
				cp, err := paho5.ReadPacket(r)
				if err != nil {
					b.Fatal(err)
				}
				check(b, cp.Content.(*paho5.Publish).Topic, cp.Content.(*paho5.Publish).Payload)
				for b.Loop() {
					if _, err := paho5.ReadPacket(r); err != nil {
						b.Fatal(err)
					}
				}
			})
		} else {
			b.Run(bc.name+"/paho.mqtt.golang", func(b *testing.B) {
				r := &exactReader{repeatReader{b: wire}}
				cp, err := paho3.ReadPacket(r)
				if err != nil {
					b.Fatal(err)
				}
				check(b, cp.(*paho3.PublishPacket).TopicName, cp.(*paho3.PublishPacket).Payload)
				for b.Loop() {
					if _, err := paho3.ReadPacket(r); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEncodePublish(b *testing.B) {
	for _, bc := range benchCases() {
		want, _, _ := mustEncode(b, bc.p, bc.v)

		b.Run(bc.name+"/ours-Append", func(b *testing.B) {
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = bc.p.Append(buf[:0], bc.v); err != nil {
					b.Fatal(err)
				}
			}
		})

		if bc.v == V5 {
			b.Run(bc.name+"/paho.golang", func(b *testing.B) {
				p := toPaho5(bc.p).(*paho5.Publish)
				var got bytes.Buffer
				if _, err := p.WriteTo(&got); err != nil {
					b.Fatal(err)
				}
				checkSame(b, bc, got.Bytes(), want)
				for b.Loop() {
					if _, err := p.WriteTo(io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			})
		} else {
			b.Run(bc.name+"/paho.mqtt.golang", func(b *testing.B) {
				p := toPaho3(bc.p).(*paho3.PublishPacket)
				var got bytes.Buffer
				if err := p.Write(&got); err != nil {
					b.Fatal(err)
				}
				checkSame(b, bc, got.Bytes(), want)
				for b.Loop() {
					if err := p.Write(io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// checkSame makes sure another codec encoded the same packet: the same
// bytes, or (properties may come in another order) the same decoded value.
func checkSame(b *testing.B, bc benchCase, got, want []byte) {
	b.Helper()
	if bytes.Equal(got, want) {
		return
	}
	p, err := NewReader(bytes.NewReader(got), 0).ReadPacket(bc.v)
	if err != nil {
		b.Fatalf("cannot decode % x: %v", got, err)
	}
	if ok, diff := samePacket(p, bc.p, bc.v); !ok {
		b.Fatalf("encoded another packet:\n%s", diff)
	}
}
