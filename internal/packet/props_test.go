package packet

import (
	"bytes"
	"testing"
)

// hasByValue is the definition of Has: marked, or a non-zero value.
func hasByValue(p *Properties, id PropID) bool {
	if p.present&(1<<id) != 0 {
		return true
	}
	v := p.get(id)
	return v.num != 0 || v.str != "" || len(v.bin) != 0 || v.n != 0
}

// TestHasAndMask: Has and mask, which the encoder walks, agree with each
// other and with the definition, for every property alone (set and
// marked) and for generated property sets.
func TestHasAndMask(t *testing.T) {
	var sets []Properties
	for _, id := range propOrder {
		var marked Properties
		marked.Mark(id)
		sets = append(sets, marked)
		g := &gen{b: bytes.Repeat([]byte{0xFF}, 64), v: V5}
		one := g.props(^propCtx(0))
		for _, other := range propOrder {
			if other != id {
				one.Delete(other)
			}
		}
		one.present = 0
		sets = append(sets, one)
	}
	for _, seed := range genSeeds(V5) {
		g := &gen{b: seed, v: V5}
		sets = append(sets, g.props(^propCtx(0)), g.props(inPublish), g.props(inConnack))
	}
	for i := range sets {
		p := &sets[i]
		m := p.mask()
		for _, id := range propOrder {
			want := hasByValue(p, id)
			if p.Has(id) != want || (m&(1<<id) != 0) != want {
				t.Errorf("set %d, %s: Has %v, mask %v, want %v", i, id, p.Has(id), m&(1<<id) != 0, want)
			}
		}
		if m&^allProps != 0 {
			t.Errorf("set %d: mask has bits of no property: %#x", i, m&^allProps)
		}
	}
}

// TestPropertyIdentifierOver255: identifiers are one byte in MQTT 5
// (2.2.2.2); a longer variable byte integer must not be truncated into a
// valid identifier. 0x81 0x02 is 257, which truncates to 0x01.
func TestPropertyIdentifierOver255(t *testing.T) {
	for _, in := range [][]byte{
		pk(0x30, s("a"), pr(b(0x81, 0x02, 0x01))),                // 257 → payload-format-indicator
		pk(0x30, s("a"), pr(b(0xA6, 0x02), s("k"), s("v"))),      // 294 → user-property
		pk(0x40, b(0, 1, 0x80), pr(b(0x9F, 0x80, 0x01), s("r"))), // 16415 → reason-string
	} {
		_, err := NewReader(bytes.NewReader(in), 0).ReadPacket(V5)
		if CodeOf(err) != MalformedPacket {
			t.Errorf("% x: got %v, want a malformed packet", in, err)
		}
	}
}

// TestDecodePublishAllocs holds the decoder to what BENCHMARKS.md records:
// a PUBLISH decoded into a reused value costs one allocation (the string
// its topic and string properties share) and, with user properties, one
// more for their slice, however many there are.
func TestDecodePublishAllocs(t *testing.T) {
	users := []UserProperty{{"a", "1"}, {"b", "2"}, {"a", "3"}, {"c", ""}, {"d", "4"}}
	for _, tc := range []struct {
		name string
		v    Version
		p    *Publish
		max  float64
	}{
		{"v311", V311, &Publish{Topic: "sensors/kitchen/temp", QoS: 1, PacketID: 1, Payload: []byte("x")}, 1},
		{"v5", V5, &Publish{Topic: "sensors/kitchen/temp", QoS: 1, PacketID: 1, Payload: []byte("x")}, 1},
		{"v5 strings", V5, &Publish{Topic: "t", Properties: Properties{ContentType: "c", ResponseTopic: "r",
			CorrelationData: []byte("d"), PayloadFormat: 1, MessageExpiry: 9, TopicAlias: 2}}, 1},
		{"v5 users", V5, &Publish{Topic: "t", Properties: Properties{ContentType: "c", User: users}}, 2},
	} {
		wire, err := Encode(tc.p, tc.v)
		if err != nil {
			t.Fatal(err)
		}
		_, n, _ := decodeVarint(wire[1:])
		header, body := wire[0], wire[1+n:]
		var p Publish
		allocs := testing.AllocsPerRun(100, func() {
			if err := DecodeInto(&p, header, body, tc.v); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > tc.max {
			t.Errorf("%s: %v allocations per decode, want at most %v", tc.name, allocs, tc.max)
		}
		if ok, diff := samePacket(&p, tc.p, tc.v); !ok {
			t.Errorf("%s:\n%s", tc.name, diff)
		}
		if tc.p.Properties.User != nil && cap(p.Properties.User) != len(users) {
			t.Errorf("%s: user property slice of capacity %d for %d", tc.name, cap(p.Properties.User), len(users))
		}
	}
}

// TestCountUser: the pre-count agrees with what the decoder keeps, and
// stops without panicking on blocks it cannot walk.
func TestCountUser(t *testing.T) {
	for _, tc := range []struct {
		block []byte
		want  int
	}{
		{nil, 0},
		{bytes.Join([][]byte{user("a", "b")}, nil), 1},
		{bytes.Join([][]byte{b(0x01, 1), user("a", "b"), b(0x0B, 0x80, 0x01), user("", ""), b(0x03), s("ct"), user("x", "y")}, nil), 3},
		{b(0x26, 0, 5, 'a'), 1},                                       // cut short in the name: counted, then stops
		{b(0x26, 0, 1, 'a', 0), 1},                                    // cut short in the value
		{b(0x02, 0, 0), 0},                                            // a u32 cut short
		{b(0x0B, 0x80, 0x80, 0x80, 0x80, 0x80), 0},                    // a varint of five bytes
		{b(0x81, 0x02, 0x26), 0},                                      // an identifier over 0xFF
		{b(0x05, 0x26, 0, 0, 0, 0), 0},                                // no property 0x05
		{bytes.Join([][]byte{user("a", "b"), b(0x09, 0, 9)}, nil), 1}, // binary past the end
	} {
		if got := countUser(tc.block); got != tc.want {
			t.Errorf("% x: %d, want %d", tc.block, got, tc.want)
		}
	}
}

// TestValueRules: the decoder calls checkValue only for the properties in
// valueRules, so every property checkValue can refuse must be there.
func TestValueRules(t *testing.T) {
	bad := []propValue{{}, {num: 2}, {num: 0xFFFFFFFF}, {str: "a/#"}, {ids: []uint32{0}, n: 1}}
	for _, id := range propOrder {
		refuses := false
		for _, v := range bad {
			refuses = refuses || checkValue(id, v, ^propCtx(0)) != nil
		}
		if in := valueRules&(1<<id) != 0; in != refuses {
			t.Errorf("%s: in valueRules %v, but checkValue refuses a value: %v", id, in, refuses)
		}
	}
}
