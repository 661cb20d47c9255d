package main

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/pub"
)

// pubFlags holds the raw flag values that need parsing before they can
// go into pub.Options.
type pubFlags struct {
	qos                      int
	message, file, replay    string
	stdin, lines, null       bool
	repeatDelay, rate, speed string
	userProps                []string
	correlation, expiry      string
	payloadFormat            int
	topicAlias               int
}

func newPubCmd(a *app, runF func(*pub.Options) error) *cobra.Command {
	opts := &pub.Options{}
	var f pubFlags
	cmd := &cobra.Command{
		Use:   "pub -t TOPIC (-m MSG | -f FILE | -s | -l | -n | --replay FILE) [flags]",
		Short: "Publish messages: from an argument, a file, stdin, stdin lines, or a recording",
		Long: `Publish MQTT messages. Flags follow mosquitto_pub: -t topic, -m message,
-q qos, -r retain, -f file, -s (all of stdin), -l (one message per line),
-n (empty message), --repeat, --repeat-delay, -M max in-flight.

Exactly one payload source is needed. -l keeps the connection open and
sends each line as it arrives; with -q 1 or 2 it waits for every
acknowledgement, reconnects if the broker goes away, sends unacknowledged
lines again in order, and prints "sent N, acked N, failed N" at the end. It
exits non-zero if any line could not be delivered.

--topic-from-line reads topic<TAB>payload lines; --line-format jsonl reads
the records 'mqtk sub --output jsonl' writes. --replay FILE sends such a
recording again with its original timing (--speed 2 for twice as fast,
--speed max for no pauses).

--template makes the topic, the -m payload and user properties Go
templates: {{.Seq}} (1, 2, ...), {{.Time}} (RFC 3339), {{.Unix}},
{{.UnixNano}}, {{.Hostname}}, {{.ClientID}}, {{uuid}}, {{randInt 1 10}},
{{randFloat 0 1}}, {{env "NAME"}}. Without --template, {{ is literal.

MQTT 5 properties: --user-property k=v (repeatable), --content-type,
--response-topic, --correlation-data (hex:… or base64:… for binary),
--message-expiry, --payload-format-indicator, --topic-alias. -D/--property
COMMAND NAME VALUE sets any property mosquitto_pub's -D does, on connect,
publish, disconnect or will (-D connect receive-maximum 10, -D will
will-delay-interval 30, -D publish user-property KEY VALUE); binary values
(correlation-data, authentication-data) take hex: or base64: too.

Exit codes: 0 sent; 2 bad input (topic, QoS, payload source, file, a
payload over the broker's maximum packet size), found before anything is
sent; 3 cannot connect; 4 TLS; 5 connection refused; 6 the broker refused a
publish (PUBACK/PUBREC reason >= 0x80, named in the message); 1 when -l
lines were lost for another reason. See 'mqtk help exit-codes'.`,
		Example: `  mqtk pub -t sensors/1/temp -m 21.5
  mqtk pub -h broker.local -t cfg/app -f config.json -r -q 1
  tail -f app.log | mqtk pub -t logs/app -l -q 1
  printf 'a/1\tx\nb/2\ty\n' | mqtk pub -l --topic-from-line
  mqtk pub -t 'dev/{{.Seq}}' -m '{"t":{{randFloat 18 25}}}' --template --repeat 10 --rate 5/s
  mqtk pub --replay capture.jsonl --speed 2
  mqtk pub -t cmd/1 -m on -D publish correlation-data hex:0a0b -D connect user-property site lab`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{quickStart: "yes"},
	}
	conn := addConnFlags(cmd, a)
	// mosquitto_pub takes -D subscribe and unsubscribe and sends neither.
	props := addPropertyFlag(cmd, conn, "subscribe", "unsubscribe")
	fs := cmd.Flags()
	fs.StringVarP(&opts.Topic, "topic", "t", "", "topic to publish to (or the path of -L mqtt://host/TOPIC)")
	fs.StringVarP(&f.message, "message", "m", "", "payload given on the command line")
	fs.StringVarP(&f.file, "file", "f", "", "send the whole file as one message (binary-safe)")
	fs.BoolVarP(&f.stdin, "stdin-file", "s", false, "send all of stdin as one message")
	fs.BoolVarP(&f.lines, "stdin-line", "l", false, "send each line of stdin as a message, as lines arrive")
	fs.BoolVarP(&f.null, "null-message", "n", false, "send an empty (zero-length) message")
	fs.StringVar(&f.replay, "replay", "", "send the messages recorded in FILE.jsonl (mqtk sub --output jsonl) with their timing")
	fs.IntVarP(&f.qos, "qos", "q", 0, "quality of service: 0, 1 or 2")
	fs.BoolVarP(&opts.Retain, "retain", "r", false, "ask the broker to retain the message")
	fs.StringVar(&opts.Encoding, "encoding", "text", "how the payload is written: text, hex or base64 (decoded before sending)")
	fs.IntVar(&opts.Repeat, "repeat", 1, "publish the message this many times")
	fs.StringVar(&f.repeatDelay, "repeat-delay", "0", "pause between repeats: seconds (0.5) or a duration (500ms)")
	fs.StringVar(&f.rate, "rate", "", "pace messages at N per second (N/s, N/m or N)")
	fs.IntVarP(&opts.MaxInflight, "max-inflight", "M", 20, "QoS 1/2 messages awaiting acknowledgement at once")
	fs.BoolVar(&opts.Template, "template", false, "treat topic, -m payload and user properties as Go templates")
	fs.BoolVar(&opts.TopicFromLine, "topic-from-line", false, "with -l: lines are topic<TAB>payload")
	fs.StringVar(&opts.LineFormat, "line-format", "text", "with -l: text, or jsonl records from 'mqtk sub --output jsonl'")
	fs.StringVar(&f.speed, "speed", "1", "with --replay: time factor (2 = twice as fast) or max")
	fs.DurationVar(&opts.ReconnectTimeout, "reconnect-timeout", time.Minute, "with -l: give up reconnecting after this long")
	fs.StringArrayVar(&f.userProps, "user-property", nil, "MQTT 5 user property key=value (repeatable, order kept)")
	fs.StringVar(&opts.Props.ContentType, "content-type", "", "MQTT 5 content type, e.g. application/json")
	fs.StringVar(&opts.Props.ResponseTopic, "response-topic", "", "MQTT 5 response topic")
	fs.StringVar(&f.correlation, "correlation-data", "", "MQTT 5 correlation data; hex:0a0b or base64:AAE= for binary")
	fs.StringVar(&f.expiry, "message-expiry", "", "MQTT 5 message expiry: seconds or a duration")
	fs.IntVar(&f.payloadFormat, "payload-format-indicator", -1, "MQTT 5 payload format: 0 bytes, 1 UTF-8 text")
	fs.IntVar(&f.topicAlias, "topic-alias", 0, "MQTT 5 topic alias to use (1 up to the broker's maximum)")
	fs.BoolVar(&opts.Quiet, "quiet", false, "no commentary on stderr (errors still shown)")

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := conn.config(cmd.Context())
		if err != nil {
			return err
		}
		if err := f.fill(cmd, opts, cfg); err != nil {
			return err
		}
		// -D publish fills the fields the property flags above fill.
		pp := &opts.Props
		if err := props.applyPublish(msgTarget{user: &pp.UserProperties, contentType: &pp.ContentType,
			responseTopic: &pp.ResponseTopic, correlation: &pp.CorrelationData, expiry: &pp.MessageExpiry,
			format: &pp.PayloadFormat, alias: &pp.TopicAlias}); err != nil {
			return err
		}
		opts.Conn = cfg
		opts.Dial = mqttconn.Dial
		opts.IO = a.io
		opts.In = a.io.In
		opts.Getenv = a.getenv
		if err := opts.Validate(); err != nil {
			return err
		}
		if !oneShot(opts) {
			a.catchInterrupts()
		}
		if runF != nil {
			return runF(opts)
		}
		return pub.Run(cmd.Context(), opts)
	}
	return cmd
}

