package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/sub"
)

func newSubCmd(a *app, runF func(*sub.Options) error) *cobra.Command {
	opts := &sub.Options{}
	var (
		qos                          []string
		timeout, idle, match, format string
		retainHandling               string
		subID                        int
		noReconnect, quiet, pretty   bool
		messageRate                  bool
		randomFilter                 float64
		count                        = countValue{n: &opts.Count}
	)
	cmd := &cobra.Command{
		Use:   "sub -t TOPIC [-t TOPIC ...] [flags]",
		Short: "Subscribe: tail topics, wait for a message in a script, record traffic",
		Long: `Subscribe to topics and print what arrives. Flags follow mosquitto_sub:
-t topic (repeatable, + and # wildcards, $share/GROUP/filter), -q qos, -T
filter-out, -R, -C count, -W timeout, -v, -N, -F format, -U, -E.

Ending conditions and exit codes:
  -C/--count N        exit 0 after N messages (with --match: N matching ones)
  -W/--timeout DUR    exit 27 if it passes first (as mosquitto_sub); with
                      --match, exit 7 instead if fewer than N (or, without
                      -C, no) payloads matched, else exit 0
  --idle DUR          exit 0 once no message arrived for DUR; with --match,
                      exit 7 if fewer than N (without -C: no) payloads matched
  --match EXPR        count and print only matching payloads: re:REGEX, or
                      jq:EXPR (payload parsed as JSON, matches when EXPR
                      yields true, e.g. jq:'.status == "ok"')
  --retained-only     exit 0 once the retained messages have been delivered
                      (learnt from one QoS 1 message mqtk sends itself on
                      mqtk/retained-sync/RANDOM; if the broker refuses or
                      drops it, at the first message without retain, as
                      mosquitto_sub, or after 2s without messages, with a
                      line on stderr)
  -E                  exit 0 once the broker acknowledged the subscriptions
                      (-C and -W are then accepted and never apply, as
                      with mosquitto_sub; not with --idle, --match,
                      --retained-only)
  a refused subscription (SUBACK >= 0x80) exits 6; Ctrl-C exits 130;
  see 'mqtk help exit-codes' for connection failures (3, 4, 5).

Output (stdout, flushed as each message arrives):
  default             the payload; on a terminal, a styled view with time,
                      coloured topic, QoS/retain badges and pretty JSON
  -v                  topic, a space, then the payload
  -N                  no newline after each message
  -F FORMAT           mosquitto_sub's format: %t topic, %p payload, %x/%X hex,
                      %l length, %q qos, %r retain, %m message id, %I ISO
                      time, %U unix time with ns, %j/%J JSON, %A %C %D %E %F %P
                      %R %S MQTT 5 properties, %% percent; flags 0 and -,
                      width and .precision (%-20t %5.5I); @X strftime, @N ns;
                      escapes \n \t \e \0 \a \r \v \\
  --output MODE       text, json (indented record), jsonl (the lossless
                      record 'mqtk pub --replay' reads), hex, base64, raw,
                      or styled (the terminal view, forced even into a
                      pipe, e.g. for less -R; colour follows --color);
                      -v and -N apply to text, hex and base64 only
  --dump DIR          one file per message (raw payload) plus NAME.json
  -w/--watch          terminal table: one row per topic, updated in place
  --stats             per-topic counts and rates on stderr at exit
  --message-rate      instead of the messages, the count received in each
                      second, one number per line (mosquitto_sub 2.1)
  --pretty            %j and %J over several lines, tab-indented
  --random-filter P   print P percent of the messages, chosen at random

Non-UTF-8 payloads and control characters are escaped (\xNN, or \u00XX
inside JSON) when stdout is a terminal, never written raw to it; piped
output keeps the bytes as they came. A dropped connection is redialled
(the same session with -c) with a line on stderr, unless --no-reconnect.

MQTT 5 properties: -D/--property COMMAND NAME VALUE, as mosquitto_sub's
-D, on connect, subscribe, unsubscribe, disconnect or will (-D subscribe
user-property KEY VALUE, -D connect topic-alias-maximum 10); binary values
take hex: or base64:.`,
		Example: `  mqtk sub -t 'sensors/#' -v
  mqtk sub -t dev/+/state -C 1 -W 10s --match 'jq:.status == "ok"'
  mqtk sub -t '#' --output jsonl > traffic.jsonl
  mqtk sub -t 'cfg/#' --retained-only --remove-retained --dry-run
  mqtk sub -t 'a/#' -F '%I %t %l bytes: %p'`,
		Args: cobra.NoArgs,
	}
	cf := addConnFlags(cmd, a)
	// mosquitto_sub takes -D publish and sends no PUBLISH of its own.
	props := addPropertyFlag(cmd, cf, "publish")
	fs := cmd.Flags()
	fs.StringArrayVarP(&opts.Topics, "topic", "t", nil, "topic filter to subscribe to (repeatable; + # wildcards; $share/GROUP/FILTER)")
	fs.StringArrayVarP(&qos, "qos", "q", nil, "QoS for the subscriptions: one for all, or one per -t in order (default 0)")
	fs.StringArrayVarP(&opts.FilterOut, "filter-out", "T", nil, "do not print messages whose topic matches this filter (repeatable)")
	fs.BoolVarP(&opts.NoRetained, "no-retained", "R", false, "skip messages that have the retain flag set")
	fs.BoolVar(&opts.RetainedOnly, "retained-only", false, "print the retained messages, then exit 0")
	fs.BoolVar(&opts.NoLocal, "no-local", false, "MQTT 5: do not receive messages this client publishes")
	fs.BoolVar(&opts.RetainAsPublished, "retain-as-published", false, "MQTT 5: keep the retain flag as the publisher set it")
	fs.StringVar(&retainHandling, "retain-handling", "always", "MQTT 5: always (0) send retained messages, new (1) only for a new subscription, never (2)")
	fs.IntVar(&subID, "subscription-id", 0, "MQTT 5: subscription identifier (1..268435455), shown by %S and in jsonl")
	fs.StringArrayVarP(&opts.Unsubscribe, "unsubscribe", "U", nil, "unsubscribe from this filter after connecting (repeatable; use with -c)")
	fs.BoolVarP(&opts.ExitAfterSuback, "exit-after-suback", "E", false, "exit once the subscriptions are acknowledged (sets up a -c session)")
	fs.BoolVar(&opts.RemoveRetained, "remove-retained", false, "clear every retained message received (publish an empty retained message)")
	fs.BoolVar(&opts.DryRun, "dry-run", false, "with --remove-retained: list what would be cleared on stderr, clear nothing")
	fs.VarP(count, "count", "C", "exit 0 after `N` messages")
	fs.StringVarP(&timeout, "timeout", "W", "", "exit 27 if the count is not reached within this time (seconds, 0.5, or 10s, 2m)")
	fs.StringVar(&idle, "idle", "", "exit once no message arrived for this long (seconds or a duration)")
	fs.StringVar(&match, "match", "", "only count and print payloads matching re:REGEX or jq:EXPR")
	fs.BoolVarP(&opts.Verbose, "verbose", "v", false, "print the topic before the payload")
	fs.BoolVarP(&opts.NoEOL, "no-eol", "N", false, "do not print a newline after each message")
	fs.StringVarP(&format, "format", "F", "", "mosquitto_sub format string (see above)")
	fs.StringVar(&opts.Output, "output", "", "text, json, jsonl, hex, base64, raw or styled (default: styled on a terminal, text otherwise)")
	fs.StringVar(&opts.DumpDir, "dump", "", "write each message to a file in this directory, with a .json metadata sidecar")
	fs.BoolVarP(&opts.Watch, "watch", "w", false, "terminal table of topics with last payload, count, rate and age")
	fs.BoolVar(&quiet, "quiet", false, "no commentary on stderr (errors still shown)")
	fs.BoolVar(&pretty, "pretty", false, "with -F %j or %J: lay the JSON out over several lines, as mosquitto_sub --pretty does")
	fs.Float64Var(&randomFilter, "random-filter", 100, "print only this `PERCENT` (0.1..100) of the messages, chosen at random")
	fs.BoolVar(&messageRate, "message-rate", false, "instead of the messages, print how many arrived in each second, one number per line")
	fs.BoolVar(&opts.Stats, "stats", false, "print per-topic message counts and rates on stderr at exit")
	fs.BoolVar(&noReconnect, "no-reconnect", false, "exit 3 when the connection drops instead of redialling")

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		conn, err := cf.config(cmd.Context())
		if err != nil {
			return err
		}
		opts.Conn = conn
		opts.IO = a.io
		opts.Dial = mqttconn.Dial
		opts.Reconnect = !noReconnect
		switch {
		case conn.Topic == "":
		case len(opts.Topics) == 0:
			opts.Topics = []string{conn.Topic}
		case fs.Changed("url"):
			// mosquitto_sub -L mqtt://host/a -t b subscribes to both. A
			// URL from MQTK_URL or a profile gives a default topic only.
			opts.Topics = append([]string{conn.Topic}, opts.Topics...)
		}
		for _, q := range qos {
			n, err := strconv.Atoi(strings.TrimSpace(q))
			if err != nil || n < 0 || n > 2 {
				return clierr.Usagef("-q %q is not a QoS", q).Hintf("use 0, 1 or 2")
			}
			opts.QoS = append(opts.QoS, byte(n))
		}
		if opts.RetainHandling, err = parseRetainHandling(retainHandling); err != nil {
			return err
		}
		opts.SubscriptionID = subID
		// -D subscribe subscription-identifier is --subscription-id.
		if err := props.applySubscriptionID(&opts.SubscriptionID); err != nil {
			return err
		}
		if opts.Timeout, err = countAndTimeout(fs.Changed("count"), opts.Count, timeout); err != nil {
			return err
		}
		if idle != "" {
			if opts.Idle, err = parseSecondsFloat("idle", idle); err != nil {
				return err
			}
			if opts.Idle == 0 {
				return clierr.Usagef("--idle must be more than zero")
			}
		}
		if fs.Changed("match") {
			if match == "" {
				return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("--match is empty"),
					Hints: []string{"give re:REGEX or jq:EXPR", `for example --match 're:^ok$' or --match 'jq:.status == "ok"'`}}
			}
			if opts.Match, err = sub.CompileMatch(match); err != nil {
				return &clierr.Error{Kind: clierr.KindUsage, Err: err, Hints: matchHints(match)}
			}
		}
		if fs.Changed("format") {
			if format == "" {
				return clierr.Usagef("-F/--format is empty").Hintf("give a format such as '%%t %%p'")
			}
			if opts.Format, err = sub.CompileFormat(format); err != nil {
				return clierr.Usagef("-F: %v", err)
			}
		}
		if pretty && opts.Format != nil {
			opts.Format.Pretty = true
		}
		if quiet {
			a.io.Quiet = true
		}
		if err := applyRandomFilter(fs, opts, randomFilter); err != nil {
			return err
		}
		var rate *rateCounter
		if messageRate {
			if rate, err = applyMessageRate(fs, opts); err != nil {
				return err
			}
		}
		if err := opts.Validate(); err != nil {
			return err
		}
		if runF != nil {
			return runF(opts)
		}
		if rate != nil {
			stop := rate.start(a.io.Out)
			defer stop()
		}
		return sub.Run(cmd.Context(), opts)
	}
	return cmd
}

