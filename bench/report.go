package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Schema names the JSON document's layout; bump it when a field changes
// meaning so that merge refuses what it cannot combine.
const Schema = "mqtk-bench/1"

// Report is one run's result. It is what every renderer reads and what
// merge combines, so the text, JSON and CSV outputs can never disagree.
type Report struct {
	Schema    string     `json:"schema"`
	Mode      string     `json:"mode"`       // pubsub, pub, sub, conn
	LoadModel string     `json:"load_model"` // closed-loop, scheduled or none
	Env       Env        `json:"env"`
	Config    Config     `json:"config"`
	Started   time.Time  `json:"started"`    // wall clock, when measurement began
	Ended     time.Time  `json:"ended"`      // wall clock, last measured send or receipt
	Measured  float64    `json:"measured_s"` // Ended − Started, seconds
	Connect   Connect    `json:"connect"`
	Publish   *Publish   `json:"publish,omitempty"`
	Receive   *Receive   `json:"receive,omitempty"`
	Intervals []Interval `json:"intervals"`
	Warnings  []string   `json:"warnings,omitempty"`
	Shards    int        `json:"shards"` // how many runs this report combines

	// Histograms, kept whole so that merge is exact. Encoded in JSON with
	// HdrHistogram's V2 compressed base64 format.
	Hists Hists `json:"histograms"`

	// Source names where the report was read from (a file), for merge's
	// messages; not part of the document.
	Source string `json:"-"`
}

// Hists are the run's latency histograms in nanoseconds.
type Hists struct {
	Connect        *hdrhistogram.Histogram `json:"-"`
	Ack            *hdrhistogram.Histogram `json:"-"`
	E2E            *hdrhistogram.Histogram `json:"-"`
	E2EUncorrected *hdrhistogram.Histogram `json:"-"`
}

type encodedHists struct {
	Connect        string `json:"connect,omitempty"`
	Ack            string `json:"ack,omitempty"`
	E2E            string `json:"e2e,omitempty"`
	E2EUncorrected string `json:"e2e_uncorrected,omitempty"`
}

func encodeHist(h *hdrhistogram.Histogram) (string, error) {
	if h == nil || h.TotalCount() == 0 {
		return "", nil
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	return string(b), err
}

func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return nil, nil
	}
	return hdrhistogram.Decode([]byte(s))
}

