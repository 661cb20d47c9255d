package bench

import (
	"math"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/topic"
)

func TestSummarizeUniformDistribution(t *testing.T) {
	h := newHist()
	// 1..10000 µs, once each: pN is N% of 10 ms.
	for v := int64(1); v <= 10000; v++ {
		record(h, v*1000)
	}
	s := Summarize(h)
	if s.Count != 10000 {
		t.Fatalf("count %d", s.Count)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"min", s.Min, 0.001}, {"p50", s.P50, 5}, {"p90", s.P90, 9}, {"p99", s.P99, 9.9},
		{"p99.9", s.P999, 9.99}, {"max", s.Max, 10}, {"mean", s.Mean, 5.0005},
		{"stddev", s.StdDev, 2.8868},
	} {
		// 3 significant digits: within 0.1% (plus rounding to the µs).
		if math.Abs(c.got-c.want) > c.want*0.001+0.001 {
			t.Errorf("%s = %v, want %v ±0.1%%", c.name, c.got, c.want)
		}
	}
	if s.P9999 != 0 {
		t.Errorf("p99.99 given for only %d samples", s.Count)
	}
}

func TestSummarizeBimodalTail(t *testing.T) {
	h := newHist()
	// 99% at 100 µs, 1% at 50 ms: p99 is still the body, p99.9 the tail.
	for range 99_000 {
		record(h, 100_000)
	}
	for range 1_000 {
		record(h, 50_000_000)
	}
	s := Summarize(h)
	if s.P50 != 0.1 || s.P99 != 0.1 {
		t.Errorf("p50 %v p99 %v, want 0.1 ms", s.P50, s.P99)
	}
	if math.Abs(s.P999-50) > 0.05 || math.Abs(s.Max-50) > 0.05 {
		t.Errorf("p99.9 %v max %v, want 50 ms", s.P999, s.Max)
	}
	if s.P9999 == 0 {
		t.Errorf("p99.99 missing with %d samples", s.Count)
	}
}

func TestRecordClampsOutOfRange(t *testing.T) {
	h := newHist()
	record(h, -5)
	record(h, 0)
	record(h, int64(time.Hour))
	if h.TotalCount() != 3 {
		t.Fatalf("count %d, want 3: no sample may be dropped", h.TotalCount())
	}
	if h.Min() > histLowest || !h.ValuesAreEquivalent(h.Max(), histHighest) {
		t.Errorf("min %d max %d", h.Min(), h.Max())
	}
}

func TestMergeIsExact(t *testing.T) {
	all := newHist()
	parts := []*struct{ vals []int64 }{{}, {}, {}}
	for i := int64(0); i < 30000; i++ {
		v := (i*7919)%50_000_000 + 1000
		parts[i%3].vals = append(parts[i%3].vals, v)
		record(all, v)
	}
	a, b, c := newHist(), newHist(), newHist()
	for i, p := range parts {
		h := []*hdrhistogram.Histogram{a, b, c}[i]
		for _, v := range p.vals {
			record(h, v)
		}
	}
	m := mergeHists(a, b, c)
	if !m.Equals(all) {
		t.Fatal("merged histogram differs from the histogram of all values")
	}
	if Summarize(m) != Summarize(all) {
		t.Errorf("summaries differ: %+v vs %+v", Summarize(m), Summarize(all))
	}
}

func TestSeqTracker(t *testing.T) {
	for _, c := range []struct {
		name                    string
		seqs                    []uint64
		unique, dups, ooo, gaps int64
	}{
		{"in order", []uint64{0, 1, 2, 3}, 4, 0, 0, 0},
		{"gap never filled", []uint64{0, 1, 4, 5}, 4, 0, 0, 2},
		{"lost at the start", []uint64{2, 3}, 2, 0, 0, 2},
		{"duplicate", []uint64{0, 1, 1, 2, 2}, 3, 2, 0, 0},
		{"reordered pair", []uint64{0, 2, 1, 3}, 4, 0, 1, 0},
		{"fill middle of a gap", []uint64{0, 5, 3, 1, 4, 2}, 6, 0, 4, 0},
		{"late arrival then its repeat", []uint64{0, 3, 1, 1, 2}, 4, 1, 2, 0},
		{"repeat of old one", []uint64{0, 1, 2, 0}, 3, 1, 0, 0},
		{"partial fill", []uint64{0, 10, 5}, 3, 0, 1, 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			var tr seqTracker
			for _, s := range c.seqs {
				tr.add(s)
			}
			if tr.unique != c.unique || tr.dups != c.dups || tr.reorder != c.ooo || tr.gaps() != c.gaps {
				t.Errorf("unique %d dups %d ooo %d gaps %d; want %d %d %d %d", tr.unique, tr.dups, tr.reorder, tr.gaps(), c.unique, c.dups, c.ooo, c.gaps)
			}
		})
	}
}

func TestDeliveryLoss(t *testing.T) {
	// Expected known: tail loss (no gap reveals it) still counts.
	d := Delivery{Expected: 100, Unique: 90}
	d.finish(3)
	if d.Lost != 10 || d.LossPct != 10 {
		t.Errorf("lost %d (%v%%), want 10 (10%%)", d.Lost, d.LossPct)
	}
	// More unique than expected (another run's publisher): no negative loss.
	d = Delivery{Expected: 10, Unique: 12}
	d.finish(0)
	if d.Lost != 0 {
		t.Errorf("lost %d, want 0", d.Lost)
	}
	// Expected unknown (bench sub): gaps are the loss.
	d = Delivery{Unique: 95}
	d.finish(5)
	if d.Lost != 5 || d.LossPct != 5 {
		t.Errorf("lost %d (%v%%), want 5 (5%%)", d.Lost, d.LossPct)
	}
}

