package pub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ctxio"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/topic"
)

// Run publishes what o describes and returns once every message is
// acknowledged (QoS 1/2) or written (QoS 0), or something failed.
func Run(ctx context.Context, o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Quiet {
		o.IO.Quiet = true
	}
	if o.Repeat > 1 && o.Source == source.Lines {
		// mosquitto_pub takes --repeat with -l and ignores it; scripts
		// written for it run unchanged, with a word about it.
		o.IO.Warnf("--repeat applies to -m, -f, -s and -n: with -l each line is sent once")
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Host == nil {
		o.Host = os.Hostname
	}
	if o.In == nil {
		o.In = o.IO.In
	}
	ts, err := parseTemplates(o)
	if err != nil {
		return err
	}

	// Read everything that can be read before connecting, so that a bad
	// file is reported without touching the broker.
	var payload []byte
	var records []*mqttconn.Message
	switch o.Source {
	case source.Message:
		if ts == nil || ts.payload == nil {
			if payload, err = decode(o.Encoding, []byte(o.Message)); err != nil {
				return clierr.Usagef("-m: %w", err)
			}
		}
	case source.File:
		b, err := os.ReadFile(o.File)
		if err != nil {
			return clierr.Usagef("cannot read -f %s: %v", o.File, unwrapPath(err)).Hintf("check the path and its permissions")
		}
		if payload, err = decode(o.Encoding, b); err != nil {
			return clierr.Usagef("-f %s: %w", o.File, err)
		}
	case source.Stdin:
		b, err := ctxio.ReadAll(ctx, o.In)
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		if len(b) == 0 {
			// mosquitto_pub -s refuses this too: an empty message with -r
			// would clear the retained one when the producer in front of
			// the pipe failed.
			return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("-s: stdin is empty, nothing to send"),
				Hints: []string{"to send an empty message, use -n"}}
		}
		if payload, err = decode(o.Encoding, b); err != nil {
			return clierr.Usagef("stdin: %w", err)
		}
	case source.Null:
		payload = []byte{}
	case source.Replay:
		if records, err = readRecords(o.File); err != nil {
			return err
		}
	}

	c, err := o.Dial(ctx, o.Conn)
	if err != nil {
		return err
	}
	info := c.Info()
	if o.Conn.Version == mqttconn.VAuto {
		// From here on (properties sent or left out, redials) the version
		// is the one the broker took.
		o.Conn.Version = info.Version
		if info.Version != mqttconn.V5 && !o.Props.empty() {
			_ = c.Disconnect(ctx)
			return &clierr.Error{Kind: clierr.KindUsage,
				Err:   fmt.Errorf("%s is an MQTT 5 property, and the broker speaks MQTT %s only (-V auto fell back to it)", o.Props.firstName(), info.Version),
				Hints: []string{"drop " + o.Props.firstName() + ", or use a broker with MQTT 5"}}
		}
	}
	s := newSender(ctx, o, o.Conn, c, o.Source == source.Lines)
	defer s.close(ctx)
	if o.QoS > info.MaximumQoS && info.Version == mqttconn.V5 {
		o.IO.Warnf("the broker's maximum QoS is %d; it may refuse QoS %d messages", info.MaximumQoS, o.QoS)
	}
	var host string
	if ts != nil {
		host, _ = o.Host()
	}
	b := &builder{o: o, ts: ts, host: host, clientID: info.ClientID}

	switch o.Source {
	case source.Lines:
		return runLines(ctx, o, s, b)
	case source.Replay:
		return runReplay(ctx, o, s, records)
	}
	n := max(o.Repeat, 1)
	pace := newPacer(o)
	for i := 1; i <= n; i++ {
		if err := pace.wait(ctx, i); err != nil {
			return err
		}
		m, err := b.message(i, payload)
		if err != nil {
			return err
		}
		if err := s.publish(ctx, m); err != nil {
			return err
		}
		if o.RepeatDelay > 0 && i < n {
			// --repeat-delay counts from the acknowledgement, as
			// mosquitto_pub's does, so wait for this one first.
			if err := s.drain(ctx); err != nil {
				return err
			}
		}
	}
	if err := s.drain(ctx); err != nil {
		return err
	}
	cnt, first := s.counts()
	if n > 1 {
		summary(o, cnt)
	}
	return failure(cnt, first)
}

func summary(o *Options, c counts) {
	msg := fmt.Sprintf("sent %d, acked %d, failed %d", c.sent, c.acked, c.failed)
	if c.resent > 0 {
		msg += fmt.Sprintf(" (%d sent again after reconnecting)", c.resent)
	}
	o.IO.Infof("%s", msg)
}