// oneShot reports whether this run publishes one message given on the
// command line or in a file, with no will to leave behind: it ends in
// milliseconds, so it leaves Ctrl-C handling to the timer in run() (see
// interrupts), and a stream, a replay or repeats catch it at once.
func oneShot(o *pub.Options) bool {
	switch o.Source {
	case source.Message, source.File, source.Null:
		return o.Repeat <= 1 && o.Conn.Will == nil
	}
	return false
}

// fill turns the parsed flags into Options; every problem is a usage error.
func (f *pubFlags) fill(cmd *cobra.Command, o *pub.Options, cfg mqttconn.Config) error {
	fs := cmd.Flags()
	var sources []string
	add := func(set bool, name string, s source.Source) {
		if set {
			sources = append(sources, name)
			o.Source = s
		}
	}
	add(fs.Changed("message"), "-m", source.Message)
	add(fs.Changed("file"), "-f", source.File)
	add(f.stdin, "-s", source.Stdin)
	add(f.lines, "-l", source.Lines)
	add(f.null, "-n", source.Null)
	add(fs.Changed("replay"), "--replay", source.Replay)
	if len(sources) > 1 {
		return clierr.Usagef("more than one payload source (%s)", strings.Join(sources, ", ")).Hintf("give exactly one of -m, -f, -s, -l, -n, --replay")
	}
	o.Message = f.message
	o.File = f.file
	if o.Source == source.Replay {
		o.File = f.replay
	}
	if f.qos < 0 || f.qos > 2 {
		return clierr.Usagef("-q %d out of range", f.qos).Hintf("use 0, 1 or 2")
	}
	o.QoS = byte(f.qos)
	if o.Topic == "" {
		o.Topic = cfg.Topic
	}
	var err error
	if o.RepeatDelay, err = parseSecondsFloat("repeat-delay", f.repeatDelay); err != nil {
		return err
	}
	if f.rate != "" {
		if o.Rate, err = parseRate(f.rate); err != nil {
			return err
		}
	}
	if sp := strings.ToLower(strings.TrimSpace(f.speed)); sp == "max" || sp == "0" {
		o.Speed = 0 // no pauses
	} else {
		s, err := strconv.ParseFloat(strings.TrimSuffix(sp, "x"), 64)
		if err != nil || s <= 0 || math.IsInf(s, 0) || math.IsNaN(s) {
			return clierr.Usagef("--speed %q is not a positive factor", f.speed).Hintf("give a positive factor (2, 0.5) or max")
		}
		o.Speed = s
	}
	if o.Repeat < 0 {
		return clierr.Usagef("--repeat %d is negative", o.Repeat).Hintf("give how many times to publish")
	}
	if o.MaxInflight < 1 {
		return clierr.Usagef("-M %d: the in-flight window must be at least 1", o.MaxInflight)
	}
	for _, kv := range f.userProps {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return clierr.Usagef("--user-property %q is not key=value", kv).Hintf("write it as key=value")
		}
		o.Props.UserProperties = append(o.Props.UserProperties, mqttconn.UserProperty{Key: k, Value: v})
	}
	if fs.Changed("correlation-data") {
		if o.Props.CorrelationData, err = parseBinary("correlation-data", f.correlation); err != nil {
			return err
		}
	}
	if f.expiry != "" {
		d, err := parseSeconds("message-expiry", f.expiry)
		if err != nil {
			return err
		}
		if d.Seconds() > math.MaxUint32 {
			return clierr.Usagef("--message-expiry %s is over MQTT's limit of %d seconds", f.expiry, uint32(math.MaxUint32))
		}
		s := uint32(d / time.Second)
		o.Props.MessageExpiry = &s
	}
	if fs.Changed("payload-format-indicator") {
		if f.payloadFormat != 0 && f.payloadFormat != 1 {
			return clierr.Usagef("--payload-format-indicator %d out of range", f.payloadFormat).Hintf("use 0 (bytes) or 1 (UTF-8 text)")
		}
		b := byte(f.payloadFormat)
		o.Props.PayloadFormat = &b
	}
	if fs.Changed("topic-alias") {
		if f.topicAlias < 1 || f.topicAlias > 65535 {
			return clierr.Usagef("--topic-alias %d out of range", f.topicAlias).Hintf("use 1 to 65535 (and at most the broker's maximum)")
		}
		o.Props.TopicAlias = uint16(f.topicAlias)
	}
	return nil
}

