package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/reqresp"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/rr"
	"github.com/mqtk/mqtk/sub"
)

func newRRCmd(a *app, runF func(*rr.Options) error) *cobra.Command {
	opts := &rr.Options{}
	out := &sub.Options{}
	var (
		qos             int
		timeout, format string
		stdin, null     bool
		quiet, pretty   bool
		retainHandling  string
		message, file   string
		count           = countValue{n: &opts.Count}
	)
	cmd := &cobra.Command{
		Use:   "rr -t TOPIC [-e RESPONSE-TOPIC] (-m MSG | -f FILE | -s | -n) [flags]",
		Short: "Request/response: publish a request and print the response",
		Long: `Publish one request and wait for its response, as mosquitto_rr does:
subscribe to the response topic (-e), publish the request to -t with that
Response Topic and a Correlation Data, and print the response's payload as
'mqtk sub' prints a message (-v, -N, -F, --output).

The request's Correlation Data is 16 random bytes unless -D publish
correlation-data gives it (hex: and base64: for binary); a message on the
response topic whose Correlation Data differs is another request's answer
and is ignored. -D adds any MQTT 5 property mosquitto_rr's -D does (connect,
publish, subscribe, disconnect, will).

MQTT 3.1.1 (-V 311) has no Response Topic or Correlation Data: the request
is published as it is, and the first message on the response topic is the
response, as with mosquitto_rr -V 311. The responder must know where to
answer, so mqtk defines a convention that 'mqtk reply -V 311' follows: the
response to a request on TOPIC comes on TOPIC/reply. With -V 311 and no -e,
mqtk rr waits there; -e TOPIC or --response-suffix SUFFIX (TOPIC + SUFFIX)
match other responders' conventions. Requests on one topic cannot be told
apart at 3.1.1: give each requester a topic of its own (svc/time/$$).

Ending and exit codes:
  0    -C responses (default 1) arrived
  27   -W passed first (the code mosquitto_rr uses); -W counts from the start
  6    the broker refused the subscription or the request
  130  interrupted; see 'mqtk help exit-codes' for connection failures

--latency prints the time from sending the request to the first response
on stderr.`,
		Example: `  mqtk rr -t svc/time -e svc/time/reply/$$ -m now -W 5
  mqtk rr -t dev/42/cmd -e dev/42/reply -m '{"op":"status"}' -q 1 -v --latency
  mqtk rr -t calc -e calc/reply -m '1+1' -D publish correlation-data hex:0001 -F '%D %p'
  mqtk rr -V 311 -t svc/echo/$$ -m hello -W 5     # answered on svc/echo/$$/reply`,
		Args: cobra.NoArgs,
	}
	cf := addConnFlags(cmd, a)
	// mosquitto_rr takes -D unsubscribe and sends no UNSUBSCRIBE.
	props := addPropertyFlag(cmd, cf, "unsubscribe")
	fs := cmd.Flags()
	fs.StringVarP(&opts.Topic, "topic", "t", "", "topic the request is published to")
	fs.StringVarP(&opts.ResponseTopic, "response-topic", "e", "", "topic the response comes back on (subscribed to before the request is sent); with -V 311 the default is TOPIC/reply")
	fs.StringVar(&opts.ResponseSuffix, "response-suffix", reqresp.DefaultSuffix, "with -V 311 and no -e, the response comes on TOPIC + this suffix (the convention mqtk reply follows)")
	fs.StringVarP(&message, "message", "m", "", "request payload given on the command line")
	fs.StringVarP(&file, "file", "f", "", "send the whole file as the request (binary-safe)")
	fs.BoolVarP(&stdin, "stdin-file", "s", false, "send all of stdin as the request")
	fs.BoolVarP(&null, "null-message", "n", false, "send an empty request")
	fs.IntVarP(&qos, "qos", "q", 0, "QoS of the request and of the response subscription: 0, 1 or 2")
	fs.VarP(count, "count", "C", "exit 0 after `N` responses (default 1)")
	fs.StringVarP(&timeout, "timeout", "W", "", "exit 27 if the responses do not come within this time (seconds, 0.5, or 10s, 2m)")
	fs.BoolVarP(&opts.NoRetained, "no-retained", "R", false, "a retained message is not a response")
	fs.BoolVarP(&out.Verbose, "verbose", "v", false, "print the topic before the payload")
	fs.BoolVarP(&out.NoEOL, "no-eol", "N", false, "do not print a newline after the response")
	fs.StringVarP(&format, "format", "F", "", "mosquitto format string, as in 'mqtk sub -F' (%p payload, %D correlation data, ...)")
	fs.StringVar(&out.Output, "output", "", "text, json, jsonl, hex, base64, raw or styled, as in 'mqtk sub'")
	fs.BoolVar(&opts.Latency, "latency", false, "print the round-trip time of the first response on stderr")
	fs.BoolVar(&quiet, "quiet", false, "no commentary on stderr (errors still shown)")
	fs.BoolVar(&pretty, "pretty", false, "with -F %j or %J: lay the JSON out over several lines, as mosquitto_rr --pretty does")
	fs.StringVar(&retainHandling, "retain-handling", "always", "MQTT 5: always (0) take a retained response, new (1) only for a new subscription, never (2)")

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		conn, err := cf.config(cmd.Context())
		if err != nil {
			return err
		}
		opts.Conn = conn
		opts.IO = a.io
		opts.Dial = mqttconn.Dial
		if opts.Topic == "" {
			opts.Topic = conn.Topic
		}
		var sources []string
		for _, s := range []struct {
			set  bool
			name string
			src  source.Source
		}{{fs.Changed("message"), "-m", source.Message}, {fs.Changed("file"), "-f", source.File},
			{stdin, "-s", source.Stdin}, {null, "-n", source.Null}} {
			if s.set {
				sources = append(sources, s.name)
				opts.Source = s.src
			}
		}
		if len(sources) > 1 {
			return clierr.Usagef("more than one request payload (%s)", strings.Join(sources, ", ")).Hintf("give exactly one of -m, -f, -s, -n")
		}
		opts.Message, opts.File = message, file
		if opts.ResponseSuffix == "" {
			return clierr.Usagef("--response-suffix is empty: the response would come on the request's own topic")
		}
		if qos < 0 || qos > 2 {
			return clierr.Usagef("-q %d out of range", qos).Hintf("use 0, 1 or 2")
		}
		opts.QoS = byte(qos)
		if opts.RetainHandling, err = parseRetainHandling(retainHandling); err != nil {
			return err
		}
		if fs.Changed("retain-handling") && (conn.Version == mqttconn.V311 || conn.Version == mqttconn.V31) {
			return clierr.Usagef("--retain-handling is an MQTT 5 subscription option").Hintf("drop -V %s or the flag", conn.Version)
		}
		if quiet {
			a.io.Quiet = true
		}
		if opts.Timeout, err = countAndTimeout(fs.Changed("count"), opts.Count, timeout); err != nil {
			return err
		}
		// -D publish goes on the request, through the fields pub's
		// property flags fill.
		r := &opts.Request
		if err := props.applyPublish(msgTarget{user: &r.UserProperties, contentType: &r.ContentType,
			responseTopic: &r.ResponseTopic, correlation: &r.CorrelationData, expiry: &r.MessageExpiry,
			format: &r.PayloadFormat, alias: &r.TopicAlias}); err != nil {
			return err
		}
		if err := props.applySubscriptionID(&opts.SubscriptionID); err != nil {
			return err
		}
		if fs.Changed("format") {
			if format == "" {
				return clierr.Usagef("-F/--format is empty").Hintf("give a format such as '%%t %%p'")
			}
			if out.Format, err = sub.CompileFormat(format); err != nil {
				return clierr.Usagef("-F: %v", err)
			}
			out.Format.Pretty = pretty
		}
		out.IO = a.io
		if err := out.ValidateOutput(); err != nil {
			return err
		}
		opts.Print = sub.NewPrinter(out)
		return validateAndRun(cmd.Context(), opts, runF, rr.Run)
	}
	return cmd
}