// failure turns the counts into the run's result: nil when nothing
// failed, else the first failure (keeping its kind, so a broker refusal
// exits 6) with the count in front.
func failure(c counts, first error) error {
	if c.failed == 0 {
		return nil
	}
	kind := clierr.KindOf(first)
	if c.failed == 1 {
		return first
	}
	return &clierr.Error{Kind: kind, Op: fmt.Sprintf("%d of %d messages failed; the first", c.failed, c.sent), Err: first}
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// decode applies --encoding to a payload.
func decode(enc string, b []byte) ([]byte, error) {
	switch enc {
	case "", EncText:
		return b, nil
	case EncHex:
		s := strings.Join(strings.Fields(string(b)), "")
		out, err := hex.DecodeString(s)
		if err != nil {
			return nil, clierr.Usagef("not valid hex (%v)", err).Hintf("give pairs of hex digits, e.g. 48656c6c6f")
		}
		return out, nil
	case EncBase64:
		s := strings.Join(strings.Fields(string(b)), "")
		out, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if out2, err2 := base64.RawStdEncoding.DecodeString(s); err2 == nil {
				return out2, nil
			}
			return nil, clierr.Usagef("not valid base64 (%v)", err).Hintf("use standard base64, e.g. SGVsbG8=")
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown encoding %q", enc)
}

// builder makes outgoing messages from the options, applying templates.
type builder struct {
	o        *Options
	ts       *templates
	host     string
	clientID string
}

// message builds message number seq (from 1) with the given payload; a
// payload template, when there is one, replaces it.
func (b *builder) message(seq int, payload []byte) (*mqttconn.Message, error) {
	return b.messageTo(seq, b.o.Topic, payload)
}

func (b *builder) messageTo(seq int, name string, payload []byte) (*mqttconn.Message, error) {
	o := b.o
	m := &mqttconn.Message{Topic: name, Payload: payload, QoS: o.QoS, Retain: o.Retain}
	p := o.Props
	m.ContentType, m.ResponseTopic, m.CorrelationData = p.ContentType, p.ResponseTopic, p.CorrelationData
	m.MessageExpiry, m.PayloadFormat, m.TopicAlias = p.MessageExpiry, p.PayloadFormat, p.TopicAlias
	m.UserProperties = p.UserProperties
	if b.ts != nil {
		d := newTmplData(seq, o.Clock.Now(), b.host, b.clientID)
		var err error
		if b.ts.topic != nil && name == o.Topic {
			if m.Topic, err = execTemplate(b.ts.topic, d); err != nil {
				return nil, err
			}
			if err := topic.ValidateName(m.Topic); err != nil {
				return nil, clierr.Usagef("--template: %v", err)
			}
		}
		if b.ts.payload != nil {
			s, err := execTemplate(b.ts.payload, d)
			if err != nil {
				return nil, err
			}
			if m.Payload, err = decode(o.Encoding, []byte(s)); err != nil {
				return nil, clierr.Usagef("--template: payload: %w", err)
			}
		}
		if len(b.ts.props) > 0 {
			m.UserProperties = make([]mqttconn.UserProperty, len(b.ts.props))
			for i := range b.ts.props {
				k, err := execTemplate(b.ts.keys[i], d)
				if err != nil {
					return nil, err
				}
				v, err := execTemplate(b.ts.props[i], d)
				if err != nil {
					return nil, err
				}
				m.UserProperties[i] = mqttconn.UserProperty{Key: k, Value: v}
			}
		}
	}
	return m, nil
}

// pacer spaces messages for --rate: message i is due at start + (i-1)/rate.
type pacer struct {
	o     *Options
	start time.Time
}

func newPacer(o *Options) *pacer { return &pacer{o: o} }

func (p *pacer) wait(ctx context.Context, i int) error {
	if p.o.RepeatDelay > 0 && i > 1 {
		if err := p.o.Clock.Sleep(ctx, p.o.RepeatDelay); err != nil {
			return err
		}
	}
	if p.o.Rate <= 0 {
		return ctx.Err()
	}
	if i == 1 {
		p.start = p.o.Clock.Now()
		return ctx.Err()
	}
	due := p.start.Add(time.Duration(float64(i-1) / p.o.Rate * float64(time.Second)))
	return p.o.Clock.Sleep(ctx, due.Sub(p.o.Clock.Now()))
}

// runLines publishes one message per line of o.In as lines arrive.
func runLines(ctx context.Context, o *Options, s *sender, b *builder) error {
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// Reading stdin cannot be interrupted; this goroutine only ends
		// at EOF, on a read error, or when Run has returned and the next
		// line arrives.
		r := bufio.NewReaderSize(o.In, 64*1024)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				line = bytes.TrimSuffix(line, []byte("\n"))
				select {
				case lines <- line:
				case <-stop:
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				readErr <- err
				close(lines)
				return
			}
		}
	}()
	pace := newPacer(o)
	seq := 0
	var stopErr error
loop:
	for {
		var line []byte
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
			stopErr = ctx.Err()
			break loop
		}
		if !ok {
			if err := <-readErr; err != nil {
				stopErr = fmt.Errorf("read stdin: %w", err)
			}
			break
		}
		seq++
		m, err := lineMessage(o, b, seq, line)
		if err != nil {
			s.mu.Lock()
			s.sent++
			s.mu.Unlock()
			s.failNow(fmt.Errorf("line %d: %w", seq, err))
			continue
		}
		if err := pace.wait(ctx, seq); err != nil {
			stopErr = err
			break
		}
		if err := s.publish(ctx, m); err != nil {
			stopErr = err
			break
		}
	}
	if stopErr == nil {
		stopErr = s.drain(ctx)
	}
	if stopErr != nil {
		s.abandon(stopErr)
	}
	cnt, first := s.counts()
	summary(o, cnt)
	if stopErr != nil && ctx.Err() != nil {
		return &clierr.Error{Kind: clierr.KindInterrupted, Op: "interrupted", Err: stopErr}
	}
	if stopErr != nil && cnt.failed == 0 {
		return stopErr
	}
	return failure(cnt, first)
}