// parseSecondsFloat reads mosquitto_pub's fractional seconds ("0.5") or a
// Go duration ("500ms").
func parseSecondsFloat(flag, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if x, err := strconv.ParseFloat(s, 64); err == nil && x >= 0 && !math.IsInf(x, 0) {
		if x > float64(maxSeconds) {
			return 0, tooLong(flag, s)
		}
		return time.Duration(x * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, clierr.Usagef("invalid --%s %q", flag, s).Hintf("give seconds (0.5) or a duration (500ms)")
	}
	return d, nil
}

// parseRate reads "100/s", "600/m", "10/h" or a bare number per second.
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	per := time.Second
	switch strings.ToLower(unit) {
	case "", "s", "sec", "second":
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	default:
		return 0, clierr.Usagef("--rate %q has an unknown unit", s).Hintf("write N/s, N/m or N/h")
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, clierr.Usagef("--rate %q is not a positive rate", s).Hintf("write a positive number per second, e.g. 100/s")
	}
	return n / per.Seconds(), nil
}

// parseBinary reads a binary property value: hex:…, base64:… (or b64:…),
// otherwise the text's bytes.
func parseBinary(flag, s string) ([]byte, error) {
	switch {
	case strings.HasPrefix(s, "hex:"):
		b, err := hex.DecodeString(strings.TrimPrefix(s, "hex:"))
		if err != nil {
			return nil, clierr.Usagef("--%s %q: not valid hex after hex: (%v)", flag, s, err)
		}
		return b, nil
	case strings.HasPrefix(s, "base64:"), strings.HasPrefix(s, "b64:"):
		_, v, _ := strings.Cut(s, ":")
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, clierr.Usagef("--%s %q: not valid base64 after the prefix (%v)", flag, s, err)
		}
		return b, nil
	}
	return []byte(s), nil
}
