// Package rr sends one MQTT request and waits for its response: the
// library behind `mqtk rr`, mosquitto_rr's command line. With MQTT 5 the
// request carries a Response Topic and Correlation Data, and only
// responses that bring the same Correlation Data back count (mosquitto
// PR #2812); with MQTT 3.1.1, which has neither, the first messages on
// the response topic are the responses, as with mosquitto_rr -V 311.
//
// Without -e, MQTT 3.1.1 requests follow the convention `mqtk reply`
// answers by (internal/reqresp): the response to a request on T comes on
// T + "/reply".
package rr

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ctxio"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/reqresp"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/topic"
	"github.com/mqtk/mqtk/internal/ui"
)

// Printer shows responses on stdout. cmd/mqtk passes sub's, so that a
// response prints exactly as `mqtk sub` prints a message.
type Printer interface {
	Print(m *mqttconn.Message)
	Flush() error
}

// Options configure one Run. cmd/mqtk fills them from flags.
type Options struct {
	Conn mqttconn.Config
	// Dial connects; nil means mqttconn.Dial. Tests wrap it.
	Dial mqttconn.DialFunc
	IO   *ui.Streams
	In   io.Reader // for -s; nil means IO.In

	Topic         string // -t: where the request goes
	ResponseTopic string // -e: subscribed to before the request is sent
	// ResponseSuffix makes the response topic when -e is not given and the
	// protocol is 3.1.1 or 3.1: Topic + suffix. Empty means
	// reqresp.DefaultSuffix.
	ResponseSuffix string
	QoS            byte // -q: of the subscription and of the request
	// SubscriptionID is -D subscribe subscription-identifier; 0 is none.
	SubscriptionID int

	Source  source.Source
	Message string // -m
	File    string // -f

	// Request holds the request's MQTT 5 properties (-D publish); Topic,
	// Payload, QoS and ResponseTopic are set by Run. CorrelationData nil
	// means 16 random bytes.
	Request mqttconn.Message

	Count      int           // responses to wait for; 0 means 1
	Timeout    time.Duration // -W; 0 waits until interrupted
	NoRetained bool          // -R: a retained message is not a response
	Latency    bool          // --latency: round-trip time on stderr
	// RetainHandling is the response subscription's MQTT 5 option
	// (mosquitto_rr 2.1's --retain-handling): 0 send retained messages,
	// 1 only for a new subscription, 2 never [MQTT-3.8.3.1].
	RetainHandling byte

	Print Printer
	// Now is the clock for latency; nil means time.Now.
	Now func() time.Time
}

// Validate checks what can be checked before connecting.
func (o *Options) Validate() error {
	if o.Source == source.None {
		return clierr.Usagef("no request payload given").Hintf("use one of -m MESSAGE, -f FILE, -s (stdin) or -n (empty)")
	}
	if o.Topic == "" {
		return clierr.Usagef("no request topic given").Hintf("use -t TOPIC")
	}
	if err := topic.ValidateName(o.Topic); err != nil {
		return clierr.Usagef("-t: %v", err)
	}
	rt := o.responseTopic()
	if rt == "" {
		return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("no response topic given"),
			Hints: []string{"use -e TOPIC", "the responder publishes its answer there; mqtk rr subscribes to it before sending the request",
				"with -V 311 and no -e, the response is awaited on TOPIC" + reqresp.Suffix(o.ResponseSuffix) + ", where 'mqtk reply -V 311' answers"}}
	}
	if strings.ContainsAny(o.ResponseSuffix, "+#") {
		return clierr.Usagef("--response-suffix %q: a topic name cannot contain + or #", o.ResponseSuffix)
	}
	// [MQTT-3.3.2-13] [MQTT-3.3.2-14] a Response Topic is a topic name,
	// and subscribing to it must not catch other topics' messages.
	if err := topic.ValidateName(rt); err != nil {
		if o.ResponseTopic == "" {
			return clierr.Usagef("response topic (-t + --response-suffix): %v", err)
		}
		return clierr.Usagef("-e: %v", err)
	}
	if o.Request.ResponseTopic != "" {
		return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("-D publish response-topic: the response topic is -e"),
			Hints: []string{"drop -D publish response-topic; mqtk rr sends -e as the request's response topic"}}
	}
	if o.QoS > 2 {
		return clierr.Usagef("-q %d out of range", o.QoS).Hintf("use 0, 1 or 2")
	}
	if o.Count < 0 {
		return clierr.Usagef("-C/--count must be at least 1, got %d", o.Count)
	}
	if o.Timeout < 0 {
		return clierr.Usagef("-W/--timeout must be positive")
	}
	if o.Print == nil || o.IO == nil {
		return errors.New("rr: Options.Print and IO are required")
	}
	if o.Dial == nil {
		o.Dial = mqttconn.Dial
	}
	return nil
}

// responseTopic is -e, or for MQTT 3.1.1 and 3.1 without -e the shared
// convention's topic; "" when there is none.
func (o *Options) responseTopic() string {
	switch {
	case o.ResponseTopic != "":
		return o.ResponseTopic
	case o.Conn.Version == mqttconn.V311 || o.Conn.Version == mqttconn.V31:
		return reqresp.Topic(o.Topic, o.ResponseSuffix)
	}
	return ""
}

