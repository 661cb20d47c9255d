// Package check probes what an MQTT broker supports and what it refuses:
// protocol versions, what its CONNACK advertises, and what it does when
// asked (largest payload, flow control, retained messages, wildcards,
// shared subscriptions, wills, sessions, expiry, topic aliases, $SYS, TLS),
// with timings. Every probe works under a topic prefix of its own and
// removes what it set (retained messages, sessions), so it is safe to run
// against a broker others use.
package check

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/ui"
)

// Verdicts a row can carry.
const (
	Yes     = "yes"     // supported, or behaves as MQTT says
	No      = "no"      // not supported, refused, or misbehaves
	Info    = "info"    // a value, not a judgement (limits, timings)
	NA      = "n/a"     // does not apply (needs MQTT 5, needs TLS, ...)
	Skipped = "skipped" // the time limit ended the run first
	Failed  = "error"   // the probe itself failed; Note says why
)

// DefaultMaxPayload is the largest payload the size probe tries unless
// told otherwise: larger than most deployments allow, small enough to
// send in a moment.
const DefaultMaxPayload = 1 << 20

// Options configure one run of mqtk check.
type Options struct {
	// Conn is the broker to check, resolved. Conn.Version is the version
	// the behaviour probes speak (5 or 3.1.1); every version is tried
	// for the protocol rows.
	Conn mqttconn.Config
	// Compare, when set, is a second broker checked the same way and
	// printed beside the first.
	Compare *mqttconn.Config

	// Prefix is the topic prefix every probe works under.
	Prefix string
	// Timeout bounds the whole run; probes not reached are "skipped".
	Timeout time.Duration
	// MaxPayload bounds the payload size search.
	MaxPayload int
	// JSON prints the report as JSON instead of a table.
	JSON bool
	// Expect is a file of expectations (YAML or JSON, row id → value):
	// Run fails with KindUnmet when a broker does not meet them.
	Expect string

	IO *ui.Streams

	// Dial opens the first connection through the shared layer, so that
	// a broker out of reach fails as every mqtk command fails (exit 3, 4
	// or 5, with its hints). Nil means mqttconn.Dial.
	Dial func(context.Context, mqttconn.Config) (mqttconn.Client, error)
	// DialConn opens the byte stream the raw probes speak over, with
	// nothing sent. Nil means mqttconn.DialConn: every transport and
	// --proxy, as the other commands reach a broker.
	DialConn func(context.Context, mqttconn.Config) (net.Conn, error)
}

// Report is what a check found out about one broker.
type Report struct {
	Broker  string `json:"broker"`
	Version string `json:"protocol_version"` // of the behaviour probes
	Rows    []Row  `json:"rows"`
}

// Row is one line of the report.
type Row struct {
	ID      string `json:"id"` // stable key for --expect and JSON readers
	Group   string `json:"group"`
	Name    string `json:"name"`
	Verdict string `json:"verdict"`
	Value   string `json:"value,omitempty"`
	// Number is the row's value as a number where it has one (limits,
	// sizes, milliseconds), for --expect comparisons.
	Number *float64 `json:"number,omitempty"`
	Note   string   `json:"note,omitempty"`
	// Volatile marks values that change from run to run (timings,
	// assigned ids): golden tests mask them. VolatileNote marks the
	// note alone (a measured delay beside a stable verdict).
	Volatile     bool `json:"-"`
	VolatileNote bool `json:"-"`
}

// Mask replaces every volatile value with a placeholder, so that two
// reports of one configuration compare equal.
func (r *Report) Mask() {
	for i := range r.Rows {
		if r.Rows[i].Volatile {
			r.Rows[i].Value = "<varies>"
			r.Rows[i].Number = nil
			r.Rows[i].Note = ""
		}
		if r.Rows[i].VolatileNote {
			r.Rows[i].Note = "<varies>"
		}
	}
}

// Row returns the row with id, or nil.
func (r *Report) Row(id string) *Row {
	for i := range r.Rows {
		if r.Rows[i].ID == id {
			return &r.Rows[i]
		}
	}
	return nil
}

// Validate checks the options a caller can get wrong.
func (o *Options) Validate() error {
	if o.Prefix == "" {
		return clierr.Usagef("--prefix is empty").Hintf("give a topic prefix the probes may use, such as mqtk-check/me")
	}
	for _, c := range o.Prefix {
		if c == '+' || c == '#' {
			return clierr.Usagef("--prefix %q holds a wildcard", o.Prefix).Hintf("give a topic name")
		}
	}
	if o.MaxPayload < 1 {
		return clierr.Usagef("--max-payload must be at least 1 byte")
	}
	if o.Timeout <= 0 {
		return clierr.Usagef("--timeout must be more than zero")
	}
	return nil
}

// DefaultPrefix returns mqtk-check/ and a random suffix: two runs at once
// do not see each other's messages.
func DefaultPrefix() string {
	return "mqtk-check/" + randomHex(4)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// Run checks the broker (and Compare), prints the report and applies the
// expectations.
func Run(ctx context.Context, o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	var exp expectations
	if o.Expect != "" {
		var err error
		if exp, err = loadExpectations(o.Expect); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cfgs := []mqttconn.Config{o.Conn}
	if o.Compare != nil {
		cfgs = append(cfgs, *o.Compare)
	}
	var reports []*Report
	for i, cfg := range cfgs {
		prefix := o.Prefix
		if i > 0 {
			prefix += "/b"
		}
		r, err := Probe(ctx, o, cfg, prefix)
		if err != nil {
			return err
		}
		reports = append(reports, r)
	}
	if err := render(o, reports); err != nil {
		return err
	}
	if exp != nil {
		return exp.check(o.IO, reports)
	}
	return nil
}

// Probe checks one broker and returns its report. It returns an error
// only when the broker cannot be reached at all.
func Probe(ctx context.Context, o *Options, cfg mqttconn.Config, prefix string) (*Report, error) {
	if cfg.Scheme == "" {
		if err := cfg.Resolve(); err != nil {
			return nil, err
		}
	}
	dial := o.Dial
	if dial == nil {
		dial = mqttconn.Dial
	}
	// The first connection goes through the shared layer: an unreachable
	// broker, a TLS problem or refused credentials fail as they do for
	// every command, with their diagnosis.
	first := cfg
	if first.Version == mqttconn.V5 {
		first.Version = mqttconn.VAuto
	}
	first.Will, first.NoClean, first.SessionExpiry = nil, false, nil
	c, err := dial(ctx, first)
	if err != nil {
		return nil, err
	}
	version := c.Info().Version
	_ = c.Disconnect(ctx)

	p := newProber(o, cfg, prefix, version)
	p.run(ctx)
	return &Report{Broker: cfg.String(), Version: p.v.String(), Rows: p.rows}, nil
}

// errorNote is a probe failure as a row note.
func errorNote(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "the time limit (--timeout) ran out"
	case errors.Is(err, errQuiet):
		return "no answer in time"
	}
	return err.Error()
}
