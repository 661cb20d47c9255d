package bench

import (
	"fmt"
	"math"
	"sort"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record nanoseconds from 1 µs to 60 s at 3 significant digits
// (about 0.1% error). Every goroutine that records owns its histograms and
// they are merged once, at the end, so nothing is locked on the hot path.
const (
	histLowest  = int64(time.Microsecond)
	histHighest = int64(60 * time.Second)
	histDigits  = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

// record clamps v into the histogram's range: a value below 1 µs is
// recorded as 1 µs and one above 60 s as 60 s, so that no sample is
// silently dropped from the count.
func record(h *hdrhistogram.Histogram, v int64) {
	if v < histLowest {
		v = histLowest
	}
	if v > histHighest {
		v = histHighest
	}
	_ = h.RecordValue(v) // cannot fail: v is in range
}

// lazy returns *h, creating it with mk on first use. A 3-digit histogram
// over 1 µs–60 s takes about 150 KB, so clients that never record (QoS 0
// publishers, idle subscribers) should not pay for one: with thousands of
// clients that is the difference between megabytes and gigabytes.
func lazy(h **hdrhistogram.Histogram, mk func() *hdrhistogram.Histogram) *hdrhistogram.Histogram {
	if *h == nil {
		*h = mk()
	}
	return *h
}

func mergeNonNil(dst, src *hdrhistogram.Histogram) {
	if src != nil {
		dst.Merge(src)
	}
}

// mergeHists returns a new histogram holding every value of hs.
func mergeHists(hs ...*hdrhistogram.Histogram) *hdrhistogram.Histogram {
	out := newHist()
	for _, h := range hs {
		if h != nil {
			out.Merge(h)
		}
	}
	return out
}

// Summary is a histogram's headline figures, in milliseconds.
type Summary struct {
	Count  int64   `json:"count"`
	Min    float64 `json:"min"`
	Mean   float64 `json:"mean"`
	StdDev float64 `json:"stddev"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	P999   float64 `json:"p99_9"`
	P9999  float64 `json:"p99_99,omitempty"` // only when count >= 100,000
	Max    float64 `json:"max"`
}

func ms(ns float64) float64 { return math.Round(ns/1e3) / 1e3 } // ms with µs precision

// Summarize computes h's Summary; p99.99 is given only with enough samples
// for it to mean something.
func Summarize(h *hdrhistogram.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	s := Summary{
		Count:  h.TotalCount(),
		Min:    ms(float64(h.Min())),
		Mean:   ms(h.Mean()),
		StdDev: ms(h.StdDev()),
		P50:    ms(float64(h.ValueAtQuantile(50))),
		P90:    ms(float64(h.ValueAtQuantile(90))),
		P99:    ms(float64(h.ValueAtQuantile(99))),
		P999:   ms(float64(h.ValueAtQuantile(99.9))),
		Max:    ms(float64(h.Max())),
	}
	if s.Count >= 100_000 {
		s.P9999 = ms(float64(h.ValueAtQuantile(99.99)))
	}
	return s
}

// seqTracker accounts for one publisher's stream as one subscriber sees
// it. Sequence numbers start at 0 and grow by one per message; anything
// else is a gap (kept as a list of missing ranges), a late arrival filling
// a gap (out of order) or a repeat (duplicate). Memory grows with the
// number of gaps, not with the number of messages.
type seqTracker struct {
	next    uint64 // highest sequence seen + 1
	missing []span // sorted, disjoint ranges not yet seen, all < next
	unique  int64  // distinct sequence numbers seen
	dups    int64  // repeats of a sequence number already seen
	reorder int64  // arrivals of a number lower than one already seen
}

type span struct{ lo, hi uint64 } // inclusive

// add records seq and reports whether it was new (not a duplicate).
func (t *seqTracker) add(seq uint64) bool {
	switch {
	case seq == t.next:
		t.next++
		t.unique++
		return true
	case seq > t.next:
		t.missing = append(t.missing, span{t.next, seq - 1})
		t.next = seq + 1
		t.unique++
		return true
	default:
		i := sort.Search(len(t.missing), func(i int) bool { return t.missing[i].hi >= seq })
		if i == len(t.missing) || t.missing[i].lo > seq {
			t.dups++
			return false
		}
		t.unique++
		t.reorder++
		s := t.missing[i]
		switch {
		case s.lo == s.hi:
			t.missing = append(t.missing[:i], t.missing[i+1:]...)
		case seq == s.lo:
			t.missing[i].lo++
		case seq == s.hi:
			t.missing[i].hi--
		default:
			t.missing = append(t.missing, span{})
			copy(t.missing[i+2:], t.missing[i+1:])
			t.missing[i] = span{s.lo, seq - 1}
			t.missing[i+1] = span{seq + 1, s.hi}
		}
	}
	return true
}

// gaps returns how many sequence numbers below the highest seen are still
// missing.
func (t *seqTracker) gaps() int64 {
	var n int64
	for _, s := range t.missing {
		n += int64(s.hi - s.lo + 1)
	}
	return n
}

// Delivery is what the subscribers saw, summed over subscribers and
// publishers.
type Delivery struct {
	Expected   int64   `json:"expected"`     // sent × matching subscribers (0 when unknown)
	Received   int64   `json:"received"`     // every bench message delivered, repeats included
	Unique     int64   `json:"unique"`       // distinct (subscriber, publisher, seq)
	Lost       int64   `json:"lost"`         // expected − unique, or gaps when expected is unknown
	Duplicated int64   `json:"duplicated"`   // repeats
	OutOfOrder int64   `json:"out_of_order"` // arrivals after a higher sequence number
	LossPct    float64 `json:"loss_pct"`     // lost ÷ expected × 100
	Foreign    int64   `json:"foreign"`      // messages without a bench header

	// UniqueMeasured counts distinct messages from the measured phase
	// (publishers mark warm-up ones); merge checks loss of sharded runs
	// against it, since late-starting shards miss each other's warm-up.
	UniqueMeasured int64 `json:"unique_measured"`
}

// finish computes Lost and LossPct. With a known expected count it is
// expected − unique (which also catches messages lost at the end of a
// stream, which no gap reveals); otherwise it is the gaps seen.
func (d *Delivery) finish(gaps int64) {
	if d.Expected > 0 {
		d.Lost = max(d.Expected-d.Unique, 0)
		d.LossPct = float64(d.Lost) / float64(d.Expected) * 100
		return
	}
	d.Lost = gaps
	if n := d.Unique + gaps; n > 0 {
		d.LossPct = float64(gaps) / float64(n) * 100
	}
}

// schedule says when message n of one publisher is due. A zero interval
// means closed loop: every message is due the moment the previous finished.
type schedule struct {
	start    time.Duration // run-relative time of message 0
	interval time.Duration
}

func (s schedule) due(n uint64) time.Duration {
	return s.start + time.Duration(float64(n)*float64(s.interval))
}

// lag classifies one send: how late it started against its intended time,
// and whether that is an overrun (more than one interval late, the
// emqtt-bench definition).
func (s schedule) lag(n uint64, actual time.Duration) (lag time.Duration, overrun bool) {
	if s.interval == 0 {
		return 0, false
	}
	lag = max(actual-s.due(n), 0)
	return lag, lag > s.interval
}

func fmtCount(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	if neg {
		return "-" + string(b)
	}
	return string(b)
}