// parseRetainHandling reads --retain-handling: mosquitto 2.1's always,
// new and never, or the MQTT 5 values 0, 1 and 2 [MQTT-3.8.3.1].
func parseRetainHandling(s string) (byte, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "always", "0":
		return 0, nil
	case "new", "1":
		return 1, nil
	case "never", "2":
		return 2, nil
	}
	return 0, clierr.Usagef("unknown --retain-handling %q", s).Hintf("use always (0, send retained messages), new (1, only for a new subscription) or never (2)")
}

// matchHints say how to fix a --match expression that does not compile.
func matchHints(expr string) []string {
	switch {
	case strings.HasPrefix(expr, "re:"):
		return []string{`re: takes Go (RE2) syntax: escape ( ) [ ] { } . * + ? | with a backslash to match them literally, e.g. --match 're:\(ok\)'`,
			"quote the whole --match value in single quotes so that the shell leaves it alone"}
	case strings.HasPrefix(expr, "jq:"):
		return []string{`jq: takes one jq expression that yields true for a match, e.g. --match 'jq:.status == "ok"'`,
			"quote the whole --match value in single quotes so that the shell leaves it alone"}
	}
	return nil
}

// countValue is -C: a whole number, with a plain message when it is not
// one (pflag's own quotes strconv).
type countValue struct{ n *int }

