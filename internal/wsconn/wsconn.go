// Package wsconn presents a WebSocket as the byte stream MQTT runs over,
// for the broker's ws/wss listeners and the clients' ws:// and wss://
// alike: MQTT packets may span WebSocket messages and a message may hold
// several packets [MQTT-6.0.0-2].
package wsconn

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// ErrTextFrame is returned by Read for a text message: MQTT control
// packets travel in binary messages only [MQTT-6.0.0-1].
var ErrTextFrame = errors.New("websocket: text frame received, MQTT needs binary frames")

// Conn is a net.Conn over a WebSocket. gorilla/websocket allows one
// reader and one writer at a time and keeps the write deadline in a plain
// field, so reads, and writes with write deadlines, are serialised.
type Conn struct {
	ws  *websocket.Conn
	rmu sync.Mutex
	r   io.Reader // the message being read
	wmu sync.Mutex
}

// New wraps ws.
func New(ws *websocket.Conn) *Conn { return &Conn{ws: ws} }

// Read reads across message boundaries. A close from the peer reads as
// io.EOF, as the end of a TCP stream would.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, ErrTextFrame
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// Write sends p as one binary message.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *Conn) Close() error                      { return c.ws.Close() }
func (c *Conn) LocalAddr() net.Addr               { return c.ws.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr              { return c.ws.RemoteAddr() }
func (c *Conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline takes the write lock: gorilla's deadline setter must
// not run concurrently with a write.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.SetWriteDeadline(t)
}

func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
