package broker

import (
	"fmt"
	"math"
	"time"

	"github.com/mqtk/mqtk/broker/engine"
)

// Limits bound what one client (or all of them) may cost the broker. A zero
// field takes the value from DefaultLimits, except where Options.ExactLimits
// says the zeros were meant (see WithDefaultsExact).
type Limits struct {
	MaxPacketSize     uint32        `yaml:"max-packet-size"`    // bytes, whole packet; larger ones disconnect the sender
	MaxClients        int64         `yaml:"max-clients"`        // connected clients
	MaxInflight       uint16        `yaml:"max-inflight"`       // QoS 1/2 messages stored per client (in flight + queued)
	MaxQueued         int32         `yaml:"max-queued"`         // packets waiting to be written per client; see backpressureHook
	ReceiveMaximum    uint16        `yaml:"receive-maximum"`    // QoS 1/2 publishes a client may have unacknowledged towards us
	MaxMessageExpiry  time.Duration `yaml:"max-message-expiry"` // ceiling on message expiry; 0 here means none (see WithDefaults)
	MaxSessionExpiry  time.Duration `yaml:"max-session-expiry"` // how long a disconnected persistent session is kept
	MaxKeepalive      uint16        `yaml:"max-keepalive"`      // seconds; sent to MQTT 5 clients as Server Keep Alive
	MaxTopicLength    int           `yaml:"max-topic-length"`   // bytes in a topic name or filter
	MaxTopicLevels    int           `yaml:"max-topic-levels"`   // levels in a topic name or filter
	MaxClientIDLength int           `yaml:"max-client-id-length"`
	TopicAliasMaximum uint16        `yaml:"topic-alias-max"` // aliases a client may define towards us
	// TopicAliasOutMaximum caps the topic aliases the broker assigns in
	// PUBLISH packets to an MQTT 5 client (never more than the client's
	// own Topic Alias Maximum); 0 with ExactLimits sends none.
	TopicAliasOutMaximum uint16        `yaml:"topic-alias-out-max"`
	ConnectTimeout       time.Duration `yaml:"connect-timeout"`   // time allowed between accept and CONNECT
	WriteTimeout         time.Duration `yaml:"write-timeout"`     // a client that does not read for this long is dropped
	AuthFailDelay        time.Duration `yaml:"auth-fail-delay"`   // pause before refusing bad credentials
	ReadBufferSize       int           `yaml:"read-buffer-size"`  // a connection's first read buffer, bytes; it grows for busy or large traffic and is let go when idle
	WriteBufferSize      int           `yaml:"write-buffer-size"` // the largest write buffer a busy connection keeps between writes, bytes
}

// DefaultLimits returns the limits used for fields left at zero. They aim at
// a developer laptop or a small deployment: generous for normal traffic,
// bounded for a misbehaving client.
func DefaultLimits() Limits {
	return Limits{
		// 1 MiB: larger than any sensible MQTT message. A hostile length
		// field costs nothing either way: the engine grows a packet's
		// buffer only as its bytes arrive.
		MaxPacketSize: 1 << 20,
		MaxClients:    100000,
		// mosquitto queues 1000 messages per offline client; same here, so
		// an absent persistent subscriber cannot grow without bound.
		MaxInflight: 1000,
		// Packets waiting to be written to one client before its
		// publishers wait for it (see engine's waitRoom). The queue is
		// bytes in one buffer, held only while something is waiting.
		MaxQueued: 1024,
		// The most MQTT allows: see engine.DefaultConfig.
		ReceiveMaximum: 65535,
		// 0 = no ceiling: retained messages live until cleared, as in
		// mosquitto; a message's own expiry interval still applies.
		MaxMessageExpiry:  0,
		MaxSessionExpiry:  7 * 24 * time.Hour,
		MaxKeepalive:      math.MaxUint16,
		MaxTopicLength:    4096,
		MaxTopicLevels:    64,
		MaxClientIDLength: 256,
		// mosquitto's max_topic_alias default.
		TopicAliasMaximum: 10,
		// Outbound aliases save the topic on every repeat; 10 covers the
		// topics a typical subscriber sees without holding many per client.
		TopicAliasOutMaximum: 10,
		ConnectTimeout:       10 * time.Second,
		WriteTimeout:         30 * time.Second,
		AuthFailDelay:        time.Second,
		ReadBufferSize:       512,
		WriteBufferSize:      64 << 10,
	}
}

// NoMessageExpiryCeiling is the value to put in Limits.MaxMessageExpiry
// to state "no ceiling" explicitly in a config file (0 also means that).
const NoMessageExpiryCeiling = time.Duration(0)

// WithDefaults returns l with every zero field set from DefaultLimits.
func (l Limits) WithDefaults() Limits { return l.withDefaults(false) }

// WithDefaultsExact is WithDefaults for limits filled in completely by the
// caller (the command line starts from DefaultLimits, so a zero there was
// typed by the user): AuthFailDelay 0 means no delay, MaxSessionExpiry 0
// means sessions end when their connection does, TopicAliasMaximum and
// TopicAliasOutMaximum 0 mean no topic aliases in that direction. Fields where zero has no meaning
// (MaxClients, MaxQueued, buffer sizes, ...) still take their defaults.
func (l Limits) WithDefaultsExact() Limits { return l.withDefaults(true) }

