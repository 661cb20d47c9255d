// Package pub publishes MQTT messages from the shell: a message from the
// command line, a file, stdin whole or line by line, or a recorded JSONL
// file replayed with its original timing. Line mode keeps a bounded window
// of unacknowledged messages and, when the connection drops, reconnects and
// resends them in order, so a pipe into `mqtk pub -l -q 1` loses nothing.
package pub

import (
	"context"
	"io"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/topic"
	"github.com/mqtk/mqtk/internal/ui"
)

// Payload encodings for --encoding.
const (
	EncText   = "text"
	EncHex    = "hex"
	EncBase64 = "base64"
)

// Line formats for -l.
const (
	LineText  = "text"
	LineJSONL = "jsonl"
)

// Props are the MQTT 5 PUBLISH properties given on the command line.
type Props struct {
	UserProperties  []mqttconn.UserProperty
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	MessageExpiry   *uint32
	PayloadFormat   *byte
	TopicAlias      uint16
}

func (p Props) empty() bool {
	return len(p.UserProperties) == 0 && p.ContentType == "" && p.ResponseTopic == "" &&
		p.CorrelationData == nil && p.MessageExpiry == nil && p.PayloadFormat == nil && p.TopicAlias == 0
}

// Clock is the time source for pacing (--repeat-delay, --rate, --replay)
// and for template times. Tests inject a fake one so that pacing is checked
// without sleeping.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends, returning ctx's error then.
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// Sleep waits for d or ctx.
func (RealClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Options configure one Run. cmd/mqtk fills them from flags; tests fill
// them directly.
type Options struct {
	Conn mqttconn.Config
	// Dial connects; nil means mqttconn.Dial. Tests wrap it.
	Dial mqttconn.DialFunc

	Topic  string // -t; may be empty when every line or record names its topic
	QoS    byte
	Retain bool

	Source   source.Source
	Message  string // -m, before --encoding is applied
	File     string // -f or --replay
	In       io.Reader
	Encoding string // text (default), hex or base64

	Props Props

	Repeat      int           // total sends of a single message; 0 or 1 means once
	RepeatDelay time.Duration // pause between repeats
	Rate        float64       // messages per second; 0 means as fast as acks allow
	MaxInflight int           // QoS 1/2 window; 0 means 20, as mosquitto_pub -M

	Template      bool // --template: topic, -m payload and user properties are Go templates
	TopicFromLine bool // -l lines are topic<TAB>payload
	LineFormat    string

	// Speed scales --replay spacing: 2 halves every gap. 0 means as fast as
	// possible (--speed max).
	Speed float64

	// ReconnectTimeout bounds how long line mode keeps trying to reconnect
	// after a dropped connection; 0 means one minute.
	ReconnectTimeout time.Duration

	Quiet  bool
	IO     *ui.Streams
	Clock  Clock                  // nil means RealClock
	Getenv func(string) string    // for the env template function
	Host   func() (string, error) // for .Hostname; nil means os.Hostname
}

// Validate checks what can be checked before connecting. Every failure is
// a usage error naming the cause and the fix.
func (o *Options) Validate() error {
	if o.Source == source.None {
		return clierr.Usagef("no payload given").Hintf("use one of -m MESSAGE, -f FILE, -s (stdin), -l (stdin lines), -n (empty) or --replay FILE")
	}
	if o.QoS > 2 {
		return clierr.Usagef("QoS %d out of range", o.QoS).Hintf("use -q 0, 1 or 2")
	}
	switch o.Encoding {
	case "", EncText, EncHex, EncBase64:
	default:
		return clierr.Usagef("--encoding %q unknown", o.Encoding).Hintf("use text, hex or base64")
	}
	switch o.LineFormat {
	case "", LineText:
	case LineJSONL:
		if o.Source != source.Lines {
			return clierr.Usagef("--line-format jsonl needs -l: it says how stdin lines are read")
		}
		if o.TopicFromLine {
			return clierr.Usagef("--topic-from-line and --line-format jsonl both say where the topic comes from").Hintf("use one of them")
		}
	default:
		return clierr.Usagef("--line-format %q unknown", o.LineFormat).Hintf("use text or jsonl")
	}
	if o.TopicFromLine && o.Source != source.Lines {
		return clierr.Usagef("--topic-from-line needs -l: it reads topic<TAB>payload lines from stdin")
	}
	if o.Repeat < 0 {
		return clierr.Usagef("--repeat %d is negative", o.Repeat).Hintf("give the number of times to publish")
	}
	if o.Repeat > 1 && o.Source == source.Replay {
		return clierr.Usagef("--repeat works with -m, -f, -s and -n, not %s", o.Source)
	}
	if o.Rate < 0 {
		return clierr.Usagef("--rate must be positive")
	}
	if o.Speed < 0 {
		return clierr.Usagef("--speed must be positive or 'max'")
	}
	if o.MaxInflight < 0 {
		return clierr.Usagef("--max-inflight %d is negative", o.MaxInflight).Hintf("use a positive window, e.g. 20")
	}
	needTopic := !(o.Source == source.Replay || o.TopicFromLine || o.LineFormat == LineJSONL)
	if o.Topic == "" && needTopic {
		return clierr.Usagef("no topic given").Hintf("use -t TOPIC (or -L mqtt://host/TOPIC)")
	}
	if o.Topic != "" && !o.Template {
		// topic's errors quote the topic and say what to do; -t is not
		// named because the topic may have come from -L's path.
		if err := topic.ValidateName(o.Topic); err != nil {
			return clierr.Usagef("%v", err)
		}
	}
	if o.Props.ResponseTopic != "" {
		// [MQTT-3.3.2-13] [MQTT-3.3.2-14] a Response Topic is a topic name.
		if err := topic.ValidateName(o.Props.ResponseTopic); err != nil {
			return clierr.Usagef("--response-topic: %v", err)
		}
	}
	// -V auto may keep MQTT 5: Run checks again once connected.
	if o.Conn.Version != mqttconn.V5 && o.Conn.Version != mqttconn.VAuto && !o.Props.empty() {
		return clierr.Usagef("%s is an MQTT 5 property, and -V %s has no PUBLISH properties", o.Props.firstName(), o.Conn.Version).Hintf("drop -V (5 is the default) or the property flag")
	}
	if o.Dial == nil {
		o.Dial = mqttconn.Dial
	}
	return nil
}

func (p Props) firstName() string {
	switch {
	case len(p.UserProperties) > 0:
		return "--user-property"
	case p.ContentType != "":
		return "--content-type"
	case p.ResponseTopic != "":
		return "--response-topic"
	case p.CorrelationData != nil:
		return "--correlation-data"
	case p.MessageExpiry != nil:
		return "--message-expiry"
	case p.PayloadFormat != nil:
		return "--payload-format-indicator"
	}
	return "--topic-alias"
}
