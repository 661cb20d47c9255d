package bench

import (
	"fmt"
	"strconv"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Merge combines the JSON reports of shards of one run (or of separate
// runs of the same shape) into one. Counts add up; histograms are merged
// bucket by bucket, so the merged percentiles are exact rather than
// averages of percentiles; throughput is recomputed as the total over
// (last end − first start), never a sum of rates.
//
// More than one report must be the shards of one run: each made with
// --shard I/N, the same N, distinct I, and the same load shape; anything
// else would be counted as if it were one run and misreport it.
func Merge(reps []*Report) (*Report, error) {
	if len(reps) == 0 {
		return nil, fmt.Errorf("nothing to merge")
	}
	if err := checkShards(reps); err != nil {
		return nil, err
	}
	first := reps[0]
	out := &Report{Schema: Schema, Mode: first.Mode, LoadModel: first.LoadModel, Env: first.Env, Config: first.Config,
		Started: first.Started, Ended: first.Ended}
	out.Env.Shard = ""
	out.Env.CPUUser, out.Env.CPUSys, out.Env.CPUPerMsgUS, out.Env.CPUPercent = 0, 0, 0, 0
	if w := missingShards(reps); w != "" {
		out.Warnings = append(out.Warnings, w)
	}
	var hists []Hists
	for i, r := range reps {
		if r.Started.Before(out.Started) {
			out.Started = r.Started
		}
		if r.Ended.After(out.Ended) {
			out.Ended = r.Ended
		}
		out.Shards += max(r.Shards, 1)
		out.Env.CPUUser += r.Env.CPUUser
		out.Env.CPUSys += r.Env.CPUSys
		if r.Env.BrokerURL != first.Env.BrokerURL {
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s measured %s, %s %s", r.label(i), r.Env.BrokerURL, first.label(0), first.Env.BrokerURL))
		}
		for _, w := range r.Warnings {
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s: %s", r.label(i), w))
		}
		mergeConnect(&out.Connect, r.Connect)
		if r.Publish != nil {
			if out.Publish == nil {
				out.Publish = &Publish{}
			}
			p, q := out.Publish, r.Publish
			p.Publishers += q.Publishers
			p.Sent += q.Sent
			p.Acked += q.Acked
			p.Failed += q.Failed
			p.Warmup += q.Warmup
			p.Total += q.Total
			p.Overruns += q.Overruns
			p.MaxLagMS = max(p.MaxLagMS, q.MaxLagMS)
			p.Offered = first.Config.Rate
		}
		if r.Receive != nil {
			if out.Receive == nil {
				out.Receive = &Receive{WallClock: r.Receive.WallClock}
			}
			d, q := out.Receive, r.Receive
			d.Subscribers += q.Subscribers
			d.Received += q.Received
			d.Measured += q.Measured
			d.Unique += q.Unique
			d.Lost += q.Lost
			d.Duplicated += q.Duplicated
			d.OutOfOrder += q.OutOfOrder
			d.Foreign += q.Foreign
			d.UniqueMeasured += q.UniqueMeasured
		}
		hists = append(hists, r.Hists)
		out.Intervals = mergeIntervals(out.Intervals, r.Intervals)
	}
	out.Measured = round3(out.Ended.Sub(out.Started).Seconds())
	secs := out.Measured
	if p := out.Publish; p != nil && secs > 0 {
		p.PerSecond = round3(float64(p.Sent) / secs)
		p.MBPerSecond = round3(float64(p.Sent) * float64(first.Config.Size) / secs / 1e6)
	}
	if d := out.Receive; d != nil {
		if out.Mode == ModePubSub && out.Publish != nil {
			// Every subscriber of every shard subscribes to every
			// publisher's topics, so each message sent in the measured
			// phase is due once per subscriber across the whole run.
			// Warm-up messages are left out: shards start at slightly
			// different times, and a late shard's subscribers miss the
			// others' warm-up by design.
			d.Expected = out.Publish.Sent * int64(d.Subscribers)
			d.Lost = max(d.Expected-d.UniqueMeasured, 0)
			if d.Expected > 0 {
				d.LossPct = float64(d.Lost) / float64(d.Expected) * 100
			}
			d.LossPct = round3(d.LossPct)
		} else if n := d.Unique + d.Lost; n > 0 {
			d.LossPct = round3(float64(d.Lost) / float64(n) * 100)
		}
		if secs > 0 {
			d.PerSecond = round3(float64(d.Measured) / secs)
			d.MBPerSecond = round3(float64(d.Measured) * float64(first.Config.Size) / secs / 1e6)
		}
	}
	for _, h := range hists {
		out.Hists.Connect = mergeInto(out.Hists.Connect, h.Connect)
		out.Hists.Ack = mergeInto(out.Hists.Ack, h.Ack)
		out.Hists.E2E = mergeInto(out.Hists.E2E, h.E2E)
		out.Hists.E2EUncorrected = mergeInto(out.Hists.E2EUncorrected, h.E2EUncorrected)
	}
	if out.Publish != nil && out.Publish.Total > 0 {
		out.Env.CPUPerMsgUS = round3((out.Env.CPUUser + out.Env.CPUSys) / float64(out.Publish.Total) * 1e6)
	}
	out.Env.CPUUser, out.Env.CPUSys = round3(out.Env.CPUUser), round3(out.Env.CPUSys)
	if out.Intervals == nil {
		out.Intervals = []Interval{}
	}
	out.summarize()
	return out, nil
}

// label names report i in messages: its file when known.
func (r *Report) label(i int) string {
	if r.Source != "" {
		return r.Source
	}
	return fmt.Sprintf("report %d", i+1)
}

// parseShard reads "I/N" as recorded in Env.Shard.
func parseShard(s string) (i, n int, ok bool) {
	a, b, found := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	return i, n, found && err1 == nil && err2 == nil && n > 1 && i >= 0 && i < n
}

// checkShards refuses reports that are not the shards of one run.
func checkShards(reps []*Report) error {
	for i, r := range reps {
		switch r.Mode {
		case ModePubSub, ModePub, ModeSub, ModeConn:
		default:
			return fmt.Errorf("%s: mode %q is not a bench mode: merge takes the output of 'mqtk bench --format json'", r.label(i), r.Mode)
		}
	}
	if len(reps) == 1 {
		return nil
	}
	first := reps[0]
	byIndex := map[int]int{}
	var n0 int
	for i, r := range reps {
		if r.Shards > 1 {
			return fmt.Errorf("%s is already merged from %d shards: merge the shard reports themselves", r.label(i), r.Shards)
		}
		si, n, ok := parseShard(r.Env.Shard)
		if !ok {
			return fmt.Errorf("%s is not a shard (it was not run with --shard I/N): merge combines the shards of one run, not separate runs", r.label(i))
		}
		if i == 0 {
			n0 = n
		} else if n != n0 {
			return fmt.Errorf("%s is shard %s, %s is shard %s: the shards of one run share N", r.label(i), r.Env.Shard, first.label(0), first.Env.Shard)
		}
		if j, dup := byIndex[si]; dup {
			return fmt.Errorf("%s and %s are both shard %s (the same file twice?)", reps[j].label(j), r.label(i), r.Env.Shard)
		}
		byIndex[si] = i
		if r.Mode != first.Mode {
			return fmt.Errorf("%s is bench %s, %s is bench %s: these are not shards of one run", r.label(i), r.Mode, first.label(0), first.Mode)
		}
		if r.LoadModel != first.LoadModel {
			return fmt.Errorf("%s is %s, %s is %s: these are not shards of one run", r.label(i), r.LoadModel, first.label(0), first.LoadModel)
		}
		a, b := first.Config, r.Config
		for _, f := range []struct {
			flag string
			x, y any
		}{
			{"-c/--clients", a.Clients, b.Clients},
			{"--subscribers", a.Subscribers, b.Subscribers},
			{"--rate", a.Rate, b.Rate},
			{"-t/--topic", a.Topic, b.Topic},
			{"--topics", a.Topics, b.Topics},
			{"-q/--qos", a.QoS, b.QoS},
			{"-s/--size", a.Size, b.Size},
			{"-n/--count", a.Count, b.Count},
			{"-d/--duration", a.Duration, b.Duration},
		} {
			if f.x != f.y {
				return fmt.Errorf("%s has %s %v, %s has %s %v: these are not shards of one run", r.label(i), f.flag, f.y, first.label(0), f.flag, f.x)
			}
		}
	}
	return nil
}

// missingShards warns when the shards given are not all N of them.
func missingShards(reps []*Report) string {
	_, n, ok := parseShard(reps[0].Env.Shard)
	if !ok || reps[0].Shards > 1 {
		return ""
	}
	have := map[int]bool{}
	for _, r := range reps {
		i, _, _ := parseShard(r.Env.Shard)
		have[i] = true
	}
	var miss []string
	for i := range n {
		if !have[i] {
			miss = append(miss, fmt.Sprintf("%d/%d", i, n))
		}
	}
	if len(miss) == 0 {
		return ""
	}
	return fmt.Sprintf("shard %s missing: this report covers only part of the run", strings.Join(miss, ", "))
}

func mergeInto(dst, src *hdrhistogram.Histogram) *hdrhistogram.Histogram {
	if src == nil {
		return dst
	}
	if dst == nil {
		dst = newHist()
	}
	dst.Merge(src)
	return dst
}

func mergeConnect(c *Connect, q Connect) {
	c.Attempted += q.Attempted
	c.OK += q.OK
	c.Failed += q.Failed
	if len(q.Failures) > 0 {
		if c.Failures == nil {
			c.Failures = map[string]int{}
		}
		for k, v := range q.Failures {
			c.Failures[k] += v
		}
	}
	// Shards ramp in parallel: the slowest ramp bounds the rate.
	c.RampS = max(c.RampS, q.RampS)
	if c.RampS > 0 {
		c.PerSecond = round3(float64(c.OK) / c.RampS)
	}
}

// mergeIntervals adds b's rows to a's by position: shards started together
// by one orchestrator line up interval by interval.
func mergeIntervals(a, b []Interval) []Interval {
	for i, iv := range b {
		if i >= len(a) {
			cp := iv
			cp.hist = mergeInto(newIvHist(), iv.hist)
			a = append(a, cp)
			continue
		}
		x := &a[i]
		x.T = max(x.T, iv.T)
		x.Sent += iv.Sent
		x.Acked += iv.Acked
		x.Received += iv.Received
		x.SentPS = round3(x.SentPS + iv.SentPS)
		x.RecvPS = round3(x.RecvPS + iv.RecvPS)
		if iv.hist != nil {
			if x.hist == nil {
				x.hist = newIvHist()
			}
			x.hist.Merge(iv.hist)
		}
		if x.hist != nil && x.hist.TotalCount() > 0 {
			x.P50 = ms(float64(x.hist.ValueAtQuantile(50)))
			x.P99 = ms(float64(x.hist.ValueAtQuantile(99)))
			x.Max = ms(float64(x.hist.Max()))
		}
	}
	return a
}
