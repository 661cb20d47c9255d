package mqttconn

import (
	"context"
	"crypto/tls"
	"net"
)

// DialConn opens the byte stream to the broker cfg describes and returns
// it with nothing sent: for callers that speak MQTT themselves (mqtk
// check's probes, which need CONNECTs and misbehaviour no client library
// allows). It reaches the broker exactly as Dial does: TCP, TLS,
// WebSocket (ws, wss) or a unix socket, from cfg.BindAddress, through
// cfg.Proxy, with the TLS configuration TLSConfig builds.
//
// cfg is resolved when it was not. cfg.ConnectTimeout bounds the dial and
// the TLS and WebSocket handshakes; the returned conn carries no deadline.
// A failure is an *clierr.Error diagnosed as Dial diagnoses the same failure of
// its transport (refused, unknown CA, not a TLS port, WebSocket upgrade
// refused, …), so it exits and hints the same way. What Dial learns only
// from the broker's answer to CONNECT (a plain client on a TLS port, MQTT
// on a WebSocket port) is left to the caller, which sends the CONNECT.
//
// With cfg.Debug set, the conn traces each MQTT packet written and read,
// decoded at cfg.Version, as Dial's connections do with -d.
func DialConn(ctx context.Context, cfg Config) (net.Conn, error) {
	if err := resolveForDial(&cfg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	st := &connState{}
	nc, err := dialTransport(ctx, &cfg, st)
	if err != nil {
		return nil, diagnose(&cfg, err, nil, st)
	}
	if cfg.Debug != nil {
		return newWatchConn(nc, cfg.Version, cfg.Debug), nil
	}
	return nc, nil
}

// DialTLS opens a TCP connection to cfg's broker as DialConn does (from
// cfg.BindAddress, through cfg.Proxy) and completes a TLS handshake with
// tc rather than with TLSConfig's: for callers that try TLS settings of
// their own, such as which protocol versions a broker accepts. Only the
// handshake happens; a wss:// broker gets no WebSocket upgrade.
//
// Errors are left as crypto/tls and net give them, undiagnosed: such a
// caller reports what was refused, it does not fail on it.
func DialTLS(ctx context.Context, cfg Config, tc *tls.Config) (*tls.Conn, error) {
	if err := resolveForDial(&cfg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	dial, err := transportDialer(&cfg)
	if err != nil {
		return nil, err
	}
	c, err := dialTLS(ctx, dial, "tcp", cfg.Addr(), tc)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// resolveForDial completes cfg as Dial does before dialling: resolved,
// with the default connect timeout.
func resolveForDial(cfg *Config) error {
	if cfg.Scheme == "" {
		if err := cfg.Resolve(); err != nil {
			return err
		}
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	return nil
}
