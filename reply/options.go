// Package reply answers MQTT requests: the library behind `mqtk reply`,
// the responder side of `mqtk rr`.
//
// With MQTT 5 a request names its Response Topic and carries Correlation
// Data; the response goes to that topic with the same Correlation Data
// (MQTT 5 section 4.10). A request without a Response Topic cannot be
// answered and is skipped.
//
// MQTT 3.1.1 has neither property, so mqtk's two sides share a convention
// (internal/reqresp): the response to a request on topic T is
// published on T + "/reply". `mqtk rr -V 311` without -e subscribes there.
package reply

import (
	"errors"
	"io"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/reqresp"
	"github.com/mqtk/mqtk/internal/topic"
	"github.com/mqtk/mqtk/internal/ui"
)

// The user properties an MQTT 5 response carries.
const (
	// PropExitCode is the --exec command's exit status, "-1" when it was
	// killed (--timeout) or could not start.
	PropExitCode = "exit-code"
	// PropError says why a request failed; absent on success.
	PropError = "error"
	// PropRequestTopic names the request on a message to --error-topic.
	PropRequestTopic = "request-topic"
)

// Defaults for the bounds.
const (
	DefaultQueue     = 256
	DefaultMaxOutput = 1 << 20 // bytes of --exec stdout taken as the response
)

// Options configure one Run. cmd/mqtk fills them from flags.
type Options struct {
	Conn mqttconn.Config
	// Dial connects; nil means mqttconn.Dial. Tests wrap it.
	Dial mqttconn.DialFunc
	IO   *ui.Streams

	Topics []string // -t: request topic filters
	QoS    byte     // -q: of the subscriptions and of the responses
	Share  string   // --share GROUP: subscribe as $share/GROUP/filter

	// Exactly one of Message (a template unless Literal) and Exec.
	Message    string
	HasMessage bool // -m was given (an empty response is a valid one)
	Literal    bool // --literal: Message is sent as it is
	Exec       []string

	// Response holds MQTT 5 properties every response carries (-D publish:
	// user properties, content type, expiry). Topic, Payload, QoS and
	// CorrelationData are set per request.
	Response mqttconn.Message

	// ResponseSuffix makes the response topic of a request that names none
	// (every MQTT 3.1.1 request): request topic + suffix. Empty means
	// reqresp.DefaultSuffix.
	ResponseSuffix string
	// ResponseTopic, when set, replaces that convention with one fixed
	// topic, and MQTT 5 requests without a Response Topic are answered
	// there rather than skipped.
	ResponseTopic string
	// ErrorTopic, when set, receives failures instead of the requester.
	ErrorTopic string

	Concurrency int           // requests handled at once; 0 means 1 (in order)
	Queue       int           // requests waiting for a worker; 0 means DefaultQueue
	Timeout     time.Duration // per request; kills the --exec command; 0 is none
	MaxOutput   int           // bytes of --exec stdout; 0 means DefaultMaxOutput
	Count       int           // -C: end after this many answered; 0 runs on
	Verbose     bool          // -v: one line per request on stderr

	// Env is the environment --exec commands start from; nil means the
	// process's own. The request's variables are added to it.
	Env []string
	// Getenv serves {{env "NAME"}} in templates.
	Getenv func(string) string
	// Host serves {{.Hostname}}; nil gives "".
	Host func() (string, error)
	// Now is the clock for handling times; nil means time.Now.
	Now func() time.Time
	// Dir is the --exec command's working directory; "" is the current one.
	Dir string
	// Stderr receives the --exec commands' stderr, one command's at a time
	// after it ends; nil means IO.Err.
	Stderr io.Writer
}

// Validate checks what can be checked before connecting.
func (o *Options) Validate() error {
	if len(o.Topics) == 0 {
		return clierr.Usagef("no request topic given").Hintf("use -t FILTER (repeatable; + and # wildcards)")
	}
	if strings.Contains(o.Share, "/") {
		// [MQTT-4.8.2-2] a ShareName holds no "/" (ValidateFilter would
		// take what follows it for the filter).
		return clierr.Usagef("--share %q: a group name cannot contain /", o.Share)
	}
	for i, f := range o.filters() {
		if _, _, shared := topic.ParseShared(o.Topics[i]); shared && o.Share != "" {
			return clierr.Usagef("-t %s is already shared", o.Topics[i]).Hintf("drop --share or the $share/GROUP/ prefix")
		}
		// [MQTT-4.8.2-1] [MQTT-4.8.2-2] checked here for --share's group too.
		if err := topic.ValidateFilter(f); err != nil {
			return clierr.Usagef("-t: %v", err)
		}
	}
	switch {
	case o.HasMessage && len(o.Exec) > 0:
		return clierr.Usagef("-m and --exec both say what the response is").Hintf("give -m or --exec, not both")
	case !o.HasMessage && len(o.Exec) == 0:
		return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("no response given"),
			Hints: []string{"use -m TEMPLATE or --exec COMMAND [ARGS...]", "e.g. mqtk reply -t 'svc/time/#' -m 'now: {{.Time}}', or mqtk reply -t 'svc/echo' --exec cat"}}
	case o.Literal && !o.HasMessage:
		return clierr.Usagef("--literal applies to -m only")
	}
	if o.QoS > 2 {
		return clierr.Usagef("-q %d out of range", o.QoS).Hintf("use 0, 1 or 2")
	}
	if o.ResponseTopic != "" {
		// [MQTT-3.3.2-14] a Response Topic is a topic name, without wildcards.
		if err := topic.ValidateName(o.ResponseTopic); err != nil {
			return clierr.Usagef("-e: %v", err)
		}
	}
	if o.ErrorTopic != "" {
		if err := topic.ValidateName(o.ErrorTopic); err != nil {
			return clierr.Usagef("--error-topic: %v", err)
		}
	}
	if strings.ContainsAny(o.ResponseSuffix, "+#\x00") {
		return clierr.Usagef("--response-suffix %q: a topic name cannot contain + or #", o.ResponseSuffix)
	}
	if o.Response.ResponseTopic != "" || o.Response.CorrelationData != nil {
		return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("-D publish response-topic and correlation-data are the request's to give"),
			Hints: []string{"a response carries the request's correlation data; drop those -D publish options"}}
	}
	if o.Concurrency < 0 || o.Queue < 0 || o.Count < 0 || o.MaxOutput < 0 {
		return clierr.Usagef("--concurrency, --queue and -C must be positive")
	}
	if o.Timeout < 0 {
		return clierr.Usagef("--timeout must be positive")
	}
	if o.IO == nil {
		return errors.New("reply: Options.IO is required")
	}
	if o.Dial == nil {
		o.Dial = mqttconn.Dial
	}
	return nil
}

// filters are the subscriptions: each -t, inside the --share group.
func (o *Options) filters() []string {
	out := make([]string, len(o.Topics))
	for i, f := range o.Topics {
		if o.Share != "" {
			f = "$share/" + o.Share + "/" + f
		}
		out[i] = f
	}
	return out
}

// isResponse reports whether a message on name is one of the responses
// (or error reports) rather than a request: a filter such as svc/# covers
// svc/x/reply too, and answering an answer would loop.
func (o *Options) isResponse(name string) bool {
	return strings.HasSuffix(name, reqresp.Suffix(o.ResponseSuffix)) ||
		(o.ResponseTopic != "" && name == o.ResponseTopic) ||
		(o.ErrorTopic != "" && name == o.ErrorTopic)
}
