package mqttconn

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// watchConn sits between an MQTT library and the transport. It remembers the
// first byte the broker sent (a TLS record there means a plain client hit a
// TLS port) and, when debug is set, writes one line per MQTT packet in each
// direction. Both protocol versions share it; it parses only the fixed
// header and the few fields worth showing.
type watchConn struct {
	net.Conn
	version Version
	debug   io.Writer
	st      *connState

	mu    sync.Mutex // guards first, nread and the debug writer
	first int        // first byte received, -1 before any
	nread int64
	head  []byte // the first bytes received, up to headSize

	out  *coalescer    // with Config.CoalesceWrites: writes go through it
	rbuf []byte        // reader side: owned by the single reading goroutine
	br   *bufio.Reader // reader side too; made on first Read
	wmu  sync.Mutex
	wbuf []byte // trace of written bytes
	pend []byte // start of a packet not yet complete
}

func newWatchConn(c net.Conn, v Version, debug io.Writer) *watchConn {
	return &watchConn{Conn: c, version: v, debug: debug, first: -1}
}

// readBufferSize bounds what one Read pulls off the socket. The MQTT
// libraries read a packet in small pieces (fixed header, length bytes,
// body), each a system call when unbuffered: profiling `mqtk sub` put a
// third of its CPU there. 4 KiB keeps per-connection memory small for
// bench's thousands of connections while batching busy streams.
const readBufferSize = 4096

func (w *watchConn) Read(p []byte) (int, error) {
	if w.br == nil {
		w.br = bufio.NewReaderSize(w.Conn, readBufferSize)
	}
	n, err := w.br.Read(p)
	if n > 0 {
		w.mu.Lock()
		if w.first < 0 {
			w.first = int(p[0])
		}
		if len(w.head) < headSize {
			w.head = append(w.head, p[:min(n, headSize-len(w.head))]...)
		}
		w.nread += int64(n)
		w.mu.Unlock()
		if w.debug != nil {
			w.rbuf = w.trace(w.rbuf, p[:n], "←")
		}
	}
	return n, err
}

// Write passes whole MQTT packets to the transport in one write each. The
// libraries write a packet in pieces (paho.golang writes header and body
// separately once the conn is wrapped), which over TLS or WebSocket means
// a record or frame per piece; holding back a partial packet until it is
// complete keeps that to one. Both libraries serialise whole-packet writes,
// so pieces of different packets never interleave here.
func (w *watchConn) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if len(w.pend) == 0 && wholePackets(p) == len(p) {
		return w.send(p)
	}
	w.pend = append(w.pend, p...)
	n := wholePackets(w.pend)
	if n == 0 {
		return len(p), nil
	}
	_, err := w.send(w.pend[:n])
	w.pend = append(w.pend[:0], w.pend[n:]...)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// send traces before writing, so that in the trace a packet always comes
// before the broker's answer to it.
func (w *watchConn) send(b []byte) (int, error) {
	if w.debug != nil {
		w.wbuf = w.trace(w.wbuf, b, "→")
	}
	if w.out != nil {
		return w.out.Write(b)
	}
	return w.Conn.Write(b)
}

// closeFlushTimeout bounds how long Close waits for coalesced writes to
// reach a peer that has stopped reading.
const closeFlushTimeout = time.Second

// Close sends what the coalescer still holds, then closes the connection.
func (w *watchConn) Close() error {
	if w.out == nil {
		return w.Conn.Close()
	}
	flushed := make(chan struct{})
	go func() { w.out.Close(); close(flushed) }()
	select {
	case <-flushed:
		return w.Conn.Close()
	case <-time.After(closeFlushTimeout):
		err := w.Conn.Close() // unblocks the flusher's write
		<-flushed
		return err
	}
}

// wholePackets returns the length of the complete MQTT packets at the start
// of b. A malformed length counts as complete, so bad bytes are passed on
// (and the broker says so) rather than held forever.
func wholePackets(b []byte) int {
	off := 0
	for off < len(b) {
		if len(b)-off < 2 {
			return off
		}
		rl, n, ok := varint(b[off+1:])
		if !ok {
			if len(b)-off > 5 {
				return len(b)
			}
			return off
		}
		if len(b)-off < 1+n+rl {
			return off
		}
		off += 1 + n + rl
	}
	return off
}