// Run sends the request and prints Count responses. The returned error's
// Kind says how it ended: nil when every response came; KindTimeout (exit
// 27, mosquitto_rr's code) when -W passed first; KindRejected when the
// broker refused the subscription or the request; context.Canceled when
// interrupted.
func Run(ctx context.Context, o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	payload, err := o.payload(ctx)
	if err != nil {
		return err
	}
	corr := o.Request.CorrelationData
	if corr == nil {
		corr = make([]byte, 16)
		_, _ = rand.Read(corr) // crypto/rand.Read never fails on supported platforms
	}
	want := max(o.Count, 1)
	rt := o.responseTopic()

	// -W counts from the start, as mosquitto_rr's alarm does: a broker that
	// never answers the CONNECT or the SUBSCRIBE ends the run as one whose
	// responder never answers.
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	// The reader hands messages over one at a time and waits: TCP pushes
	// back on the broker rather than memory growing. stop frees it once
	// Run no longer reads.
	msgs := make(chan *mqttconn.Message, 16)
	stop := make(chan struct{})
	defer close(stop)
	cfg := o.Conn
	cfg.OnMessage = func(m *mqttconn.Message) {
		select {
		case msgs <- m:
		case <-stop:
		}
	}
	c, err := o.Dial(ctx, cfg)
	if err != nil {
		return o.timedOut(ctx, err, 0, want, 0)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Disconnect(dctx)
	}()
	v5 := c.Info().Version == mqttconn.V5
	if !v5 && o.Conn.Version == mqttconn.VAuto {
		o.IO.Warnf("the broker speaks MQTT %s only (-V auto fell back to it): the request carries no response topic or correlation data, so the first message on %s is taken as the response",
			c.Info().Version, rt)
	}

	// Subscribe first, so that a fast responder's answer cannot come
	// before the subscription exists.
	codes, err := c.Subscribe(ctx, []mqttconn.Subscription{{Filter: rt, QoS: o.QoS, SubscriptionID: o.SubscriptionID, RetainHandling: o.RetainHandling}})
	if err != nil {
		return o.timedOut(ctx, fmt.Errorf("subscribe to %s: %w", rt, err), 0, want, 0)
	}
	if len(codes) > 0 && codes[0] >= 0x80 {
		return &clierr.Error{Kind: clierr.KindRejected, Reason: codes[0], Op: fmt.Sprintf("subscribe to %q", rt),
			Err: fmt.Errorf("refused by the broker: %s (0x%02X)", mqttconn.ReasonName(codes[0]), codes[0])}
	}

	req := o.Request
	req.Topic, req.Payload, req.QoS = o.Topic, payload, o.QoS
	if v5 {
		req.ResponseTopic, req.CorrelationData = rt, corr
	} else {
		req = mqttconn.Message{Topic: o.Topic, Payload: payload, QoS: o.QoS}
	}
	// The request is sent asynchronously: a responder on the same broker
	// may answer before the PUBACK arrives, and the answer must be read.
	sent := now()
	pubErr := make(chan error, 1)
	c.PublishAsync(ctx, &req, func(err error) { pubErr <- err })

	got, ignored := 0, 0
	for {
		select {
		case err := <-pubErr:
			if err != nil {
				return o.timedOut(ctx, fmt.Errorf("publish the request to %s: %w", o.Topic, err), got, want, ignored)
			}
		case m := <-msgs:
			if m.Topic != rt || (o.NoRetained && m.Retain) {
				continue
			}
			if v5 && !bytes.Equal(m.CorrelationData, corr) {
				// Another requester's response, or a stale retained one.
				ignored++
				continue
			}
			got++
			if got == 1 && o.Latency {
				// Measured to the first response, from just before the
				// request was handed to the connection.
				o.IO.Infof("latency %s", latency(now().Sub(sent)))
			}
			o.Print.Print(m)
			if err := o.Print.Flush(); err != nil {
				return fmt.Errorf("write stdout: %w", err)
			}
			if got >= want {
				return nil
			}
		case <-c.Done():
			return &clierr.Error{Kind: clierr.KindNetwork, Op: "connection lost", Err: c.Err()}
		case <-ctx.Done():
			return o.timedOut(ctx, ctx.Err(), got, want, ignored)
		}
	}
}

// timedOut turns an error into KindTimeout when -W's deadline (on ctx)
// is what ended the run, whichever step was waiting.
func (o *Options) timedOut(ctx context.Context, err error, got, want, ignored int) error {
	if o.Timeout <= 0 || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	msg := fmt.Sprintf("timed out after %s with %d of %d responses", o.Timeout, got, want)
	if ignored > 0 {
		msg += fmt.Sprintf(" (ignored %d with other correlation data)", ignored)
	}
	return &clierr.Error{Kind: clierr.KindTimeout, Err: errors.New(msg)}
}

// latency prints a duration in milliseconds with microseconds, so that
// loopback round trips do not all read 0s.
func latency(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

func (o *Options) payload(ctx context.Context) ([]byte, error) {
	switch o.Source {
	case source.Message:
		return []byte(o.Message), nil
	case source.File:
		b, err := os.ReadFile(o.File)
		if err != nil {
			return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read -f " + o.File, Err: err}
		}
		return b, nil
	case source.Stdin:
		in := o.In
		if in == nil {
			in = o.IO.In
		}
		b, err := ctxio.ReadAll(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	return []byte{}, nil
}
