package mosquittotest

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// Only311 starts a listener on 127.0.0.1 that acts as a broker speaking
// nothing newer than MQTT 3.1.1, in front of a broker: it answers an MQTT 5
// CONNECT with the 3.1.1 CONNACK return code 1 (unacceptable protocol
// version) and closes the connection, as mosquitto 1.x did for protocol
// levels it did not know; a 3.1.1 or 3.1 connection is passed through to
// the broker at addr byte for byte. Debian's mosquitto 2 has no setting
// that turns MQTT 5 off, hence this stand-in. It returns the port and
// stops when the test ends.
func Only311(t testing.TB, addr string) int {
	t.Helper()
	refusal, err := packet.Encode(&packet.Connack{Code: packet.ConnRefusedProtocolVersion}, packet.V311)
	if err != nil {
		t.Fatalf("encode CONNACK: %v", err)
	}
	return Fake(t, func(c net.Conn, track func(net.Conn)) {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		connect, level, ok := readConnect(br)
		if !ok {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if level != byte(packet.V311) && level != byte(packet.V31) {
			_, _ = c.Write(refusal)
			return
		}
		up, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return
		}
		track(up)
		defer up.Close()
		if _, err := up.Write(connect); err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(c, up)
			c.Close()
			close(done)
		}()
		_, _ = io.Copy(up, br) // what the client sent after CONNECT, then the rest
		up.Close()
		<-done
	})
}

// Fake starts a stand-in broker on 127.0.0.1 for behaviour no real broker
// shows on demand: serve runs for each accepted connection, which is
// closed when serve returns; track registers another connection serve
// opens, so that it is closed at the end too. It returns the port;
// everything stops when the test ends.
func Fake(t testing.TB, serve func(c net.Conn, track func(net.Conn))) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c, track)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port
}

// readConnect reads one packet, which must be a CONNECT, and returns its
// bytes as received and its protocol level.
func readConnect(br *bufio.Reader) (raw []byte, level byte, ok bool) {
	h, err := br.ReadByte()
	if err != nil || packet.Type(h>>4) != packet.TypeConnect {
		return nil, 0, false
	}
	raw = append(raw, h)
	var lenBytes []byte
	for len(lenBytes) < 4 {
		c, err := br.ReadByte()
		if err != nil {
			return nil, 0, false
		}
		lenBytes = append(lenBytes, c)
		if c&0x80 == 0 {
			break
		}
	}
	n, _, err := packet.ParseVarint(lenBytes)
	if err != nil || n > 1<<20 {
		return nil, 0, false
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, 0, false
	}
	raw = append(append(raw, lenBytes...), body...)
	// The protocol name (a two-byte length and the name), then the level.
	if len(body) < 2 {
		return nil, 0, false
	}
	at := 2 + (int(body[0])<<8 | int(body[1]))
	if at >= len(body) {
		return nil, 0, false
	}
	return raw, body[at], true
}
