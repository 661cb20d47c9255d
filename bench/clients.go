package bench

// The two kinds of benchmark client: a publisher that sends and times
// acknowledgements, and a subscriber that receives and times end-to-end
// delivery. How a run drives them is in messages.go.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// publisher is one publishing client and everything it measures. Its
// histograms and counters are written by its own goroutine only; mu is
// uncontended except for the once-per-interval snapshot and the end.
type publisher struct {
	r      *runner
	c      mqttconn.Client
	id     uint32 // publisher id in the header: the global client index
	topics []string
	count  uint64 // messages to send; 0 = until r.end
	sched  schedule

	// Read by the progress line and the drain without locking.
	total  atomic.Int64 // completed sends, warm-up included
	sent   atomic.Int64 // completed sends in the measured phase
	acked  atomic.Int64
	failed atomic.Int64

	mu       sync.Mutex
	ack      *hdrhistogram.Histogram
	iv       *hdrhistogram.Histogram
	warm     int64
	overruns int64
	maxLag   time.Duration
	lastEnd  time.Duration
	err      error // first publish error
}

type completion struct {
	intended, actual, done time.Duration
	err                    error
}

// run sends until the count or the end time is reached or ctx ends.
// Closed loop keeps at most Inflight messages outstanding; a scheduled run
// sends message n at its due time whatever is outstanding (up to the
// library's own in-flight limit), so lateness shows up as lag and
// overruns rather than silently lowering the offered rate.
func (p *publisher) run(ctx context.Context) {
	r, o := p.r, p.r.o
	scheduled := o.Rate > 0
	capacity := o.Inflight
	if scheduled {
		capacity = 4096
	}
	sync1 := !scheduled && capacity == 1
	comp := make(chan completion, capacity)
	inflight := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var buf []byte
	if sync1 {
		buf = make([]byte, o.Size)
	}
	for n := uint64(0); p.count == 0 || n < p.count; n++ {
		var intended time.Duration
		if scheduled {
			intended = p.sched.due(n)
			if r.end > 0 && intended >= r.end {
				break
			}
			if d := intended - r.since(); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		for inflight >= capacity {
			p.complete(<-comp)
			inflight--
		}
	drain:
		for inflight > 0 {
			select {
			case c := <-comp:
				p.complete(c)
				inflight--
			default:
				break drain
			}
		}
		now := r.since()
		if !scheduled {
			if r.end > 0 && now >= r.end {
				break
			}
			intended = now
		} else if intended >= r.measureStart {
			lag, over := p.sched.lag(n, now)
			p.mu.Lock()
			p.maxLag = max(p.maxLag, lag)
			if over {
				p.overruns++
			}
			p.mu.Unlock()
		}
		payload := buf
		if !sync1 {
			payload = make([]byte, o.Size)
		}
		h := header{wallClock: r.wall, warmup: intended < r.measureStart, pub: p.id, seq: n, intended: r.stamp(intended), actual: r.stamp(now)}
		h.put(payload)
		m := &mqttconn.Message{Topic: p.topics[n%uint64(len(p.topics))], Payload: payload, QoS: o.QoS, Retain: o.Retain}
		if sync1 {
			err := p.c.Publish(ctx, m)
			p.complete(completion{intended, now, r.since(), err})
			continue
		}
		inflight++
		p.c.PublishAsync(ctx, m, func(err error) {
			comp <- completion{intended, now, r.since(), err} // never blocks: capacity ≥ inflight
		})
	}
	deadline := time.After(o.DrainTimeout)
	for ; inflight > 0; inflight-- {
		select {
		case c := <-comp:
			p.complete(c)
		case <-deadline:
			p.failed.Add(int64(inflight))
			return
		}
	}
}

func (p *publisher) complete(c completion) {
	if c.err != nil {
		p.failed.Add(1)
		p.mu.Lock()
		if p.err == nil {
			p.err = c.err
		}
		p.mu.Unlock()
		return
	}
	p.total.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.intended < p.r.measureStart {
		p.warm++
		return
	}
	p.sent.Add(1)
	p.lastEnd = max(p.lastEnd, c.done)
	if p.r.o.QoS > 0 {
		p.acked.Add(1)
		lat := int64(c.done - c.actual)
		record(lazy(&p.ack, newHist), lat)
		if p.r.o.Mode == ModePub {
			record(lazy(&p.iv, newIvHist), lat)
		}
	}
}

// subscriber is one subscribing client. onMessage runs on the
// connection's reader goroutine; mu is only contended by the interval
// snapshot and the final collection.
type subscriber struct {
	r        *runner
	c        mqttconn.Client
	received atomic.Int64 // bench messages, warm-up and repeats included
	measured atomic.Int64

	mu             sync.Mutex
	trackers       map[uint32]*seqTracker
	e2e, unc       *hdrhistogram.Histogram
	iv             *hdrhistogram.Histogram
	bytes          int64
	foreign        int64
	uniqueMeasured int64
	any            bool          // a measured message arrived
	firstRecv      time.Duration // the first measured message's arrival
	lastRecv       time.Duration
	skewed         bool // saw a timestamp from the future: clocks differ
	noLatency      bool // saw run-relative stamps from another process
}

func (s *subscriber) onMessage(m *mqttconn.Message) {
	now := s.r.since()
	h, err := parseHeader(m.Payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.foreign++
		return
	}
	t := s.trackers[h.pub]
	if t == nil {
		t = &seqTracker{}
		s.trackers[h.pub] = t
	}
	isNew := t.add(h.seq)
	s.received.Add(1)
	r := s.r
	// Measured as the publisher classified it, whatever this process's own
	// clock says: warm-up traffic still in flight is not measured, and
	// shards and a 'bench sub' on another host agree with the publisher.
	if h.warmup {
		return
	}
	if !s.any {
		s.any, s.firstRecv = true, now
	}
	if isNew {
		s.uniqueMeasured++
	}
	s.measured.Add(1)
	s.bytes += int64(len(m.Payload))
	s.lastRecv = now
	if h.wallClock != r.wall {
		s.noLatency = true
		return
	}
	at := r.stamp(now)
	if at < h.actual {
		s.skewed = true
	}
	lat := at - h.intended
	record(lazy(&s.e2e, newHist), lat)
	record(lazy(&s.unc, newHist), at-h.actual)
	record(lazy(&s.iv, newIvHist), lat)
}
