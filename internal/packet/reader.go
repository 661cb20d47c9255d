package packet

import (
	"cmp"
	"errors"
	"fmt"
	"io"
)

// Reader reads whole packets from a byte stream. It checks the declared
// size against a maximum before allocating anything of that size, and even
// under the maximum it grows a large packet's buffer only as its bytes
// arrive, so a peer that declares 256 MB and sends nothing costs nothing.
//
// A Reader is used by one goroutine at a time.
type Reader struct {
	r   io.Reader
	max int // largest whole packet accepted, fixed header included

	buf  []byte // buffered input: buf[start:end] is unread
	s, e int
	init int // size of the first buffer

	scratch []byte // body buffer for packets that keep no references
}

// The initial and largest buffered-read sizes. An idle connection holds
// only the small buffer; a busy one grows to readMax and batches its reads.
const (
	readInitial = 512
	readMax     = 64 << 10
	// growStep bounds how much is allocated ahead of bytes that have
	// arrived when reading a large body.
	growStep = 64 << 10
)

// NewReader reads from r, refusing packets larger than maxPacket bytes
// (fixed header included); 0 means MQTT's own limit.
func NewReader(r io.Reader, maxPacket int) *Reader {
	if maxPacket <= 0 || maxPacket > MaxRemainingLength+5 {
		maxPacket = MaxRemainingLength + 5
	}
	return &Reader{r: r, max: maxPacket}
}

// SetInitialSize sets the size of the read-ahead buffer allocated when
// reading starts (and again after Release); it grows up to 64 KiB for busy
// streams.
func (rd *Reader) SetInitialSize(n int) {
	if n > 0 {
		rd.init = min(n, readMax)
	}
}

// SetMaxPacketSize changes the limit for the packets read from now on.
func (rd *Reader) SetMaxPacketSize(n int) {
	if n <= 0 || n > MaxRemainingLength+5 {
		n = MaxRemainingLength + 5
	}
	rd.max = n
}

// Buffered is how many read-ahead bytes the Reader holds.
func (rd *Reader) Buffered() int { return rd.e - rd.s }

// Release drops the read-ahead buffer if it is empty, so an idle
// connection holds no buffer at all.
func (rd *Reader) Release() {
	if rd.s == rd.e {
		rd.buf, rd.s, rd.e = nil, 0, 0
		rd.scratch = nil
	}
}

// Fill reads once from the stream into the read-ahead buffer. A caller
// that waits for the next packet under a deadline of its own (the broker
// waits only so long before it parks an idle connection) calls Fill first:
// a deadline that expires here leaves nothing half read, whereas one that
// expires inside Next may split a packet.
func (rd *Reader) Fill() error { return rd.fill() }

// Whole reports whether the read-ahead buffer holds a whole packet, so
// that Next will return it (or its error) without reading.
func (rd *Reader) Whole() bool {
	if rd.e-rd.s < 2 {
		return false
	}
	length, n, err := decodeVarint(rd.buf[rd.s+1 : rd.e])
	if err != nil {
		return n != 0 // malformed: Next fails without reading
	}
	return rd.e-rd.s >= 1+n+int(length)
}

// ErrTooLarge is wrapped by the error Next returns for a packet over the
// maximum; its code is PacketTooLarge [MQTT-3.1.2-24] (the server may send
// DISCONNECT 0x95 before closing).
var ErrTooLarge = &Error{Code: PacketTooLarge, Msg: "packet too large"}

