package main

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/check"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

func newCheckCmd(a *app, runF func(*check.Options) error) *cobra.Command {
	opts := &check.Options{}
	var (
		timeout, format, compare string
		maxPayload               string
	)
	cmd := &cobra.Command{
		Use:   "check [flags]",
		Short: "Probe a broker: what it supports, what it refuses, how fast it answers",
		Long: `Connect to a broker and find out what it supports and what it refuses,
by asking and by trying:

  protocol   MQTT 3.1, 3.1.1 and 5: accepted or refused
  connack    what the MQTT 5 CONNACK advertises: Receive Maximum, Maximum
             QoS, Retain Available, Maximum Packet Size, Topic Alias Maximum,
             wildcard, shared and subscription-identifier support, Server
             Keep Alive, an assigned client id
  behaviour  measured: retained messages, wildcards, the largest payload
             accepted (a bisection up to --max-payload), whether the broker
             honours the client's Receive Maximum and enforces its own,
             shared subscriptions and how it spreads them, subscription
             identifiers, no-local, retain handling, wills and will delay,
             session resumption with queued QoS 1 and 2 messages, message
             expiry, topic aliases both ways, $SYS
  tls        for mqtts:// and wss://: the TLS versions accepted, the
             negotiated version and cipher suite, ALPN, the certificate
             chain and its names
  timing     CONNECT, SUBSCRIBE and a publish round trip (medians)

The behaviour probes speak MQTT 5 unless -V 311 or -V 31 is given (or the
broker has no MQTT 5); rows that need MQTT 5 then say n/a. Each probe
makes the clients it needs, with client ids, sessions and wills of its
own: -i, -I, -c, -x, -k and the --will flags do not apply. The probes
reach the broker as every mqtk command does: TCP, TLS, WebSocket (ws://,
wss://) or a unix socket, through --proxy when given; -d traces their
packets.

It is safe against a shared broker: every probe works under --prefix
(default mqtk-check/ plus random characters), removes the retained
messages it set and ends the sessions it opened. --timeout bounds the
whole run; probes not reached by then say "skipped".

--compare URL checks a second broker the same way (same credentials and
TLS files) and prints the two side by side, marking rows that differ.

-F json prints the report as one object (an array of two with --compare):
each row has an id, a group, a name, a verdict (yes, no, n/a, skipped,
error, or info for values), a value, a note and, where it has one, a
number.

--expect FILE is a gate for CI: a YAML or JSON file mapping row ids (see
-F json) to what they must say; mqtk check exits 7 when one is not met.
  protocol.5: yes                 a verdict (yes, no, n/a)
  connack.maximum_qos: 2          a number
  max_payload: ">= 65536"         a comparison (>=, <=, >, <)
  connack.assigned_client_id: no

Exit codes: 0 done (whatever the verdicts), 3/4/5 the broker could not be
reached or refused the connection, 7 an expectation was not met.`,
		Example: `  mqtk check -h test.mosquitto.org
  mqtk check -L mqtt://localhost:1883 -F json > broker.json
  mqtk check -L mqtts://broker.example:8883 --cafile ca.pem -u alice -P secret
  mqtk check -L mqtt://localhost:1883 --compare mqtt://localhost:1884
  mqtk check -L mqtt://localhost:1883 -V 311 --max-payload 10MiB
  printf 'protocol.5: yes\nretained: yes\nmax_payload: ">= 262144"\n' > need.yaml
  mqtk check -L mqtt://localhost:1883 --expect need.yaml && echo deploy`,
		Args: cobra.NoArgs,
	}
	cf := addConnFlags(cmd, a)
	fs := cmd.Flags()
	fs.StringVar(&opts.Prefix, "prefix", "", "topic prefix every probe works under (default mqtk-check/ plus random characters)")
	fs.StringVarP(&timeout, "timeout", "W", "30", "time limit for the whole run (seconds, or a duration: 45s, 2m)")
	fs.StringVar(&maxPayload, "max-payload", "1MiB", "largest payload the size probe tries (bytes, or with KiB, MiB)")
	fs.StringVarP(&format, "format", "F", "text", "report format: text or json")
	fs.StringVar(&compare, "compare", "", "check this second broker URL too and print both side by side")
	fs.StringVar(&opts.Expect, "expect", "", "YAML or JSON file of row id → expected verdict or value; exit 7 when one is not met")

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		conn, err := cf.config(cmd.Context())
		if err != nil {
			return err
		}
		opts.Conn = conn
		opts.IO = a.io
		opts.Dial = mqttconn.Dial
		opts.DialConn = mqttconn.DialConn
		if !fs.Changed("prefix") {
			opts.Prefix = check.DefaultPrefix()
		}
		if opts.Timeout, err = parseSecondsFloat("timeout", timeout); err != nil {
			return err
		}
		if opts.MaxPayload, err = parseCheckSize("max-payload", maxPayload); err != nil {
			return err
		}
		switch format {
		case "text":
		case "json":
			opts.JSON = true
		default:
			return clierr.Usagef("-F %q: the formats are text and json", format)
		}
		if compare != "" {
			// The second broker is reached as the first is, with the same
			// credentials and TLS files: only the address differs.
			c := conn
			c.URL, c.Scheme, c.Host, c.Port, c.SocketPath, c.Topic = compare, "", "", 0, "", ""
			c.TLS.Enabled = false
			if err := c.Resolve(); err != nil {
				return err
			}
			opts.Compare = &c
		}
		return validateAndRun(cmd.Context(), opts, runF, check.Run)
	}
	return cmd
}

// parseCheckSize reads a byte count: 65536, 64KiB, 1MiB, 64k, 1M.
func parseCheckSize(flag, s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		m      int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"k", 1 << 10}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.Atoi(t)
	// 256 MiB is MQTT's own limit on a packet [MQTT-2.2.3].
	if err != nil || n < 1 || n > packetLimit/mult {
		return 0, clierr.Usagef("--%s %q is not a size from 1 byte to 256MiB", flag, s).Hintf("give a size such as 65536, 64KiB or 1MiB")
	}
	return n * mult, nil
}

// packetLimit is the largest remaining length MQTT can express.
const packetLimit = 268435455
