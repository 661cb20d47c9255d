package packet

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

// fuzzMaxPacket is the Reader's limit in FuzzDecode: small, so that inputs
// exercise the limit as well as the packets under it.
const fuzzMaxPacket = 4096

var fuzzVersions = [...]Version{V31, V311, V5}

// FuzzDecode feeds arbitrary bytes to a Reader under every version. It
// must not panic or hang, and every packet it returns must re-encode, and
// the re-encoding must decode and encode to the same bytes again.
func FuzzDecode(f *testing.F) {
	for _, v := range fuzzVersions {
		for _, p := range samples(v) {
			b, err := Encode(p, v)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
		for _, s := range genSeeds(v) {
			b, err := Encode(genPacket(s, v), v)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, tc := range validateCases {
		f.Add(tc.in)
	}
	// A stream of several packets, and a header declaring far more than
	// the limit.
	f.Add([]byte{0xC0, 0, 0xD0, 0, 0x40, 2, 0, 1, 0xE0, 0})
	f.Add([]byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range fuzzVersions {
			decodeStream(t, b, v)
		}
	})
}

// decodeStream reads packets from b until the first error and checks that
// each one is a fixed point of encode∘decode after one step.
func decodeStream(t *testing.T, b []byte, v Version) {
	t.Helper()
	rd := NewReader(bytes.NewReader(b), fuzzMaxPacket)
	// Every packet is at least two bytes long, so the loop ends.
	for range len(b)/2 + 1 {
		p, err := rd.ReadPacket(v)
		if err != nil {
			if p != nil && p.Type() != TypeConnect {
				t.Fatalf("v%s: ReadPacket returned a %s with error %v", v, p.Type(), err)
			}
			return
		}
		// CONNECT names its own version; everything else uses v.
		pv := v
		if c, ok := p.(*Connect); ok {
			pv = c.Version
		}
		enc1, err := Encode(p, pv)
		if err != nil {
			t.Fatalf("v%s: decoded %s does not re-encode: %v\ninput % x", v, Describe(p, pv), err, b)
		}
		p2, err := NewReader(bytes.NewReader(enc1), fuzzMaxPacket+16).ReadPacket(pv)
		if err != nil {
			t.Fatalf("v%s: re-encoded %s does not decode: %v\nre-encoded % x\ninput % x", v, Describe(p, pv), err, enc1, b)
		}
		enc2, err := Encode(p2, pv)
		if err != nil {
			t.Fatalf("v%s: second re-encoding of %s: %v", v, Describe(p2, pv), err)
		}
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("v%s: encode(decode(x)) is not a fixed point:\n% x\n% x\ninput % x", v, enc1, enc2, b)
		}
	}
	t.Fatalf("v%s: more packets than the input can hold", v)
}

// failReader fails the test if the Reader reads from it.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("the Reader read past the fixed header of a packet over its limit")
	return 0, io.EOF
}

// TestReaderTooLarge: a packet declared larger than the limit is refused
// from its fixed header alone, with PacketTooLarge.
func TestReaderTooLarge(t *testing.T) {
	for _, h := range [][]byte{
		{0x30, 0xFF, 0xFF, 0xFF, 0x7F}, // PUBLISH, 268,435,455 bytes
		{0x40, 0xFF, 0xFF, 0xFF, 0x7F}, // PUBACK, read into scratch, not owned
		{0x10, 0x81, 0x80, 0x40},       // CONNECT, 1 MiB + 1
	} {
		rd := NewReader(io.MultiReader(bytes.NewReader(h), failReader{t}), 1<<20)
		p, err := rd.ReadPacket(V5)
		if !errors.Is(err, ErrTooLarge) || CodeOf(err) != PacketTooLarge || p != nil {
			t.Errorf("% x: got %v, %v; want an error wrapping ErrTooLarge with code PacketTooLarge", h, p, err)
		}
	}
}

