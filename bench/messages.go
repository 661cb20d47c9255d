package bench

// The message modes (pubsub, pub, sub) from connect to report: clients
// connected and subscribed before the first publish, publishers started
// with their share of the count and rate, the wait for deliveries, the
// per-interval snapshots, and the statistics merged into the Report. The
// clients themselves are in clients.go.

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// runMessages runs pubsub, pub and sub.
func (r *runner) runMessages(ctx context.Context, rep *Report) error {
	o := r.o
	var subRes, pubRes []connResult
	defer func() { disconnectAll(pubRes); disconnectAll(subRes) }()

	// Subscribers first, all subscribed before the first publish, so that
	// the expected count (sent × subscribers) holds from message 0.
	nSubs := 0
	if o.Mode != ModePub {
		nSubs = o.Subscribers
	}
	slo, shi := 0, nSubs
	if o.Shards > 1 {
		// --subscribers is the total across shards, like -c.
		slo, shi = shardRange(nSubs, o.Shard, o.Shards)
	}
	var cfgs []mqttconn.Config
	for i := slo; i < shi; i++ {
		s := &subscriber{r: r, trackers: map[uint32]*seqTracker{}}
		r.subs = append(r.subs, s)
		c := r.cfg
		c.ClientID, c.IDPrefix, c.OnMessage = r.idBase+"s"+fmt.Sprint(i), "", s.onMessage
		cfgs = append(cfgs, c)
	}
	subRes, ramp := r.connectAll(ctx, cfgs)
	var pcfgs []mqttconn.Config
	var plo int
	if o.Mode != ModeSub {
		lo, hi := shardRange(o.Clients, o.Shard, o.Shards)
		plo = lo
		for i := lo; i < hi; i++ {
			c := r.cfg
			c.ClientID, c.IDPrefix = r.idBase+"p"+fmt.Sprint(i), ""
			// A closed-loop publisher writes faster than one system call
			// per packet allows; coalescing cuts bench's own CPU per QoS 0
			// message (BENCHMARKS.md, "Re-measured after write coalescing"), so that the
			// broker, not bench, is the limit. Scheduled runs measure
			// latency: there each message goes out on its own, since the
			// burstier arrival changes a broker's tail (mosquitto without
			// TCP_NODELAY stalls).
			c.CoalesceWrites = o.Rate == 0
			pcfgs = append(pcfgs, c)
		}
	}
	var pramp time.Duration
	if err := firstErr(subRes); err == nil {
		pubRes, pramp = r.connectAll(ctx, pcfgs)
	}
	recordConnects(rep, append(append([]connResult{}, subRes...), pubRes...), ramp+pramp)
	if err := firstErr(subRes); err != nil {
		return err
	}
	if err := firstErr(pubRes); err != nil {
		return err
	}
	filter := filterFor(o.Topic)
	for i, s := range r.subs {
		s.c = subRes[i].c
		// RetainHandling 2: retained messages left by an earlier run are
		// not part of this one. [MQTT-3.3.1-11]
		codes, err := s.c.Subscribe(ctx, []mqttconn.Subscription{{Filter: filter, QoS: o.QoS, RetainHandling: 2}})
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", filter, err)
		}
		if len(codes) != 1 || codes[0] >= 0x80 {
			code := byte(0x80)
			if len(codes) == 1 {
				code = codes[0]
			}
			return &clierr.Error{Kind: clierr.KindRejected, Op: "subscribe to " + filter, Reason: code, Err: fmt.Errorf("%s", mqttconn.ReasonName(code))}
		}
		if codes[0] < o.QoS {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the broker granted QoS %d, not %d, to subscriber %d", codes[0], o.QoS, i))
		}
	}

	// Publishers: split the count and the rate, stagger scheduled starts
	// across one interval so that they do not all fire at once.
	if o.OnReady != nil {
		o.OnReady()
	}
	perRate := o.Rate
	if !o.RatePerClient && o.Clients > 0 {
		perRate = o.Rate / float64(o.Clients)
	}
	pubStart := r.since()
	r.measureStart = pubStart + o.Warmup
	if o.Duration > 0 {
		r.end = r.measureStart + o.Duration // with -n too: whichever comes first
	}
	for k, x := range pubRes {
		idx := plo + k
		p := &publisher{r: r, c: x.c, id: uint32(idx)}
		id := r.idBase + "p" + fmt.Sprint(idx)
		for t := range o.Topics {
			p.topics = append(p.topics, expandTopic(o.Topic, idx, id, t))
			if o.Topics == 1 {
				break
			}
		}
		if o.Count > 0 {
			total := uint64(o.Count)
			c := uint64(o.Clients)
			p.count = total / c
			if uint64(idx) < total%c {
				p.count++
			}
		}
		if perRate > 0 {
			iv := time.Duration(float64(time.Second) / perRate)
			p.sched = schedule{start: pubStart + iv*time.Duration(idx)/time.Duration(o.Clients), interval: iv}
		}
		r.pubs = append(r.pubs, p)
	}

	stopIv := r.intervals(ctx, rep)
	switch o.Mode {
	case ModeSub:
		r.waitSub(ctx)
	default:
		var wg sync.WaitGroup
		for _, p := range r.pubs {
			wg.Add(1)
			go func() { defer wg.Done(); p.run(ctx) }()
		}
		wg.Wait()
		// Drain even after Ctrl-C: messages already sent are still due,
		// and the drain is bounded by --drain-timeout.
		r.drain(context.WithoutCancel(ctx))
	}
	stopIv()
	if o.Retain {
		r.clearRetained()
	}
	r.collect(rep)
	for _, p := range r.pubs {
		if p.err != nil && clierr.KindOf(p.err) == clierr.KindRejected {
			return fmt.Errorf("publish: %w", p.err)
		}
	}
	return ctx.Err()
}