func (c countValue) String() string {
	if c.n == nil || *c.n == 0 {
		return ""
	}
	return strconv.Itoa(*c.n)
}

func (c countValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		// A *clierr.Error so that flagError keeps the hint.
		return clierr.Usagef("not a whole number").Hintf("give a whole number of messages, such as -C 10")
	}
	*c.n = n
	return nil
}

func (countValue) Type() string { return "int" }

// wrapMessages makes opts.Dial hand every incoming message to filter
// first: filter calls next for the messages sub should see. Each redial
// is wrapped the same way.
func wrapMessages(opts *sub.Options, filter func(m *mqttconn.Message, next func(*mqttconn.Message))) {
	dial := opts.Dial
	opts.Dial = func(ctx context.Context, cfg mqttconn.Config) (mqttconn.Client, error) {
		if next := cfg.OnMessage; next != nil {
			cfg.OnMessage = func(m *mqttconn.Message) { filter(m, next) }
		}
		return dial(ctx, cfg)
	}
}

// applyRandomFilter is mosquitto_sub's --random-filter: only that percentage
// of the messages, chosen at random, is printed and counted for -C.
func applyRandomFilter(fs *pflag.FlagSet, opts *sub.Options, percent float64) error {
	if !fs.Changed("random-filter") {
		return nil
	}
	if percent < 0.1 || percent > 100 || math.IsNaN(percent) {
		return clierr.Usagef("--random-filter %g out of range", percent).Hintf("give a percentage from 0.1 to 100")
	}
	if opts.RemoveRetained {
		// mqtk clears what it shows; skipping some at random would leave
		// retained messages behind without a word.
		return clierr.Usagef("--random-filter with --remove-retained would clear only the messages it happens to pick").Hintf("drop one of them")
	}
	chance := percent / 100
	wrapMessages(opts, func(m *mqttconn.Message, next func(*mqttconn.Message)) {
		// --retained-only ends at the first message without the retain
		// flag (its sync message is one): those always get through.
		if (opts.RetainedOnly && !m.Retain) || rand.Float64() < chance {
			next(m)
		}
	})
	return nil
}

// rateCounter counts messages for --message-rate and prints the count of
// each second.
type rateCounter struct{ n atomic.Int64 }

// applyMessageRate is mosquitto_sub 2.1's --message-rate: the messages are
// counted, not printed. Options that shape printed messages do not apply.
func applyMessageRate(fs *pflag.FlagSet, opts *sub.Options) (*rateCounter, error) {
	for _, name := range []string{"verbose", "no-eol", "format", "output", "watch", "dump", "pretty", "count", "match", "retained-only", "remove-retained", "random-filter", "stats"} {
		if fs.Changed(name) {
			return nil, clierr.Usagef("--message-rate prints only how many messages arrive each second, so --%s does not apply", name).Hintf("drop one of them")
		}
	}
	rc := &rateCounter{}
	wrapMessages(opts, func(*mqttconn.Message, func(*mqttconn.Message)) { rc.n.Add(1) })
	return rc, nil
}

// start prints the count once a second on out until stop is called.
func (rc *rateCounter) start(out io.Writer) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(out, "%d\n", rc.n.Swap(0))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
