package mqttconn

// watchConn, the wrapper every client connection's bytes pass through:
// buffered reads, whole-packet writes (coalesced with CoalesceWrites), the
// first bytes the broker sent (which diagnose reads to tell a TLS or HTTP
// port from an MQTT one), and the -d packet trace.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
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

	// fixConnect, when set, rewrites the first CONNECT written (see
	// willPropsFix); it is used once, under wmu.
	fixConnect func([]byte) ([]byte, error)

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
	if fix := w.fixConnect; fix != nil && len(b) > 0 && packet.Type(b[0]>>4) == packet.TypeConnect {
		w.fixConnect = nil
		if nb, err := fix(b); err == nil {
			if _, err := w.send(nb); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
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
		rl, n, err := packet.ParseVarint(b[off+1:])
		if err != nil {
			if n > 0 {
				return len(b)
			}
			return off
		}
		if len(b)-off < 1+n+int(rl) {
			return off
		}
		off += 1 + n + int(rl)
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

// connack311 reports whether the broker's first bytes are an MQTT 3.1.1
// CONNACK (remaining length 2: flags and return code; an MQTT 5 CONNACK
// always has a property length too), and its return code.
func (w *watchConn) connack311() (byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.head) >= 4 && w.head[0] == 0x20 && w.head[1] == 0x02 {
		return w.head[3], true
	}
	return 0, false
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
		rl, n, err := packet.ParseVarint(buf[1:])
		if err != nil {
			if n > 0 { // malformed length: stop tracing this stream
				w.line(dir + " (unparseable bytes)")
				return nil
			}
			return buf
		}
		total := 1 + n + int(rl)
		if len(buf) < total {
			return buf
		}
		w.line(dir + " " + packet.DescribeRaw(buf[0], buf[1+n:total], packet.Version(w.version)))
		buf = append(buf[:0], buf[total:]...)
	}
}

func (w *watchConn) line(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.debug, "mqtk: %s\n", s)
}
