package mqttconn

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// dialTransport opens the byte stream to the broker (TCP, TLS, WebSocket or
// unix socket) within ctx. Both MQTT implementations run over the returned
// conn, so transports behave the same whatever the protocol version.
// Errors are returned raw; the caller classifies them.
func dialTransport(ctx context.Context, cfg *Config, st *connState) (net.Conn, error) {
	if cfg.Scheme == "unix" {
		var d net.Dialer
		return d.DialContext(ctx, "unix", cfg.SocketPath)
	}
	dial, err := transportDialer(cfg)
	if err != nil {
		return nil, err
	}
	switch cfg.Scheme {
	case "tcp":
		return dial(ctx, "tcp", cfg.Addr())
	case "tls":
		tc, err := tlsConfig(cfg, st)
		if err != nil {
			return nil, err
		}
		return dialTLS(ctx, dial, "tcp", cfg.Addr(), tc)
	case "ws", "wss":
		return dialWebSocket(ctx, cfg, st, dial)
	}
	return nil, Usagef("unknown transport %q", cfg.Scheme)
}

// dialTLS connects and completes the TLS handshake, marking a failed
// handshake as such for diagnose.
func dialTLS(ctx context.Context, dial dialFunc, network, addr string, tc *tls.Config) (net.Conn, error) {
	raw, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &handshakeError{err: err}
	}
	return conn, nil
}

// connState records what the TLS handshake revealed, for diagnose.
type connState struct {
	// certRequested is set when the broker asked for a client certificate
	// and we had none to give: a failure right after is then explained.
	certRequested atomic.Bool
}

// handshakeError marks a failure during the TLS handshake, so that diagnose
// can tell "the server did not speak TLS" from a later read error.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func dialWebSocket(ctx context.Context, cfg *Config, st *connState, dial dialFunc) (net.Conn, error) {
	u := url.URL{Scheme: cfg.Scheme, Host: cfg.Addr(), Path: cfg.WSPath}
	d := websocket.Dialer{
		NetDialContext: dial,
		// [MQTT-6.0.0-3] the client must offer the "mqtt" subprotocol.
		Subprotocols:     []string{"mqtt"},
		HandshakeTimeout: cfg.ConnectTimeout,
	}
	if cfg.Scheme == "wss" {
		tc, err := tlsConfig(cfg, st)
		if err != nil {
			return nil, err
		}
		// The handshake is done here rather than inside the WebSocket
		// library, so that a failed handshake (not a TLS port) and a
		// failed upgrade after it (a TLS port, but not a WebSocket one)
		// reach diagnose as different errors.
		d.NetDialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialTLS(ctx, dial, network, addr, tc)
		}
	}
	hdr := http.Header{}
	for k, vs := range cfg.WSHeaders {
		for _, v := range vs {
			hdr.Add(k, v)
		}
	}
	ws, resp, err := d.DialContext(ctx, u.String(), hdr)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
			return nil, &wsStatusError{status: resp.Status, url: u.String()}
		}
		var hs *handshakeError
		if !errors.As(err, &hs) && isEOFOrReset(err) {
			return nil, &upgradeClosedError{err: err}
		}
		return nil, err
	}
	return &wsConn{ws: ws}, nil
}

// upgradeClosedError is a connection closed during the WebSocket upgrade,
// after any TLS handshake succeeded: the port is not a WebSocket listener
// (or, for ws://, it may expect TLS).
type upgradeClosedError struct{ err error }

func (e *upgradeClosedError) Error() string { return e.err.Error() }
func (e *upgradeClosedError) Unwrap() error { return e.err }

type wsStatusError struct{ status, url string }

func (e *wsStatusError) Error() string {
	return "websocket upgrade refused with HTTP " + e.status
}

// wsConn presents a WebSocket as a byte stream: MQTT packets may span
// WebSocket frames and a frame may hold several packets [MQTT-6.0.0-2].
type wsConn struct {
	ws  *websocket.Conn
	r   io.Reader
	rmu sync.Mutex
	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
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
				// [MQTT-6.0.0-1] text frames are a protocol error.
				return 0, errors.New("broker sent a websocket text frame")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error                      { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr               { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr              { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline takes the write lock: gorilla's deadline setter must not
// run concurrently with a write.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.SetWriteDeadline(t)
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
