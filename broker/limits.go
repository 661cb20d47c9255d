package broker

import (
	"fmt"
	"math"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
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
	ReadBufferSize       int           `yaml:"read-buffer-size"`  // per-connection read buffer, bytes
	WriteBufferSize      int           `yaml:"write-buffer-size"` // per-connection write coalescing threshold, bytes
}

// DefaultLimits returns the limits used for fields left at zero. They aim at
// a developer laptop or a small deployment: generous for normal traffic,
// bounded for a misbehaving client.
func DefaultLimits() Limits {
	return Limits{
		// 1 MiB: larger than any sensible MQTT message, small enough that a
		// hostile length field cannot make us allocate much (mochi allocates
		// the announced length before reading it).
		MaxPacketSize: 1 << 20,
		MaxClients:    100000,
		// mosquitto queues 1000 messages per offline client; same here, so
		// an absent persistent subscriber cannot grow without bound (mochi #340).
		MaxInflight: 1000,
		// mochi's default of 8192 pending writes is a channel of 8192
		// pointers (64 KiB) per connection. mochi discards a message, QoS 1
		// included, that finds this queue full; before backpressureHook,
		// 128 lost 1.4% of messages with 10 closed-loop QoS 1 publishers
		// into one subscriber and 1024 lost none. With the hook, 128 loses
		// nothing either, but 1024 delivered 10-15% more under QoS 0
		// overload (fan-in, 2 rounds each) and 128 saved only 25 MB of 329
		// at 10,000 idle connections, so 1024 (8 KiB per connection) stays.
		MaxQueued:      1024,
		ReceiveMaximum: 256,
		// 0 = no ceiling. mochi's default 24 h ceiling would also delete
		// retained messages a day after they were set.
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
		ReadBufferSize:       1024,
		WriteBufferSize:      1024,
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

// capabilities sets every mochi capability explicitly rather than trusting
// NewDefaultServerCapabilities, whose defaults include a 24 h ceiling on
// message expiry that also deletes retained messages (see the anchor note
// on mochi's MaximumMessageExpiryInterval) and 64 KiB of queue per client.
func (l Limits) capabilities() *mqtt.Capabilities {
	return &mqtt.Capabilities{
		MaximumClients: l.MaxClients,
		// 0 = no ceiling: retained messages live until cleared, as in
		// mosquitto; a message's own expiry interval still applies.
		MaximumMessageExpiryInterval: int64(l.MaxMessageExpiry / time.Second),
		MaximumClientWritesPending:   l.MaxQueued,
		MaximumSessionExpiryInterval: uint32(l.MaxSessionExpiry / time.Second),
		MaximumPacketSize:            l.MaxPacketSize,
		ReceiveMaximum:               l.ReceiveMaximum,
		MaximumInflight:              l.MaxInflight,
		TopicAliasMaximum:            l.TopicAliasMaximum,
		SharedSubAvailable:           1,
		MinimumProtocolVersion:       3,
		MaximumQos:                   2,
		RetainAvailable:              1,
		WildcardSubAvailable:         1,
		SubIDAvailable:               1,
		Compatibilities: mqtt.Compatibilities{
			// Both flags exist to please one client library at the cost of
			// the spec; we follow the spec.
			PassiveClientDisconnect: false,
			// true: with false mochi answers MQTT 5 publishes with PUBACK
			// reason 0x01, which is not a PUBACK reason code, and echoes the
			// publish's user properties into the ack.
			NoInheritedPropertiesOnAck: true,
			ObscureNotAuthorized:       false,
			AlwaysReturnResponseInfo:   false,
			RestoreSysInfoOnRestart:    false,
		},
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
