package main

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/reqresp"
	"github.com/mqtk/mqtk/reply"
)

func newReplyCmd(a *app, runF func(*reply.Options) error) *cobra.Command {
	opts := &reply.Options{}
	var (
		qos                   int
		timeout               string
		execMode              bool
		count                 = countValue{n: &opts.Count}
		concurrency, queueLen int
	)
	cmd := &cobra.Command{
		Use:   "reply -t FILTER (-m TEMPLATE | --exec COMMAND [ARGS...]) [flags]",
		Short: "Answer requests: a responder for mqtk rr and MQTT 5 request/response",
		Long: `Subscribe to request topics and answer every request, as a service would:
'mqtk rr' (or any MQTT 5 requester) asks, 'mqtk reply' answers.

The response is -m TEMPLATE, a Go template as in 'mqtk pub --template',
with the request's fields besides: {{.Payload}} {{.Topic}}
{{.ResponseTopic}} {{.CorrelationData}} {{.CorrelationHex}}
{{.ContentType}} {{index .UserProperties "key"}}, and {{.Seq}} {{.Time}}
{{.Unix}} {{.UnixNano}} {{.Hostname}} {{.ClientID}} {{uuid}}
{{randInt 1 6}} {{randFloat 0 1}} {{env "NAME"}}. --literal sends -m as
it is.

Or it is what a command prints: --exec COMMAND ARGS... (the last of
mqtk's flags; everything after it is the command) runs the command once
per request, with the request's payload on stdin and the rest of it in the
environment:
  MQTK_TOPIC                 the request's topic
  MQTK_RESPONSE_TOPIC        where the response goes
  MQTK_CORRELATION_DATA      the correlation data as sent (when it is text)
  MQTK_CORRELATION_DATA_HEX  the correlation data in hex
  MQTK_CONTENT_TYPE          the request's content type
  MQTK_USER_PROPERTY_<KEY>   each user property; the key upper-cased, other
                             characters than A-Z and 0-9 as _, repeated
                             keys joined with a comma
  MQTK_QOS, MQTK_SEQ         the request's QoS; 1, 2, ... per request
Its stdout is the response's payload; its stderr goes to mqtk's stderr.
With MQTT 5 the response carries the user property exit-code (-1 when the
command was killed or could not start). When the command fails (exit
status not 0, --timeout), the failure goes to --error-topic if given (the
command's stderr, with the request's correlation data, response topic and
the user properties error and request-topic); otherwise the requester gets
the response with the user property error saying why (with MQTT 3.1.1,
which has no properties, the payload is "mqtk reply: " and the reason).

Where the response goes:
  MQTT 5     to the request's Response Topic, with its Correlation Data.
             A request without a Response Topic is skipped and counted,
             with a note on stderr, unless -e names a topic for them.
  MQTT 3.1.1 has no Response Topic or Correlation Data, so mqtk uses a
             convention that 'mqtk rr -V 311' (without -e) follows too:
             the response to a request on TOPIC goes to TOPIC/reply.
             --response-suffix SUFFIX (TOPIC + SUFFIX) or -e TOPIC (one
             fixed topic) follow other systems' conventions. Requests on
             one topic cannot be told apart: give each requester a topic
             of its own (svc/time/+ with requests on svc/time/ID).
Messages on topics ending in the suffix (and on -e, --error-topic) are
responses, not requests, and are ignored: a filter such as svc/# covers
them too.

Scale and limits:
  --concurrency N   handle N requests at once (default 1: one at a time,
                    answered in the order they came)
  --queue N         at most N requests wait for a free worker (default 256);
                    more are dropped, counted as rejected, with a note
  --timeout DUR     per request: the --exec command is killed after DUR
  --share GROUP     subscribe as $share/GROUP/FILTER: run several responders
                    (on other machines too) and the broker spreads requests
  -C N              exit 0 after answering N requests

Ctrl-C stops taking requests, answers those already received, prints the
summary (served, failed, skipped, rejected; p50/p99 handling time, from
arrival to the response being sent) on stderr and exits 130; a second
Ctrl-C quits at once. -D publish sets properties on every response.`,
		Example: `  mqtk reply -t 'svc/time/#' -m 'now: {{.Time}}'
  mqtk rr -t svc/time/now -e svc/time/reply/$$ -m now -W 5
  mqtk reply -t svc/echo --exec cat
  mqtk reply -t 'svc/upper' --concurrency 4 --timeout 5s --exec tr a-z A-Z
  mqtk reply -t 'svc/sh/#' --exec sh -c 'echo "$MQTK_TOPIC asked for $(cat)"'
  mqtk reply -V 311 -t 'svc/echo/+' --exec cat   # mqtk rr -V 311 -t svc/echo/$$ -m hi
  mqtk reply -t 'jobs/#' --share workers --concurrency 8 --error-topic jobs/errors --exec ./handle.sh`,
	}
	cf := addConnFlags(cmd, a)
	props := addPropertyFlag(cmd, cf)
	fs := cmd.Flags()
	// Everything after the first argument that is not a flag is the
	// --exec command's, its flags included (`--exec sh -c ...`: -c is
	// sh's, not mqtk's --no-clean).
	fs.SetInterspersed(false)
	cmd.Annotations = map[string]string{flagsBeforeArgs: "true"}
	fs.StringArrayVarP(&opts.Topics, "topic", "t", nil, "request topic filter to subscribe to (repeatable; + and # wildcards)")
	fs.IntVarP(&qos, "qos", "q", 0, "QoS of the subscriptions and of the responses: 0, 1 or 2")
	fs.StringVarP(&opts.Message, "message", "m", "", "the response: a Go template of the request's fields (see above)")
	fs.BoolVar(&opts.Literal, "literal", false, "send -m as it is, not as a template")
	fs.BoolVar(&execMode, "exec", false, "run the command that follows for each request: payload on stdin, response from stdout")
	fs.StringVarP(&opts.ResponseTopic, "response-topic", "e", "", "answer requests that name no response topic here (MQTT 3.1.1: all of them)")
	fs.StringVar(&opts.ResponseSuffix, "response-suffix", reqresp.DefaultSuffix, "MQTT 3.1.1: answer a request on TOPIC on TOPIC + this suffix (the convention mqtk rr follows)")
	fs.StringVar(&opts.ErrorTopic, "error-topic", "", "send failed requests (non-zero exit, --timeout) here instead of to the requester")
	fs.IntVar(&concurrency, "concurrency", 1, "requests handled at once (1 answers in order)")
	fs.IntVar(&queueLen, "queue", reply.DefaultQueue, "requests that may wait for a worker; more are dropped")
	fs.StringVar(&timeout, "timeout", "", "per request: kill the --exec command after this long (seconds, 0.5, or 10s, 2m)")
	fs.StringVar(&opts.Share, "share", "", "subscribe as $share/GROUP/FILTER, one of a group of responders")
	fs.VarP(count, "count", "C", "exit 0 after answering `N` requests")
	fs.BoolVarP(&opts.Verbose, "verbose", "v", false, "a line on stderr for each request")

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		conn, err := cf.config(cmd.Context())
		if err != nil {
			return err
		}
		opts.Conn = conn
		opts.IO = a.io
		opts.Dial = mqttconn.Dial
		opts.Getenv = a.getenv
		opts.Host = os.Hostname
		if len(opts.Topics) == 0 && conn.Topic != "" {
			opts.Topics = []string{conn.Topic}
		}
		switch {
		case execMode && len(args) == 0:
			return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("--exec needs a command"),
				Hints: []string{"put the command and its arguments after --exec, e.g. --exec cat or --exec sh -c 'tr a-z A-Z'"}}
		case !execMode && len(args) > 0:
			return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("unexpected argument " + strconv.Quote(args[0])),
				Hints: []string{"mqtk reply takes no arguments except --exec's command; flags go before --exec"}}
		case execMode:
			opts.Exec = args
		}
		opts.HasMessage = fs.Changed("message")
		if qos < 0 || qos > 2 {
			return clierr.Usagef("-q %d out of range", qos).Hintf("use 0, 1 or 2")
		}
		opts.QoS = byte(qos)
		if concurrency < 1 {
			return clierr.Usagef("--concurrency must be at least 1, got %d", concurrency)
		}
		if queueLen < 1 {
			return clierr.Usagef("--queue must be at least 1, got %d", queueLen)
		}
		opts.Concurrency, opts.Queue = concurrency, queueLen
		if fs.Changed("count") && opts.Count <= 0 {
			return clierr.Usagef("-C/--count must be at least 1, got %d", opts.Count)
		}
		if opts.ResponseSuffix == "" {
			return clierr.Usagef("--response-suffix is empty: a response would go to the request's own topic")
		}
		if timeout != "" {
			if opts.Timeout, err = parseSecondsFloat("timeout", timeout); err != nil {
				return err
			}
			if opts.Timeout == 0 {
				return clierr.Usagef("--timeout must be more than zero")
			}
			if !execMode {
				a.io.Warnf("--timeout limits --exec commands; a -m template answers at once")
			}
		}
		// -D publish goes on every response.
		r := &opts.Response
		if err := props.applyPublish(msgTarget{user: &r.UserProperties, contentType: &r.ContentType,
			responseTopic: &r.ResponseTopic, correlation: &r.CorrelationData, expiry: &r.MessageExpiry,
			format: &r.PayloadFormat, alias: &r.TopicAlias}); err != nil {
			return err
		}
		if r.TopicAlias != 0 {
			return clierr.Usagef("-D publish topic-alias: responses go to many topics; mqtk reply sets no alias")
		}
		if strings.TrimSpace(opts.Share) == "" && fs.Changed("share") {
			return clierr.Usagef("--share is empty").Hintf("give a group name, e.g. --share workers")
		}
		return validateAndRun(cmd.Context(), opts, runF, reply.Run)
	}
	return cmd
}