// sawTLS reports whether the broker's first byte was a TLS record type:
// 0x15 alert or 0x16 handshake. Neither is a valid first byte of a CONNACK.
func (w *watchConn) sawTLS() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first == 0x15 || w.first == 0x16
}

// headSize is how much of the start of the stream sawHTTP needs.
const headSize = 5

// sawHTTP reports whether the broker answered with HTTP: MQTT sent to a
// WebSocket listener gets an HTTP error response.
func (w *watchConn) sawHTTP() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.head) == "HTTP/"
}

func (w *watchConn) readNothing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nread == 0
}

// trace appends data to buf, prints every complete packet and returns what
// is left of the next one.
func (w *watchConn) trace(buf, data []byte, dir string) []byte {
	buf = append(buf, data...)
	for {
		if len(buf) < 2 {
			return buf
		}
		rl, n, ok := varint(buf[1:])
		if !ok {
			if len(buf) > 5 { // malformed length: stop tracing this stream
				w.line(dir + " (unparseable bytes)")
				return nil
			}
			return buf
		}
		total := 1 + n + rl
		if len(buf) < total {
			return buf
		}
		w.line(dir + " " + describe(buf[0], buf[1+n:total], w.version))
		buf = append(buf[:0], buf[total:]...)
	}
}

func (w *watchConn) line(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.debug, "mqtk: %s\n", s)
}

// varint decodes an MQTT variable byte integer; ok is false when b does not
// yet hold all of it.
func varint(b []byte) (v, n int, ok bool) {
	mult := 1
	for i := 0; i < 4 && i < len(b); i++ {
		v += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return v, i + 1, true
		}
		mult *= 128
	}
	return 0, 0, false
}

var packetNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
	"PINGRESP", "DISCONNECT", "AUTH"}

// pr is a tiny bounds-checked reader over a packet body.
type pr struct {
	b   []byte
	bad bool
}