func (l Limits) withDefaults(exact bool) Limits {
	d := DefaultLimits()
	set := func(v *uint32, dv uint32) {
		if *v == 0 {
			*v = dv
		}
	}
	set(&l.MaxPacketSize, d.MaxPacketSize)
	if l.MaxClients == 0 {
		l.MaxClients = d.MaxClients
	}
	if l.MaxInflight == 0 {
		l.MaxInflight = d.MaxInflight
	}
	if l.MaxQueued == 0 {
		l.MaxQueued = d.MaxQueued
	}
	if l.ReceiveMaximum == 0 {
		l.ReceiveMaximum = d.ReceiveMaximum
	}
	if l.MaxSessionExpiry == 0 && !exact {
		l.MaxSessionExpiry = d.MaxSessionExpiry
	}
	if l.MaxKeepalive == 0 {
		l.MaxKeepalive = d.MaxKeepalive
	}
	if l.MaxTopicLength == 0 {
		l.MaxTopicLength = d.MaxTopicLength
	}
	if l.MaxTopicLevels == 0 {
		l.MaxTopicLevels = d.MaxTopicLevels
	}
	if l.MaxClientIDLength == 0 {
		l.MaxClientIDLength = d.MaxClientIDLength
	}
	if l.TopicAliasMaximum == 0 && !exact {
		l.TopicAliasMaximum = d.TopicAliasMaximum
	}
	if l.ConnectTimeout == 0 {
		l.ConnectTimeout = d.ConnectTimeout
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.AuthFailDelay == 0 && !exact {
		l.AuthFailDelay = d.AuthFailDelay
	}
	if l.TopicAliasOutMaximum == 0 && !exact {
		l.TopicAliasOutMaximum = d.TopicAliasOutMaximum
	}
	if l.ReadBufferSize == 0 {
		l.ReadBufferSize = d.ReadBufferSize
	}
	if l.WriteBufferSize == 0 {
		l.WriteBufferSize = d.WriteBufferSize
	}
	return l
}

func (l Limits) validate() error {
	switch {
	case l.MaxPacketSize < 64:
		return fmt.Errorf("max packet size %d is too small: a CONNECT alone needs more; use at least 64 bytes", l.MaxPacketSize)
	case l.MaxPacketSize > 268435460:
		return fmt.Errorf("max packet size %d exceeds MQTT's limit of 268435460 bytes", l.MaxPacketSize)
	case l.MaxMessageExpiry < 0 || l.MaxSessionExpiry < 0 || l.ConnectTimeout < 0 || l.WriteTimeout < 0 || l.AuthFailDelay < 0:
		return fmt.Errorf("limits: durations must not be negative")
	case l.MaxSessionExpiry > time.Duration(math.MaxUint32)*time.Second:
		return fmt.Errorf("max session expiry %s exceeds MQTT's limit of %d seconds", l.MaxSessionExpiry, uint32(math.MaxUint32))
	case l.MaxQueued < 1 || l.MaxClients < 1 || l.ReadBufferSize < 256 || l.WriteBufferSize < 256:
		return fmt.Errorf("limits: max queued and max clients must be at least 1, buffer sizes at least 256 bytes")
	}
	return nil
}

// engineConfig is the engine's configuration for these limits.
func (l Limits) engineConfig() engine.Config {
	return engine.Config{
		MaxPacketSize:     l.MaxPacketSize,
		MaxClients:        int(min(l.MaxClients, int64(math.MaxInt32))),
		ReceiveMaximum:    l.ReceiveMaximum,
		MaxQueued:         int(l.MaxInflight),
		MaxPending:        int(l.MaxQueued),
		MaxMessageExpiry:  l.MaxMessageExpiry,
		MaxSessionExpiry:  l.MaxSessionExpiry,
		MaxKeepalive:      l.MaxKeepalive,
		MaxClientIDLength: l.MaxClientIDLength,
		MaxTopicLength:    l.MaxTopicLength,
		MaxTopicLevels:    l.MaxTopicLevels,
		TopicAliasMaximum: l.TopicAliasMaximum,
		TopicAliasOut:     l.TopicAliasOutMaximum,
		ConnectTimeout:    l.ConnectTimeout,
		WriteTimeout:      l.WriteTimeout,
		ReadBuffer:        l.ReadBufferSize,
		WriteBuffer:       l.WriteBufferSize,
		// The limits are complete here (WithDefaults ran): a zero is meant.
		Exact: true,
	}
}

// topicAllowed enforces the topic length and depth limits.
func (l Limits) topicAllowed(topic string) bool {
	if len(topic) > l.MaxTopicLength {
		return false
	}
	levels := 1
	for i := 0; i < len(topic); i++ {
		if topic[i] == '/' {
			levels++
		}
	}
	return levels <= l.MaxTopicLevels
}
