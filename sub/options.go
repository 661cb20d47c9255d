// Package sub subscribes to topics and prints, records, waits for or
// watches what arrives: the library behind `mqtk sub`.
package sub

import (
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/topic"
	"github.com/mqtk/mqtk/internal/ui"
)

// Output modes for --output.
const (
	OutputAuto   = ""       // styled on a terminal, text otherwise
	OutputText   = "text"   // payload, or topic and payload with -v
	OutputJSON   = "json"   // the Record, indented
	OutputJSONL  = "jsonl"  // the lossless Record, one per line
	OutputHex    = "hex"    // payload as lower-case hex
	OutputBase64 = "base64" // payload as standard base64
	OutputRaw    = "raw"    // payload bytes exactly, nothing added
	OutputStyled = "styled" // the terminal view (chosen by auto on a TTY; forced by name)
)

// Options configure one Run. cmd/mqtk fills them from flags.
type Options struct {
	Conn mqttconn.Config
	// Dial connects; nil means mqttconn.Dial. Tests wrap it.
	Dial mqttconn.DialFunc
	IO   *ui.Streams

	// Selection.
	Topics            []string
	QoS               []byte // one for all topics, or one per topic
	FilterOut         []string
	NoRetained        bool
	RetainedOnly      bool
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubscriptionID    int
	Unsubscribe       []string
	ExitAfterSuback   bool
	RemoveRetained    bool
	DryRun            bool

	// Ending. Zero means not set.
	Count   int
	Timeout time.Duration
	Idle    time.Duration
	Match   *Matcher

	// Output.
	Verbose   bool
	NoEOL     bool
	Format    *Format
	Output    string
	DumpDir   string
	Watch     bool
	Stats     bool
	Reconnect bool // redial when the connection drops

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate checks combinations that flags alone cannot express.
func (o *Options) Validate() error {
	if len(o.Topics) == 0 && len(o.Unsubscribe) == 0 {
		return clierr.Usagef("no topic to subscribe to").Hintf("give at least one -t TOPIC (wildcards + and # allowed)")
	}
	if len(o.QoS) > 1 && len(o.QoS) != len(o.Topics) {
		return clierr.Usagef("%d -q values for %d topics", len(o.QoS), len(o.Topics)).Hintf("give one -q for all topics or one per -t, in the same order")
	}
	for _, q := range o.QoS {
		if q > 2 {
			return clierr.Usagef("-q %d out of range", q).Hintf("use 0, 1 or 2")
		}
	}
	// Checked here, not left to the broker: a typo is reported before
	// connecting, and a filter that is not UTF-8 never reaches a client
	// library that would hang on it.
	for _, f := range o.Topics {
		if err := topic.ValidateFilter(f); err != nil {
			return clierr.Usagef("%v", err)
		}
	}
	for _, f := range o.FilterOut {
		if err := topic.ValidateFilter(f); err != nil {
			return clierr.Usagef("-T/--filter-out: %v", err)
		}
	}
	for _, f := range o.Unsubscribe {
		if err := topic.ValidateFilter(f); err != nil {
			return clierr.Usagef("-U/--unsubscribe: %v", err)
		}
	}
	if o.RetainHandling > 2 {
		return clierr.Usagef("--retain-handling %d out of range", o.RetainHandling).Hintf("use 0 (send retained), 1 (only for new subscriptions) or 2 (never)")
	}
	if o.SubscriptionID < 0 || o.SubscriptionID > 268435455 {
		return clierr.Usagef("--subscription-id %d out of range 1..268435455", o.SubscriptionID)
	}
	// -V auto may keep MQTT 5; run checks these again once it knows.
	if o.Conn.Version != mqttconn.V5 && o.Conn.Version != mqttconn.VAuto {
		if name := o.v5Only(); name != "" {
			return clierr.Usagef("%s needs MQTT 5", name).Hintf("drop -V %s or the flag", versionName(o.Conn.Version))
		}
	}
	if o.NoRetained && o.RetainedOnly {
		return clierr.Usagef("-R/--no-retained and --retained-only exclude each other")
	}
	if o.DryRun && !o.RemoveRetained {
		return clierr.Usagef("--dry-run only applies to --remove-retained")
	}
	if o.Count < 0 {
		return clierr.Usagef("-C/--count must be positive, got %d", o.Count)
	}
	if o.Timeout < 0 || o.Idle < 0 {
		return clierr.Usagef("-W/--timeout and --idle must be positive durations")
	}
	if o.ExitAfterSuback {
		// -E ends the run before any message is read. -C and -W are
		// accepted, as mosquitto_sub accepts them: -W still bounds the
		// wait for SUBACK, and -C never applies.
		for _, f := range []struct {
			name string
			set  bool
		}{{"--match", o.Match != nil}, {"--retained-only", o.RetainedOnly}, {"--idle", o.Idle > 0}} {
			if f.set {
				return clierr.Usagef("-E exits as soon as the subscriptions are acknowledged, so %s never applies", f.name).Hintf("drop -E or %s", f.name)
			}
		}
	}
	if err := o.ValidateOutput(); err != nil {
		return err
	}
	if o.Watch && o.IO != nil && !o.IO.Out.IsTTY() {
		return clierr.Usagef("--watch needs a terminal on stdout").Hintf("use --stats for a report at exit when piping")
	}
	if o.Dial == nil {
		o.Dial = mqttconn.Dial
	}
	return nil
}

// v5Only names the first subscription option given that only MQTT 5 has,
// or returns "".
func (o *Options) v5Only() string {
	for _, f := range []struct {
		name string
		set  bool
	}{{"--no-local", o.NoLocal}, {"--retain-as-published", o.RetainAsPublished},
		{"--retain-handling", o.RetainHandling != 0}, {"--subscription-id", o.SubscriptionID != 0}} {
		if f.set {
			return f.name
		}
	}
	return ""
}

func versionName(v mqttconn.Version) string {
	switch v {
	case mqttconn.V311:
		return "311"
	case mqttconn.V31:
		return "31"
	case mqttconn.VAuto:
		return "auto"
	}
	return "5"
}

// ValidateOutput checks the output options alone (Output, Verbose, NoEOL,
// Format): what NewPrinter needs. Validate includes it.
func (o *Options) ValidateOutput() error {
	switch o.Output {
	case OutputAuto, OutputText, OutputJSON, OutputJSONL, OutputHex, OutputBase64, OutputRaw, OutputStyled:
	default:
		return clierr.Usagef("unknown --output %q", o.Output).Hintf("use text, json, jsonl, hex, base64, raw or styled")
	}
	switch o.Output {
	case OutputJSON, OutputJSONL, OutputRaw:
		// The record holds the topic, and raw adds nothing to the payload.
		if o.Verbose {
			return clierr.Usagef("-v has no effect with --output %s", o.Output).Hintf("drop -v (the topic is in json and jsonl records; use -F '%%t %%p' for text)")
		}
		if o.NoEOL && o.Output != OutputRaw {
			return clierr.Usagef("-N has no effect with --output %s: each record ends with a newline", o.Output).Hintf("drop -N")
		}
	}
	if o.Format != nil && o.Output != OutputAuto && o.Output != OutputText {
		return clierr.Usagef("-F/--format and --output %s exclude each other: -F is a text format", o.Output)
	}
	return nil
}