func (r *pr) u8() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *pr) u16() uint16 {
	if len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *pr) str() string {
	n := int(r.u16())
	if len(r.b) < n {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// skipProps skips an MQTT 5 property block.
func (r *pr) skipProps() {
	n, k, ok := varint(r.b)
	if !ok || len(r.b) < k+n {
		r.bad = true
		return
	}
	r.b = r.b[k+n:]
}

// props reads an MQTT 5 property block and returns the properties worth
// showing when debugging a connection, as name=value.
func (r *pr) props() []string {
	n, k, ok := varint(r.b)
	if !ok || len(r.b) < k+n {
		r.bad = true
		return nil
	}
	p := &pr{b: r.b[k : k+n]}
	r.b = r.b[k+n:]
	var out []string
	for len(p.b) > 0 && !p.bad {
		id := p.u8()
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			v := p.u8()
			switch id {
			case 0x24:
				out = append(out, fmt.Sprintf("maximum-qos=%d", v))
			case 0x17:
				// Worth seeing: 0 makes some brokers strip user properties.
				out = append(out, fmt.Sprintf("request-problem-info=%d", v))
			}
		case 0x13, 0x21, 0x22, 0x23: // two-byte integer
			v := p.u16()
			switch id {
			case 0x13:
				out = append(out, fmt.Sprintf("server-keepalive=%d", v))
			case 0x21:
				out = append(out, fmt.Sprintf("receive-maximum=%d", v))
			case 0x22:
				out = append(out, fmt.Sprintf("topic-alias-maximum=%d", v))
			case 0x23:
				out = append(out, fmt.Sprintf("topic-alias=%d", v))
			}
		case 0x02, 0x11, 0x18, 0x27: // four-byte integer
			if len(p.b) < 4 {
				p.bad = true
				break
			}
			v := binary.BigEndian.Uint32(p.b)
			p.b = p.b[4:]
			switch id {
			case 0x11:
				out = append(out, fmt.Sprintf("session-expiry=%d", v))
			case 0x27:
				out = append(out, fmt.Sprintf("maximum-packet-size=%d", v))
			}
		case 0x0B: // variable byte integer
			v, k, ok := varint(p.b)
			if !ok {
				p.bad = true
				break
			}
			p.b = p.b[k:]
			out = append(out, fmt.Sprintf("subscription-id=%d", v))
		case 0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F: // UTF-8 string
			v := p.str()
			switch id {
			case 0x12:
				out = append(out, fmt.Sprintf("assigned-client-id=%q", v))
			case 0x1F:
				out = append(out, fmt.Sprintf("reason-string=%q", v))
			}
		case 0x09, 0x16: // binary data
			p.str()
		case 0x26: // user property
			p.str()
			p.str()
		default:
			p.bad = true
		}
	}
	return out
}

func describe(h byte, body []byte, v Version) string {
	t := h >> 4
	name := packetNames[t]
	r := &pr{b: body}
	var f []string
	reason := func() {
		if v == V5 && len(r.b) > 0 {
			c := r.u8()
			f = append(f, fmt.Sprintf("reason=0x%02X (%s)", c, ReasonName(c)))
		}
	}
	switch t {
	case 1: // CONNECT
		proto := r.str()
		level := r.u8()
		flags := r.u8()
		ka := r.u16()
		var props []string
		if level == 5 {
			props = r.props()
		}
		id := r.str()
		f = append(f, fmt.Sprintf("protocol=%s level=%d id=%q clean=%t keepalive=%d", proto, level, id, flags&0x02 != 0, ka))
		f = append(f, props...)
		if flags&0x04 != 0 {
			f = append(f, fmt.Sprintf("will-qos=%d will-retain=%t", flags>>3&3, flags&0x20 != 0))
		}
		if flags&0x80 != 0 {
			f = append(f, "username")
		}
		if flags&0x40 != 0 {
			f = append(f, "password")
		}
	case 2: // CONNACK
		sp := r.u8()
		c := r.u8()
		if v == V5 {
			f = append(f, fmt.Sprintf("session-present=%t reason=0x%02X (%s)", sp&1 != 0, c, ReasonName(c)))
			if len(r.b) > 0 {
				f = append(f, r.props()...)
			}
		} else {
			f = append(f, fmt.Sprintf("session-present=%t rc=%d", sp&1 != 0, c))
		}
	case 3: // PUBLISH
		qos := h >> 1 & 3
		topic := r.str()
		f = append(f, fmt.Sprintf("topic=%s qos=%d", topic, qos))
		if qos > 0 {
			f = append(f, fmt.Sprintf("id=%d", r.u16()))
		}
		if h&1 != 0 {
			f = append(f, "retain")
		}
		if h&8 != 0 {
			f = append(f, "dup")
		}
		if v == V5 {
			r.skipProps()
		}
		f = append(f, fmt.Sprintf("len=%d", len(r.b)))
	case 4, 5, 6, 7: // PUBACK, PUBREC, PUBREL, PUBCOMP
		f = append(f, fmt.Sprintf("id=%d", r.u16()))
		reason()
	case 8, 10: // SUBSCRIBE, UNSUBSCRIBE
		f = append(f, fmt.Sprintf("id=%d", r.u16()))
		if v == V5 {
			r.skipProps()
		}
		for len(r.b) > 0 && !r.bad {
			s := r.str()
			if t == 8 {
				o := r.u8()
				s = fmt.Sprintf("%s(qos=%d)", s, o&3)
			}
			f = append(f, "filter="+s)
		}
	case 9, 11: // SUBACK, UNSUBACK
		f = append(f, fmt.Sprintf("id=%d", r.u16()))
		if v == V5 {
			r.skipProps()
		}
		if len(r.b) > 0 {
			codes := make([]string, len(r.b))
			for i, c := range r.b {
				codes[i] = fmt.Sprintf("0x%02X", c)
			}
			f = append(f, "codes="+strings.Join(codes, ","))
		}
	case 14, 15: // DISCONNECT, AUTH
		reason()
		if v == V5 && len(r.b) > 0 {
			f = append(f, r.props()...)
		}
	}
	if r.bad {
		f = append(f, "(truncated)")
	}
	if len(f) == 0 {
		return name
	}
	return name + " " + strings.Join(f, " ")
}