// MarshalJSON encodes each histogram in HdrHistogram's portable format.
func (h Hists) MarshalJSON() ([]byte, error) {
	var e encodedHists
	var err error
	for _, p := range []struct {
		dst *string
		h   *hdrhistogram.Histogram
	}{{&e.Connect, h.Connect}, {&e.Ack, h.Ack}, {&e.E2E, h.E2E}, {&e.E2EUncorrected, h.E2EUncorrected}} {
		if *p.dst, err = encodeHist(p.h); err != nil {
			return nil, fmt.Errorf("encode histogram: %w", err)
		}
	}
	return json.Marshal(e)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (h *Hists) UnmarshalJSON(b []byte) error {
	var e encodedHists
	if err := json.Unmarshal(b, &e); err != nil {
		return err
	}
	var err error
	for _, p := range []struct {
		dst **hdrhistogram.Histogram
		s   string
	}{{&h.Connect, e.Connect}, {&h.Ack, e.Ack}, {&h.E2E, e.E2E}, {&h.E2EUncorrected, e.E2EUncorrected}} {
		if *p.dst, err = decodeHist(p.s); err != nil {
			return fmt.Errorf("decode histogram: %w", err)
		}
	}
	return nil
}

// Env records the conditions of the run: a figure without them is not
// worth comparing.
type Env struct {
	BrokerURL   string  `json:"broker_url"`
	Broker      string  `json:"broker"` // in-process or external
	GOMAXPROCS  int     `json:"gomaxprocs"`
	NumCPU      int     `json:"num_cpu"`
	GoVersion   string  `json:"go_version"`
	Version     string  `json:"mqtk_version"`
	Shard       string  `json:"shard,omitempty"` // I/N
	CPUUser     float64 `json:"cpu_user_s"`
	CPUSys      float64 `json:"cpu_sys_s"`
	CPUPerMsgUS float64 `json:"cpu_us_per_msg_sent,omitempty"`
	CPUPercent  float64 `json:"cpu_pct"` // of the CPUs the process could use
}

// Config echoes the load shape the run used.
type Config struct {
	Clients     int     `json:"clients"`
	Subscribers int     `json:"subscribers"`
	Topic       string  `json:"topic"`
	Topics      int     `json:"topics"`
	QoS         byte    `json:"qos"`
	Size        int     `json:"size"`
	Retain      bool    `json:"retain"`
	Rate        float64 `json:"rate"` // total messages/s; 0 closed loop
	// RatePerClient: --rate was given per publisher (Rate is still the total).
	RatePerClient bool     `json:"rate_per_client"`
	Inflight      int      `json:"inflight"`
	Count         int64    `json:"count"`
	Duration      string   `json:"duration"`
	Warmup        string   `json:"warmup"`
	ConnRate      float64  `json:"conn_rate"` // total across shards
	Interval      string   `json:"interval"`
	DrainTimeout  string   `json:"drain_timeout"`
	ProtocolVer   string   `json:"protocol_version"`
	MaxLossPct    *float64 `json:"max_loss_pct,omitempty"`
	MaxP99        string   `json:"max_p99,omitempty"`
}

// Connect summarises connection setup.
type Connect struct {
	Attempted int            `json:"attempted"`
	OK        int            `json:"ok"`
	Failed    int            `json:"failed"`
	Failures  map[string]int `json:"failures,omitempty"` // by reason
	PerSecond float64        `json:"per_s"`              // ok ÷ ramp time
	RampS     float64        `json:"ramp_s"`
	Latency   Summary        `json:"latency_ms"`
}

// Publish summarises the publishers.
type Publish struct {
	Publishers  int     `json:"publishers"` // in this process (or all merged shards)
	Sent        int64   `json:"sent"`       // measured phase, completed sends
	Acked       int64   `json:"acked"`      // QoS ≥ 1 only
	Failed      int64   `json:"failed"`
	Warmup      int64   `json:"warmup"` // sent during warm-up, excluded
	Total       int64   `json:"total"`  // everything sent, warm-up included
	PerSecond   float64 `json:"msgs_per_s"`
	MBPerSecond float64 `json:"mb_per_s"` // payload bytes, 10^6
	Offered     float64 `json:"offered_per_s"`
	Overruns    int64   `json:"overruns"`
	MaxLagMS    float64 `json:"max_lag_ms"`
	AckLatency  Summary `json:"ack_latency_ms"`
}

// Receive summarises the subscribers.
type Receive struct {
	Subscribers int `json:"subscribers"` // in this process (or all merged shards)
	Delivery
	Measured       int64   `json:"measured"` // received in the measured phase
	PerSecond      float64 `json:"msgs_per_s"`
	MBPerSecond    float64 `json:"mb_per_s"`
	WallClock      bool    `json:"wall_clock,omitempty"` // latency across processes: clock skew applies
	E2E            Summary `json:"e2e_latency_ms"`
	E2EUncorrected Summary `json:"e2e_uncorrected_ms"`
}

// Interval is one row of the per-interval time series.
type Interval struct {
	T        float64 `json:"t_s"` // seconds since measurement began, at the interval's end
	Sent     int64   `json:"sent"`
	Acked    int64   `json:"acked"`
	Received int64   `json:"received"`
	SentPS   float64 `json:"sent_per_s"`
	RecvPS   float64 `json:"received_per_s"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`

	// The interval's latency histogram (end-to-end, or publish-to-ack in
	// bench pub), kept so that merged intervals have exact percentiles.
	hist *hdrhistogram.Histogram
}

// intervalFields is Interval without its JSON methods, so that
// intervalJSON can embed its fields.
type intervalFields Interval

type intervalJSON struct {
	intervalFields
	Hist string `json:"hist,omitempty"`
}

// MarshalJSON adds the encoded interval histogram.
func (iv Interval) MarshalJSON() ([]byte, error) {
	h, err := encodeHist(iv.hist)
	if err != nil {
		return nil, err
	}
	return json.Marshal(intervalJSON{intervalFields(iv), h})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (iv *Interval) UnmarshalJSON(b []byte) error {
	var j intervalJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	h, err := decodeHist(j.Hist)
	if err != nil {
		return fmt.Errorf("decode interval histogram: %w", err)
	}
	*iv = Interval(j.intervalFields)
	iv.hist = h
	return nil
}

// summarize fills every Summary from the histograms.
func (r *Report) summarize() {
	r.Connect.Latency = Summarize(r.Hists.Connect)
	if r.Publish != nil {
		r.Publish.AckLatency = Summarize(r.Hists.Ack)
	}
	if r.Receive != nil {
		r.Receive.E2E = Summarize(r.Hists.E2E)
		r.Receive.E2EUncorrected = Summarize(r.Hists.E2EUncorrected)
	}
}

// P99 returns the p99 that --max-p99 is checked against: end-to-end when
// there is one, else publish-to-ack; in bench conn, connect latency.
func (r *Report) P99() (time.Duration, string, bool) {
	if r.Mode == ModeConn {
		if r.Connect.Latency.Count > 0 {
			return time.Duration(r.Connect.Latency.P99 * 1e6), "connect", true
		}
		return 0, "", false
	}
	if r.Receive != nil && r.Receive.E2E.Count > 0 {
		return time.Duration(r.Receive.E2E.P99 * 1e6), "end-to-end", true
	}
	if r.Publish != nil && r.Publish.AckLatency.Count > 0 {
		return time.Duration(r.Publish.AckLatency.P99 * 1e6), "publish-to-ack", true
	}
	return 0, "", false
}

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a document written by WriteJSON.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, err
	}
	if r.Schema != Schema {
		return nil, fmt.Errorf("schema %q, want %q (written by another mqtk version?)", r.Schema, Schema)
	}
	return &r, nil
}

