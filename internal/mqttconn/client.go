package mqttconn

import (
	"context"
	"time"
)

// Client is one live connection to a broker. Its methods are safe for
// concurrent use. Incoming messages go to Config.OnMessage.
// DialFunc connects to a broker: Dial, or a test's wrapper around it.
// Every command's Options has one, named Dial; nil means Dial.
type DialFunc func(context.Context, Config) (Client, error)

type Client interface {
	// Publish sends m and returns when it is done: written for QoS 0,
	// acknowledged (PUBACK, or PUBCOMP) for QoS 1 and 2. A negative
	// acknowledgement (reason code >= 0x80) returns an *clierr.Error of clierr.KindRejected.
	Publish(ctx context.Context, m *Message) error

	// PublishAsync queues m for sending and returns at once. Messages queued
	// from one goroutine go on the wire in the order they were queued. done
	// is called exactly once with Publish's result, from a library goroutine;
	// it must not block. PublishAsync blocks only while the broker's receive
	// maximum (or the client's in-flight limit) is reached, or ctx ends.
	PublishAsync(ctx context.Context, m *Message, done func(error))

	// Subscribe sends one SUBSCRIBE for all subs and returns the granted
	// reason codes in order. A refused subscription (code >= 0x80) is not an
	// error here: callers decide, using the codes.
	Subscribe(ctx context.Context, subs []Subscription) ([]byte, error)

	// Unsubscribe sends one UNSUBSCRIBE for the filters.
	Unsubscribe(ctx context.Context, filters ...string) error

	// Disconnect sends DISCONNECT (reason 0 for MQTT 5) and closes the
	// connection. It is safe to call more than once.
	Disconnect(ctx context.Context) error

	// Done is closed when the connection has ended, for any reason.
	Done() <-chan struct{}

	// Err returns why the connection ended, or nil while it is up or after
	// a clean Disconnect.
	Err() error

	// Info describes the session as the broker accepted it.
	Info() Info
}

// Info is what CONNACK told us, plus what we negotiated.
type Info struct {
	Version           Version
	ClientID          string // the id in use (assigned by the broker if we sent none)
	SessionPresent    bool
	ReceiveMaximum    uint16 // broker's; 0 means not limited by the broker
	MaximumPacketSize uint32 // broker's; 0 means no limit announced
	MaximumQoS        byte   // 2 unless the broker said otherwise
	RetainAvailable   bool
	TopicAliasMaximum uint16
	ServerKeepAlive   time.Duration // 0 if the broker did not override ours
	ServerReference   string
	ResponseInfo      string
	Addr              string // host:port or socket path actually dialled
}

// Message is one PUBLISH, incoming or outgoing, with every MQTT 5 property.
// For MQTT 3.1.1/3.1 the property fields are ignored when sending and empty
// when receiving.
type Message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	Dup      bool   // incoming only
	PacketID uint16 // incoming only; 0 for QoS 0

	// MQTT 5 properties.
	PayloadFormat   *byte   // 0 unspecified bytes, 1 UTF-8
	MessageExpiry   *uint32 // seconds
	TopicAlias      uint16  // outgoing: ask the library to use this alias
	ResponseTopic   string
	CorrelationData []byte
	UserProperties  []UserProperty // order kept, duplicates allowed
	SubscriptionIDs []int          // incoming only
	ContentType     string

	// Received is when the message was read off the wire (incoming only).
	Received time.Time
}

// UserProperty is one MQTT 5 user property pair.
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Subscription is one topic filter with its options.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool // MQTT 5
	RetainAsPublished bool // MQTT 5
	RetainHandling    byte // MQTT 5: 0 send, 1 send if new, 2 do not send
	SubscriptionID    int  // MQTT 5; 0 means none. Sent once per SUBSCRIBE.
}