// waitSub receives until --count measured messages or the end time.
func (r *runner) waitSub(ctx context.Context) {
	o := r.o
	var deadline <-chan time.Time
	if o.Duration > 0 {
		deadline = time.After(r.measureStart + o.Duration - r.since())
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for nextTick(ctx, deadline, tick) {
		if o.Count > 0 {
			var n int64
			for _, s := range r.subs {
				n += s.measured.Load()
			}
			if n >= o.Count {
				return
			}
		}
	}
}

// nextTick waits for tick's next tick and reports false instead when ctx
// ends or deadline (nil: none) comes first.
func nextTick(ctx context.Context, deadline <-chan time.Time, tick *time.Ticker) bool {
	select {
	case <-ctx.Done():
		return false
	case <-deadline:
		return false
	case <-tick.C:
		return true
	}
}

// drain waits for every expected delivery, up to --drain-timeout, and
// gives up early once nothing has arrived for a fifth of it (1 s at the
// default 5 s): whatever is still missing then was dropped, not delayed.
// A longer --drain-timeout thus also tolerates longer pauses.
func (r *runner) drain(ctx context.Context) {
	if len(r.subs) == 0 {
		return
	}
	var sent int64
	for _, p := range r.pubs {
		sent += p.total.Load()
	}
	want := sent * int64(len(r.subs))
	if r.o.Shards > 1 {
		// Other shards' messages are due too, and only they know how
		// many: wait until deliveries stop instead.
		want = math.MaxInt64
	}
	deadline := time.After(r.o.DrainTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var prev int64 = -1
	lastChange := time.Now()
	for {
		var got int64
		for _, s := range r.subs {
			got += s.received.Load()
		}
		if got >= want {
			return
		}
		if got != prev {
			prev, lastChange = got, time.Now()
		} else if time.Since(lastChange) > r.o.DrainTimeout/5 {
			return
		}
		if !nextTick(ctx, deadline, tick) {
			return
		}
	}
}

// intervals snapshots counters and interval histograms once per interval
// from the start of the measured phase, for the CSV rows and the live
// progress line.
func (r *runner) intervals(ctx context.Context, rep *Report) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var prevSent, prevAcked, prevRecv int64
	var last time.Duration
	snap := func(now time.Duration) Interval {
		var sent, acked, recv int64
		h := newIvHist()
		for _, p := range r.pubs {
			sent += p.sent.Load()
			acked += p.acked.Load()
			p.mu.Lock()
			mergeNonNil(h, p.iv)
			p.iv = nil
			p.mu.Unlock()
		}
		for _, s := range r.subs {
			recv += s.measured.Load()
			s.mu.Lock()
			mergeNonNil(h, s.iv)
			s.iv = nil
			s.mu.Unlock()
		}
		dt := (now - last).Seconds()
		iv := Interval{T: round3((now - r.measureStart).Seconds()), Sent: sent - prevSent, Acked: acked - prevAcked, Received: recv - prevRecv, hist: h}
		if dt > 0 {
			iv.SentPS = round3(float64(iv.Sent) / dt)
			iv.RecvPS = round3(float64(iv.Received) / dt)
		}
		if h.TotalCount() > 0 {
			iv.P50 = ms(float64(h.ValueAtQuantile(50)))
			iv.P99 = ms(float64(h.ValueAtQuantile(99)))
			iv.Max = ms(float64(h.Max()))
		}
		prevSent, prevAcked, prevRecv, last = sent, acked, recv, now
		return iv
	}
	st := r.o.IO.Err.Style().Faint(true)
	progress := func(iv Interval, lost int64) {
		if !r.o.Progress {
			return
		}
		line := fmt.Sprintf("%4.0fs sent=%s (%s/s) recv=%s (%s/s) p99=%.3fms lost=%s",
			iv.T, fmtCount(prevSent), fmtRate(iv.SentPS), fmtCount(prevRecv), fmtRate(iv.RecvPS), iv.P99, fmtCount(lost))
		fmt.Fprintf(r.o.IO.Err, "\r\033[K%s", st.Render("mqtk: "+line))
	}
	lost := func() int64 {
		var n int64
		for _, s := range r.subs {
			s.mu.Lock()
			for _, t := range s.trackers {
				n += t.gaps()
			}
			s.mu.Unlock()
		}
		return n
	}
	go func() {
		defer wg.Done()
		// Wait out the warm-up, showing that it is one.
		if d := r.measureStart - r.since(); d > 0 {
			if r.o.Progress {
				fmt.Fprintf(r.o.IO.Err, "\r\033[K%s", st.Render(fmt.Sprintf("mqtk: warming up for %s", r.o.Warmup)))
			}
			select {
			case <-time.After(d):
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
		last = r.measureStart
		t := time.NewTicker(r.o.Interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				iv := snap(r.since())
				rep.Intervals = append(rep.Intervals, iv)
				progress(iv, lost())
			case <-done:
				if now := r.since(); now > r.measureStart {
					if iv := snap(now); iv.Sent+iv.Acked+iv.Received > 0 {
						rep.Intervals = append(rep.Intervals, iv)
					}
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		if r.o.Progress {
			fmt.Fprint(r.o.IO.Err, "\r\033[K")
		}
	}
}

// collect merges every goroutine's statistics into rep.
func (r *runner) collect(rep *Report) {
	o := r.o
	if rep.Intervals == nil {
		rep.Intervals = []Interval{}
	}
	var end time.Duration
	start := r.measureStart // the publishers' first measured send
	if o.Mode != ModeSub {
		pb := &Publish{Publishers: len(r.pubs)}
		ack := newHist()
		for _, p := range r.pubs {
			p.mu.Lock()
			pb.Sent += p.sent.Load()
			pb.Acked += p.acked.Load()
			pb.Failed += p.failed.Load()
			pb.Total += p.total.Load()
			pb.Warmup += p.warm
			pb.Overruns += p.overruns
			pb.MaxLagMS = max(pb.MaxLagMS, ms(float64(p.maxLag)))
			end = max(end, p.lastEnd)
			mergeNonNil(ack, p.ack)
			p.mu.Unlock()
		}
		if o.QoS == 0 {
			pb.Acked = 0
		}
		if d := (end - r.measureStart).Seconds(); d > 0 {
			pb.PerSecond = round3(float64(pb.Sent) / d)
			pb.MBPerSecond = round3(float64(pb.Sent) * float64(o.Size) / d / 1e6)
		}
		pb.Offered = rep.Config.Rate
		rep.Publish = pb
		rep.Hists.Ack = ack
	}
	if o.Mode != ModePub {
		rc := &Receive{WallClock: r.wall, Subscribers: len(r.subs)}
		e2e, unc := newHist(), newHist()
		var gaps, bytes int64
		var rstart, rend time.Duration
		anyRecv := false
		skewed, noLat := false, false
		for _, s := range r.subs {
			s.mu.Lock()
			rc.Received += s.received.Load()
			rc.Measured += s.measured.Load()
			rc.Foreign += s.foreign
			rc.UniqueMeasured += s.uniqueMeasured
			for _, t := range s.trackers {
				rc.Unique += t.unique
				rc.Duplicated += t.dups
				rc.OutOfOrder += t.reorder
				gaps += t.gaps()
			}
			bytes += s.bytes
			rend = max(rend, s.lastRecv)
			if s.any && (!anyRecv || s.firstRecv < rstart) {
				rstart, anyRecv = s.firstRecv, true
			}
			skewed = skewed || s.skewed
			noLat = noLat || s.noLatency
			mergeNonNil(e2e, s.e2e)
			mergeNonNil(unc, s.unc)
			s.mu.Unlock()
		}
		if o.Mode == ModePubSub && o.Shards == 1 && rep.Publish != nil {
			rc.Expected = rep.Publish.Total * int64(len(r.subs))
		}
		rc.finish(gaps)
		rc.LossPct = round3(rc.LossPct)
		if o.Mode == ModeSub && anyRecv {
			// bench sub does not know when the publisher started: its
			// window runs from the first measured arrival, not from when
			// it began to listen, or the wait for the publisher would
			// dilute the rate.
			start = rstart
		}
		if d := (rend - start).Seconds(); d > 0 {
			rc.PerSecond = round3(float64(rc.Measured) / d)
			rc.MBPerSecond = round3(float64(bytes) / d / 1e6)
		}
		end = max(end, rend)
		rep.Receive = rc
		rep.Hists.E2E, rep.Hists.E2EUncorrected = e2e, unc
		if skewed {
			rep.Warnings = append(rep.Warnings, "some messages arrived before they were sent by this host's clock: the publishing host's clock differs, so end-to-end latency is off by the skew")
		} else if r.wall && e2e.TotalCount() > 0 {
			rep.Warnings = append(rep.Warnings, "end-to-end latency compares the publisher's wall clock with this host's: any clock skew between the hosts is included")
		}
		if noLat {
			rep.Warnings = append(rep.Warnings, "some messages carried run-relative timestamps from another process (bench pubsub); they were counted but not timed")
		}
		if rc.Foreign > 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d messages on the topic had no bench header (another publisher?) and were ignored", rc.Foreign))
		}
	}
	if end < start {
		end = start
	}
	rep.Started = r.t0.Add(start)
	rep.Ended = r.t0.Add(end)
	rep.Measured = round3((end - start).Seconds())
	if rep.Publish != nil && rep.Publish.Sent == 0 && rep.Publish.Warmup > 0 {
		rep.Warnings = append(rep.Warnings, "every message was sent during the warm-up: lower --warmup or raise -n/-d")
	}
}

// clearRetained deletes the retained messages a -r run left on its topics
// (an empty retained payload), so that the broker is left as it was found.
func (r *runner) clearRetained() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range r.pubs {
		for _, t := range p.topics {
			_ = p.c.Publish(ctx, &mqttconn.Message{Topic: t, Retain: true})
		}
	}
}