// lineMessage turns one stdin line into a message, according to
// --topic-from-line and --line-format.
func lineMessage(o *Options, b *builder, seq int, line []byte) (*mqttconn.Message, error) {
	if o.LineFormat == LineJSONL {
		if len(bytes.TrimSpace(line)) == 0 {
			return nil, errors.New("empty line where a JSON record was expected")
		}
		m, err := mqttconn.ParseRecord(line)
		if err != nil {
			return nil, err
		}
		if err := topic.ValidateName(m.Topic); err != nil {
			return nil, err
		}
		return outgoing(o, m), nil
	}
	name := o.Topic
	if o.TopicFromLine {
		t, p, ok := bytes.Cut(line, []byte("\t"))
		if !ok {
			return nil, errors.New("no TAB: --topic-from-line reads topic<TAB>payload")
		}
		name, line = string(t), p
		if err := topic.ValidateName(name); err != nil {
			return nil, err
		}
	}
	payload, err := decode(o.Encoding, line)
	if err != nil {
		return nil, err
	}
	// A copy: the reader's buffer is reused.
	return b.messageTo(seq, name, bytes.Clone(payload))
}

// outgoing prepares a recorded message for sending: properties the
// protocol version cannot carry are dropped, incoming-only fields cleared.
func outgoing(o *Options, m *mqttconn.Message) *mqttconn.Message {
	m.Dup, m.PacketID, m.SubscriptionIDs = false, 0, nil
	if o.Topic != "" {
		m.Topic = o.Topic
	}
	if o.Conn.Version != mqttconn.V5 {
		m.PayloadFormat, m.MessageExpiry, m.ContentType, m.ResponseTopic = nil, nil, "", ""
		m.CorrelationData, m.UserProperties = nil, nil
	}
	return m
}

// readRecords reads a JSONL file written by `mqtk sub --output jsonl`.
func readRecords(path string) ([]*mqttconn.Message, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, clierr.Usagef("cannot read --replay %s: %v", path, unwrapPath(err)).Hintf("check the path and its permissions")
	}
	defer f.Close()
	var out []*mqttconn.Message
	r := bufio.NewReaderSize(f, 64*1024)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if t := bytes.TrimSpace(line); len(t) > 0 {
			m, perr := mqttconn.ParseRecord(t)
			if perr != nil {
				return nil, clierr.Usagef("--replay %s line %d: %v: the file should hold the lines 'mqtk sub --output jsonl' writes", path, n, perr)
			}
			out = append(out, m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if len(out) == 0 {
		return nil, clierr.Usagef("--replay %s holds no records", path).Hintf("record some with 'mqtk sub --output jsonl'")
	}
	return out, nil
}

// runReplay sends recorded messages in order, message i due at
// start + (Received_i - Received_0) / speed.
func runReplay(ctx context.Context, o *Options, s *sender, recs []*mqttconn.Message) error {
	if o.Conn.Version != mqttconn.V5 {
		for _, m := range recs {
			if m.ContentType != "" || m.ResponseTopic != "" || m.CorrelationData != nil || len(m.UserProperties) > 0 || m.MessageExpiry != nil || m.PayloadFormat != nil {
				o.IO.Warnf("the recording has MQTT 5 properties and -V %s cannot send them: they are left out", o.Conn.Version)
				break
			}
		}
	}
	start := o.Clock.Now()
	var first time.Time
	for _, m := range recs {
		if !m.Received.IsZero() {
			first = m.Received
			break
		}
	}
	for i, m := range recs {
		if o.Speed > 0 && !first.IsZero() && !m.Received.IsZero() {
			offset := time.Duration(float64(m.Received.Sub(first)) / o.Speed)
			if d := start.Add(offset).Sub(o.Clock.Now()); d > 0 {
				if err := o.Clock.Sleep(ctx, d); err != nil {
					return err
				}
			}
		}
		if err := s.publish(ctx, outgoing(o, m)); err != nil {
			return fmt.Errorf("replay record %d: %w", i+1, err)
		}
	}
	if err := s.drain(ctx); err != nil {
		return err
	}
	cnt, first2 := s.counts()
	summary(o, cnt)
	return failure(cnt, first2)
}