func TestScheduleLagAndOverrun(t *testing.T) {
	s := schedule{start: 10 * time.Millisecond, interval: time.Millisecond}
	if got := s.due(5); got != 15*time.Millisecond {
		t.Fatalf("due(5) = %v", got)
	}
	for _, c := range []struct {
		n       uint64
		actual  time.Duration
		lag     time.Duration
		overrun bool
	}{
		{0, 9 * time.Millisecond, 0, false}, // early: no lag
		{0, 10*time.Millisecond + 500*time.Microsecond, 500 * time.Microsecond, false},
		{3, 13*time.Millisecond + time.Millisecond, time.Millisecond, false}, // exactly one interval: not yet an overrun
		{3, 15 * time.Millisecond, 2 * time.Millisecond, true},
	} {
		lag, over := s.lag(c.n, c.actual)
		if lag != c.lag || over != c.overrun {
			t.Errorf("lag(%d, %v) = %v %v, want %v %v", c.n, c.actual, lag, over, c.lag, c.overrun)
		}
	}
	if lag, over := (schedule{}).lag(7, time.Second); lag != 0 || over {
		t.Errorf("closed loop has no lag, got %v %v", lag, over)
	}
}

// TestCoordinatedOmissionCorrection feeds a subscriber messages from a
// publisher that stalled: the intended times keep the schedule, the actual
// send times bunch up after the stall. Latency from the intended time must
// show the stall; the uncorrected latency must not.
func TestCoordinatedOmissionCorrection(t *testing.T) {
	r := &runner{o: &Options{Mode: ModePubSub}, t0: time.Now().Add(-time.Hour)}
	s := &subscriber{r: r, trackers: map[uint32]*seqTracker{}}
	now := r.since()
	interval := time.Millisecond
	// 100 messages due 1 ms apart ending 100 ms ago; the publisher was
	// stuck and sent them all 100 µs before they arrived (now).
	for n := range 100 {
		intended := now - 100*time.Millisecond + time.Duration(n)*interval
		b := make([]byte, HeaderSize)
		(&header{pub: 1, seq: uint64(n), intended: int64(intended), actual: int64(now - 100*time.Microsecond)}).put(b)
		s.onMessage(&mqttconn.Message{Payload: b})
	}
	corr, unc := Summarize(s.e2e), Summarize(s.unc)
	if corr.Count != 100 || unc.Count != 100 {
		t.Fatalf("counts %d %d", corr.Count, unc.Count)
	}
	if corr.Max < 99 || corr.P50 < 49 {
		t.Errorf("corrected latency hides the stall: %+v", corr)
	}
	if unc.Max > 50 {
		t.Errorf("uncorrected latency should be near 0.1 ms plus scheduling, got max %v ms", unc.Max)
	}
	if s.trackers[1].unique != 100 {
		t.Errorf("unique %d", s.trackers[1].unique)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	b := make([]byte, 100)
	in := header{wallClock: true, warmup: true, pub: 4_000_000_000, seq: 1 << 40, intended: -5, actual: 1 << 62}
	in.put(b)
	out, err := parseHeader(b)
	if err != nil || out != in {
		t.Fatalf("got %+v %v, want %+v", out, err, in)
	}
	if _, err := parseHeader([]byte("hello, this is not a bench payload!")); err == nil {
		t.Error("foreign payload accepted")
	}
	if _, err := parseHeader(b[:HeaderSize-1]); err == nil {
		t.Error("short payload accepted")
	}
}

func TestFilterAndTopicExpansion(t *testing.T) {
	for _, c := range []struct{ pattern, filter, expanded string }{
		{"mqtk/bench/%i", "mqtk/bench/+", "mqtk/bench/7"},
		{"a/dev-%c/%t/x", "a/+/+/x", "a/dev-id9/2/x"},
		{"fixed/topic", "fixed/topic", "fixed/topic"},
	} {
		if got := filterFor(c.pattern); got != c.filter {
			t.Errorf("filterFor(%q) = %q, want %q", c.pattern, got, c.filter)
		}
		if got := expandTopic(c.pattern, 7, "id9", 2); got != c.expanded {
			t.Errorf("expandTopic(%q) = %q, want %q", c.pattern, got, c.expanded)
		}
		// Subscribers get what publishers send.
		if err := topic.ValidateFilter(c.filter); err != nil || !topic.Match(c.filter, c.expanded) {
			t.Errorf("filter %q: %v; matches %q: %v", c.filter, err, c.expanded, topic.Match(c.filter, c.expanded))
		}
	}
}

func TestShardRangeCoversEveryIndexOnce(t *testing.T) {
	for n := 0; n < 20; n++ {
		for shards := 1; shards <= 5; shards++ {
			next := 0
			for i := range shards {
				lo, hi := shardRange(n, i, shards)
				if lo != next || hi < lo {
					t.Fatalf("n=%d shards=%d shard %d: [%d,%d) after %d", n, shards, i, lo, hi, next)
				}
				next = hi
			}
			if next != n {
				t.Fatalf("n=%d shards=%d covers %d", n, shards, next)
			}
		}
	}
}