// csvHeader names the CSV columns; they do not change between runs.
var csvHeader = []string{"t_s", "sent", "acked", "received", "sent_per_s", "received_per_s", "p50_ms", "p99_ms", "max_ms"}

// WriteCSV writes one row per interval.
func WriteCSV(w io.Writer, r *Report) error {
	var b strings.Builder
	b.WriteString(strings.Join(csvHeader, ",") + "\n")
	for _, iv := range r.Intervals {
		fmt.Fprintf(&b, "%s,%d,%d,%d,%s,%s,%s,%s,%s\n", num(iv.T), iv.Sent, iv.Acked, iv.Received,
			num(iv.SentPS), num(iv.RecvPS), num(iv.P50), num(iv.P99), num(iv.Max))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func num(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%.3f", f)
}

// WriteText writes the human report.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	c := r.Config
	switch r.Mode {
	case ModeConn:
		fmt.Fprintf(&b, "mqtk bench conn: %s", plural(c.Clients, "connection"))
	case ModeSub:
		fmt.Fprintf(&b, "mqtk bench sub: %s, QoS %d", plural(c.Subscribers, "subscriber"), c.QoS)
	default:
		fmt.Fprintf(&b, "mqtk bench %s: %s", r.Mode, r.LoadModel)
		if r.LoadModel == "scheduled" {
			fmt.Fprintf(&b, " at %s msg/s", fmtRate(c.Rate))
		} else {
			fmt.Fprintf(&b, ", %d in flight per client", c.Inflight)
		}
		fmt.Fprintf(&b, ", %s", plural(c.Clients, "publisher"))
		if r.Mode == ModePubSub {
			fmt.Fprintf(&b, ", %s", plural(c.Subscribers, "subscriber"))
		}
		fmt.Fprintf(&b, ", QoS %d, %d B", c.QoS, c.Size)
	}
	if r.Shards > 1 {
		fmt.Fprintf(&b, ", %d shards merged", r.Shards)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "broker   %s (%s, MQTT %s)\n", r.Env.BrokerURL, r.Env.Broker, c.ProtocolVer)
	fmt.Fprintf(&b, "host     %d CPUs, GOMAXPROCS %d, %s, mqtk %s\n", r.Env.NumCPU, r.Env.GOMAXPROCS, r.Env.GoVersion, r.Env.Version)
	fmt.Fprintf(&b, "cpu      %.2fs user + %.2fs sys in this process (%.0f%% of %d CPUs)", r.Env.CPUUser, r.Env.CPUSys, r.Env.CPUPercent, r.Env.GOMAXPROCS)
	if r.Env.CPUPerMsgUS > 0 {
		fmt.Fprintf(&b, ", %.2f µs per message sent", r.Env.CPUPerMsgUS)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "measured %.2fs (warm-up %s excluded)\n\n", r.Measured, c.Warmup)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	cn := r.Connect
	fmt.Fprintf(tw, "connect\t%s/%s ok\t%s failed\t%s/s over %.2fs\n", fmtCount(int64(cn.OK)), fmtCount(int64(cn.Attempted)), fmtCount(int64(cn.Failed)), fmtRate(cn.PerSecond), cn.RampS)
	if len(cn.Failures) > 0 {
		var fs []string
		for _, k := range sortedKeys(cn.Failures) {
			fs = append(fs, fmt.Sprintf("%s %d", k, cn.Failures[k]))
		}
		fmt.Fprintf(tw, "\tfailures: %s\t\t\n", strings.Join(fs, ", "))
	}
	if p := r.Publish; p != nil {
		fmt.Fprintf(tw, "publish\t%s sent\t%s msg/s\t%.2f MB/s\n", fmtCount(p.Sent), fmtRate(p.PerSecond), p.MBPerSecond)
		if c.QoS > 0 {
			fmt.Fprintf(tw, "\t%s acked\t%s failed\t\n", fmtCount(p.Acked), fmtCount(p.Failed))
		} else if p.Failed > 0 {
			fmt.Fprintf(tw, "\t%s failed\t\t\n", fmtCount(p.Failed))
		}
		if r.LoadModel == "scheduled" {
			fmt.Fprintf(tw, "\t%s overruns\tmax lag %.3f ms\toffered %s msg/s\n", fmtCount(p.Overruns), p.MaxLagMS, fmtRate(p.Offered))
		}
	}
	if rc := r.Receive; rc != nil {
		fmt.Fprintf(tw, "receive\t%s received\t%s msg/s\t%.2f MB/s\n", fmtCount(rc.Measured), fmtRate(rc.PerSecond), rc.MBPerSecond)
		exp := "unknown"
		if rc.Expected > 0 {
			exp = fmtCount(rc.Expected)
		}
		// Rates cover the measured window only, but a message lost during
		// warm-up is still lost: say why these counts exceed "received".
		whole := ""
		if c.Warmup != "" && c.Warmup != "0s" {
			whole = " (whole run, warm-up included)"
		}
		fmt.Fprintf(tw, "delivery\t%s of %s expected\t%s lost (%.3f%%)\t%s duplicated, %s out of order%s\n",
			fmtCount(rc.Unique), exp, fmtCount(rc.Lost), rc.LossPct, fmtCount(rc.Duplicated), fmtCount(rc.OutOfOrder), whole)
	}
	tw.Flush()

	b.WriteString("\nlatency (ms)         count       min      mean    stddev       p50       p90       p99     p99.9       max\n")
	row := func(name string, s Summary) {
		if s.Count == 0 {
			fmt.Fprintf(&b, "%-16s %9s\n", name, "n/a")
			return
		}
		fmt.Fprintf(&b, "%-16s %9d %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, s.Count, s.Min, s.Mean, s.StdDev, s.P50, s.P90, s.P99, s.P999, s.Max)
	}
	row("connect", cn.Latency)
	if r.Publish != nil {
		if c.QoS == 0 {
			fmt.Fprintf(&b, "%-16s %9s\n", "publish→ack", "n/a (QoS 0 has no acknowledgement)")
		} else {
			row("publish→ack", r.Publish.AckLatency)
		}
	}
	if r.Receive != nil {
		row("end-to-end", r.Receive.E2E)
		if r.LoadModel == "scheduled" {
			row("  uncorrected", r.Receive.E2EUncorrected)
		}
	}
	if h, name := r.distHist(); h != nil {
		fmt.Fprintf(&b, "\n%s latency distribution\n", name)
		writeDistribution(&b, h)
	}
	if len(r.Warnings) > 0 {
		b.WriteString("\n")
		for _, wr := range r.Warnings {
			fmt.Fprintf(&b, "warning: %s\n", wr)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) distHist() (*hdrhistogram.Histogram, string) {
	if r.Hists.E2E != nil && r.Hists.E2E.TotalCount() > 0 {
		return r.Hists.E2E, "end-to-end"
	}
	if r.Hists.Ack != nil && r.Hists.Ack.TotalCount() > 0 {
		return r.Hists.Ack, "publish→ack"
	}
	if r.Hists.Connect != nil && r.Hists.Connect.TotalCount() > 0 {
		return r.Hists.Connect, "connect"
	}
	return nil, ""
}

// writeDistribution draws the histogram as bars over logarithmic buckets
// (powers of two in µs) between its min and max, so that a long tail is
// visible next to a tight body.
func writeDistribution(b *strings.Builder, h *hdrhistogram.Histogram) {
	const width = 50
	lo := int64(1)
	for lo*2*1000 <= h.Min() {
		lo *= 2
	}
	type bucket struct {
		from, to int64 // µs
		n        int64
	}
	var bs []bucket
	for from := lo; from*1000 <= h.Max(); from *= 2 {
		bs = append(bs, bucket{from: from, to: from * 2})
	}
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		v := bar.From / 1000
		for i := range bs {
			if v < bs[i].to || i == len(bs)-1 {
				bs[i].n += bar.Count
				break
			}
		}
	}
	var top int64
	for _, bk := range bs {
		top = max(top, bk.n)
	}
	total := h.TotalCount()
	for _, bk := range bs {
		n := 0
		if top > 0 {
			n = int(math.Ceil(float64(bk.n) / float64(top) * width))
		}
		fmt.Fprintf(b, "%9s – %-9s %6.2f%% %s\n", fmtUS(bk.from), fmtUS(bk.to), float64(bk.n)/float64(total)*100, strings.Repeat("█", n))
	}
}

func fmtUS(us int64) string {
	switch {
	case us >= 1_000_000:
		return fmt.Sprintf("%gs", float64(us)/1e6)
	case us >= 1000:
		return fmt.Sprintf("%gms", float64(us)/1e3)
	}
	return fmt.Sprintf("%dµs", us)
}

func fmtRate(f float64) string {
	return fmtCount(int64(math.Round(f)))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmtCount(int64(n)) + " " + word + "s"
}