// fill reads more bytes into the buffer; it returns io.EOF only when the
// stream ended with nothing buffered.
func (rd *Reader) fill() error {
	if rd.s > 0 && rd.s == rd.e {
		rd.s, rd.e = 0, 0
	}
	if rd.e == len(rd.buf) {
		if rd.s > 0 {
			copy(rd.buf, rd.buf[rd.s:rd.e])
			rd.e -= rd.s
			rd.s = 0
		} else {
			n := len(rd.buf) * 2
			if n == 0 {
				n = cmp.Or(rd.init, readInitial)
			}
			n = min(n, readMax)
			if n <= len(rd.buf) {
				return nil // full of unread bytes; caller consumes first
			}
			nb := make([]byte, n)
			copy(nb, rd.buf[rd.s:rd.e])
			rd.buf, rd.e, rd.s = nb, rd.e-rd.s, 0
		}
	}
	n, err := rd.r.Read(rd.buf[rd.e:])
	rd.e += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Next reads one packet and returns its first byte and its body. The body
// is only valid until the next call unless keep is true, in which case it
// is a fresh slice the caller owns (decoded packets refer into it).
// Stream errors are returned as they are (io.EOF at a packet boundary,
// io.ErrUnexpectedEOF inside a packet); protocol errors as *Error.
func (rd *Reader) Next(keep func(header byte) bool) (header byte, body []byte, err error) {
	// Fixed header: one type byte and up to four length bytes.
	for rd.e-rd.s < 2 {
		if err := rd.fill(); err != nil {
			if rd.e-rd.s > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
	}
	var length uint32
	var n int
	for {
		length, n, err = decodeVarint(rd.buf[rd.s+1 : rd.e])
		if err == nil {
			break
		}
		if n != 0 { // more than four bytes: malformed [MQTT-1.5.5-1]
			return 0, nil, err
		}
		if ferr := rd.fill(); ferr != nil {
			if errors.Is(ferr, io.EOF) {
				ferr = io.ErrUnexpectedEOF
			}
			return 0, nil, ferr
		}
	}
	header = rd.buf[rd.s]
	total := 1 + n + int(length)
	if total > rd.max {
		// Checked before any allocation of that size.
		return header, nil, fmt.Errorf("%s of %d bytes, over the maximum of %d: %w", Type(header>>4), total, rd.max, ErrTooLarge)
	}
	rd.s += 1 + n
	size := int(length)
	owned := keep != nil && keep(header)
	if !owned && size <= readMax {
		// A body that fits the read buffer is read in place.
		if len(rd.buf) < size {
			nb := make([]byte, max(size, 2*len(rd.buf)))
			copy(nb, rd.buf[rd.s:rd.e])
			rd.buf, rd.e, rd.s = nb, rd.e-rd.s, 0
		}
		for rd.e-rd.s < size {
			if len(rd.buf)-rd.s < size {
				copy(rd.buf, rd.buf[rd.s:rd.e])
				rd.e -= rd.s
				rd.s = 0
			}
			if err := rd.fill(); err != nil {
				return 0, nil, unexpected(err)
			}
		}
		body = rd.buf[rd.s : rd.s+size : rd.s+size]
		rd.s += size
		return header, body, nil
	}
	// The body goes to its own buffer: owned by the caller, or larger than
	// the read buffer. Its capacity grows as bytes arrive.
	if owned {
		body = make([]byte, 0, min(size, growStep))
	} else {
		body = rd.scratch[:0]
		if cap(body) > readMax && size < cap(body)/4 {
			body = nil // do not keep a huge scratch for small packets
		}
	}
	take := min(rd.e-rd.s, size)
	body = append(body, rd.buf[rd.s:rd.s+take]...)
	rd.s += take
	for len(body) < size {
		if cap(body) == len(body) {
			nb := make([]byte, len(body), min(size, len(body)+max(growStep, len(body))))
			copy(nb, body)
			body = nb
		}
		m, err := rd.r.Read(body[len(body):min(size, cap(body))])
		body = body[:len(body)+m]
		if m == 0 {
			if err == nil {
				// As in fill: a reader that returns nothing and no error
				// would otherwise spin here for ever.
				err = io.ErrNoProgress
			}
			return 0, nil, unexpected(err)
		}
	}
	if !owned {
		rd.scratch = body
	}
	return header, body, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// keepsBody reports whether a decoded packet of this type refers into its
// body, so the body must be the caller's own: only binary fields do
// (payloads, correlation and authentication data, the password); strings
// are copied.
func keepsBody(header byte) bool {
	switch Type(header >> 4) {
	case TypePublish, TypeConnect, TypeAuth, TypeConnack:
		return true
	}
	return false
}

// ReadPacket reads and decodes one packet for version v (ignored for
// CONNECT, which names its version).
func (rd *Reader) ReadPacket(v Version) (Packet, error) {
	h, body, err := rd.Next(keepsBody)
	if err != nil {
		return nil, err
	}
	return Decode(h, body, v)
}