// TestReaderNoAllocationAhead: a peer that declares the largest packet
// MQTT allows and then sends a few bytes and closes costs the Reader next
// to nothing, even when the limit allows that size.
func TestReaderNoAllocationAhead(t *testing.T) {
	const limit = 1 << 20
	for _, first := range []byte{0x30, 0x40, 0x10} {
		in := append([]byte{first, 0xFF, 0xFF, 0xFF, 0x7F}, bytes.Repeat([]byte{'x'}, 100)...)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		rd := NewReader(bytes.NewReader(in), MaxRemainingLength+5)
		_, err := rd.ReadPacket(V5)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("0x%02x: got %v, want io.ErrUnexpectedEOF", first, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > limit {
			t.Errorf("0x%02x: the Reader allocated %d bytes for a 105-byte input", first, n)
		}
		allocs := testing.AllocsPerRun(10, func() {
			NewReader(bytes.NewReader(in), MaxRemainingLength+5).ReadPacket(V5)
		})
		if allocs > 10 {
			t.Errorf("0x%02x: %v allocations per read", first, allocs)
		}
	}
}

// slowReader returns one byte per Read, the worst case for buffering.
type slowReader struct{ b []byte }

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

// TestReaderByteAtATime: packets that arrive one byte per read decode
// the same as packets that arrive at once.
func TestReaderByteAtATime(t *testing.T) {
	for _, v := range fuzzVersions {
		var stream []byte
		var wants []Packet
		ps := samples(v)
		big := &Publish{Topic: "big", Payload: bytes.Repeat([]byte{7}, 3*readMax+1)}
		ps = append(ps, big)
		for _, p := range ps {
			b, err := Encode(p, v)
			if err != nil {
				t.Fatal(err)
			}
			stream = append(stream, b...)
			want, err := NewReader(bytes.NewReader(b), 0).ReadPacket(v)
			if err != nil {
				t.Fatal(err)
			}
			wants = append(wants, want)
		}
		rd := NewReader(&slowReader{b: stream}, 0)
		for _, want := range wants {
			got, err := rd.ReadPacket(v)
			if err != nil {
				t.Fatalf("v%s %s: %v", v, want.Type(), err)
			}
			if ok, diff := samePacket(got, want, v); !ok {
				t.Errorf("v%s:\n%s", v, diff)
			}
		}
		if _, err := rd.ReadPacket(v); err != io.EOF {
			t.Errorf("v%s: at the end got %v, want io.EOF", v, err)
		}
	}
}

// zeroReader returns (0, nil) forever, which io.Reader discourages but
// allows; the Reader must give up rather than spin.
type zeroReader struct{ b []byte }

func (r *zeroReader) Read(p []byte) (int, error) {
	if len(r.b) > 0 {
		n := copy(p, r.b)
		r.b = r.b[n:]
		return n, nil
	}
	return 0, nil
}

func TestReaderNoProgress(t *testing.T) {
	for _, in := range [][]byte{
		nil,
		{0x30},
		{0x30, 0x80},
		{0x30, 10, 0, 1},
		append([]byte{0x30, 0x81, 0x80, 0x04, 0, 1, 'a'}, make([]byte, 1000)...), // a body larger than the read buffer
		append([]byte{0x40, 0x81, 0x80, 0x04, 0, 1}, make([]byte, 1000)...),
	} {
		_, err := NewReader(&zeroReader{b: in}, 0).ReadPacket(V5)
		if !errors.Is(err, io.ErrNoProgress) {
			t.Errorf("% x…: got %v, want io.ErrNoProgress", in[:min(len(in), 8)], err)
		}
	}
}

// TestReaderFillWhole: Fill reads what has arrived without taking a
// packet, and Whole tells whether Next can return one without reading —
// what the broker relies on to wait for a packet's first bytes under a
// deadline of its own.
func TestReaderFillWhole(t *testing.T) {
	b, err := Encode(&Publish{Topic: "a/b", Payload: []byte("hello")}, V311)
	if err != nil {
		t.Fatal(err)
	}
	rd := NewReader(&slowReader{b: append(b, 0xC0)}, 0) // then a PINGREQ's first byte only
	if rd.Whole() {
		t.Fatal("Whole with nothing read")
	}
	for i := 1; i < len(b); i++ {
		if err := rd.Fill(); err != nil {
			t.Fatalf("Fill %d: %v", i, err)
		}
		if rd.Buffered() != i || rd.Whole() {
			t.Fatalf("after %d of %d bytes: Buffered %d, Whole %v", i, len(b), rd.Buffered(), rd.Whole())
		}
	}
	if err := rd.Fill(); err != nil || !rd.Whole() {
		t.Fatalf("whole packet buffered: Fill %v, Whole %v", err, rd.Whole())
	}
	p, err := rd.ReadPacket(V311)
	if err != nil || p.(*Publish).Topic != "a/b" {
		t.Fatalf("ReadPacket after Fill: %v, %v", p, err)
	}
	if err := rd.Fill(); err != nil || rd.Whole() {
		t.Fatalf("one byte of a PINGREQ: Fill %v, Whole %v", err, rd.Whole())
	}
	if _, err := rd.ReadPacket(V311); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("PINGREQ cut short: got %v, want io.ErrUnexpectedEOF", err)
	}
	// A length of more than four bytes is malformed: Next fails without
	// reading more, so the packet counts as whole.
	rd = NewReader(bytes.NewReader([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}), 0)
	if err := rd.Fill(); err != nil || !rd.Whole() {
		t.Fatalf("malformed length: Fill %v, Whole %v", err, rd.Whole())
	}
}
