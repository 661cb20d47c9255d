package mqttconn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

// defaultConnectTimeout bounds a connection attempt when
// Config.ConnectTimeout is not set.
const defaultConnectTimeout = 10 * time.Second

// Dial connects to the broker described by cfg and returns a live Client:
// MQTT 5 on paho.golang, 3.1.1 and 3.1 on paho.mqtt.golang. cfg.ConnectTimeout
// bounds the TCP connection, the TLS handshake and the CONNECT/CONNACK
// exchange together. Every failure is an *clierr.Error with a Kind.
//
// Config.OnMessage runs on the connection's reader: it may call
// PublishAsync, but a Publish that waits for its acknowledgement from
// inside OnMessage can stall the reader that would deliver it (with MQTT
// 3.1.1 it does), so reply from OnMessage with PublishAsync.
func Dial(ctx context.Context, cfg Config) (Client, error) {
	if err := resolveForDial(&cfg); err != nil {
		return nil, err
	}
	id := clientID(&cfg)
	if cfg.Native && cfg.Version != VAuto && cfg.Props.AuthMethod == "" {
		return dialNative(ctx, cfg, id)
	}
	switch cfg.Version {
	case V5:
		return dialV5(ctx, cfg, id)
	case VAuto:
		return dialAuto(ctx, cfg, id)
	}
	return dialV3(ctx, cfg, id)
}

// dialAuto is -V auto: MQTT 5, then 3.1.1 when the broker refuses 5 as an
// unsupported protocol version, on a new connection (a 3.1.1 broker closes
// the one it refused, 3.1.1's [MQTT-3.2.2-5]). Only that refusal falls
// back: any other failure would fail the same way with 3.1.1.
func dialAuto(ctx context.Context, cfg Config, id string) (Client, error) {
	v5 := cfg
	v5.Version = V5
	c, err := dialV5(ctx, v5, id)
	var e *clierr.Error
	if err == nil || !errors.As(err, &e) || e.Kind != clierr.KindRefused || e.Reason != 0x84 {
		return c, err
	}
	if cfg.SessionExpiry != nil {
		// MQTT 3.1.1 has no session expiry: falling back would silently
		// give a session other than the one asked for.
		e.Hints = append(e.Hints, "-x/--session-expiry needs MQTT 5, so -V auto did not fall back to 3.1.1: drop -x to use 3.1.1")
		return nil, e
	}
	if !cfg.Props.Empty() || (cfg.Will != nil && cfg.Will.hasProps()) {
		// The same for -D: 3.1.1 would drop the properties unseen.
		e.Hints = append(e.Hints, "properties (-D) need MQTT 5, so -V auto did not fall back to 3.1.1: drop the -D options to use 3.1.1")
		return nil, e
	}
	if cfg.Debug != nil {
		fmt.Fprintf(cfg.Debug, "mqtk: the broker refused MQTT 5 (-V auto): connecting again with MQTT 3.1.1\n")
	}
	v3 := cfg
	v3.Version = V311
	return dialV3(ctx, v3, id)
}

// clientID is -i, else -I plus a random suffix, else "mqtk-" plus one.
// MQTT 3.1 allows at most 23 bytes [MQTT-3.1 CONNECT], so the result is cut
// there for that version (the prefix is what gets shortened).
func clientID(cfg *Config) string {
	if cfg.ClientID != "" {
		return cfg.ClientID
	}
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	suffix := hex.EncodeToString(b[:])
	prefix := cfg.IDPrefix
	if prefix == "" {
		prefix = "mqtk-"
	}
	if cfg.Version == V31 && len(prefix)+len(suffix) > 23 {
		prefix = prefix[:23-len(suffix)]
	}
	return prefix + suffix
}

// openConn dials the transport and wraps it for tracing and diagnosis. The
// connection carries ctx's deadline until the caller clears it after CONNACK.
func openConn(ctx context.Context, cfg *Config) (*watchConn, error) {
	st := &connState{}
	raw, err := dialTransport(ctx, cfg, st)
	if err != nil {
		return nil, diagnose(cfg, err, nil, st)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	w := newWatchConn(raw, cfg.Version, cfg.Debug)
	w.st = st
	if cfg.CoalesceWrites {
		w.out = newCoalescer(raw)
	}
	return w, nil
}

// sessionExpiry is the MQTT 5 Session Expiry Interval to send: with -c and
// no -x the session never expires (0xFFFFFFFF), as mosquitto's clients do
// [MQTT-3.1.2-23]; -x wins when given; otherwise 0 (ends with the connection).
func sessionExpiry(cfg *Config) uint32 {
	if cfg.SessionExpiry != nil {
		s := cfg.SessionExpiry.Seconds()
		if s >= 0xFFFFFFFF {
			return 0xFFFFFFFF
		}
		return uint32(s)
	}
	if cfg.NoClean {
		return 0xFFFFFFFF
	}
	return 0
}
