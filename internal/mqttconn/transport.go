package mqttconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"

	"github.com/gorilla/websocket"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/wsconn"
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
	if cfg.SRV {
		if err := lookupSRV(ctx, cfg); err != nil {
			return nil, err
		}
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
	return nil, clierr.Usagef("unknown transport %q", cfg.Scheme)
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
			// Go's TLS servers (mqtk broker among them) answer plain HTTP
			// with 400 and this sentence; mosquitto just closes.
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			toTLS := resp.StatusCode == http.StatusBadRequest && bytes.Contains(body, []byte("HTTP request to an HTTPS server"))
			return nil, &wsStatusError{status: resp.Status, url: u.String(), toTLS: toTLS}
		}
		var hs *handshakeError
		if !errors.As(err, &hs) && isEOFOrReset(err) {
			return nil, &upgradeClosedError{err: err}
		}
		return nil, err
	}
	return wsconn.New(ws), nil
}

// upgradeClosedError is a connection closed during the WebSocket upgrade,
// after any TLS handshake succeeded: the port is not a WebSocket listener
// (or, for ws://, it may expect TLS).
type upgradeClosedError struct{ err error }

func (e *upgradeClosedError) Error() string { return e.err.Error() }
func (e *upgradeClosedError) Unwrap() error { return e.err }

type wsStatusError struct {
	status, url string
	toTLS       bool // the server said the port expects TLS
}

func (e *wsStatusError) Error() string {
	return "websocket upgrade refused with HTTP " + e.status
}
