package reply

import (
	"fmt"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Handling times are recorded from 1 µs to 10 minutes at 3 significant
// digits; values outside are clamped so that none is lost from the count.
const (
	histLowest  = int64(time.Microsecond)
	histHighest = int64(10 * time.Minute)
)

// stats counts what happened to the requests. Safe for concurrent use.
type stats struct {
	mu                                         sync.Mutex
	served, failed, skipped, rejected, ignored int
	hist                                       *hdrhistogram.Histogram
}

func newStats() *stats {
	return &stats{hist: hdrhistogram.New(histLowest, histHighest, 3)}
}

func (s *stats) add(n *int) {
	s.mu.Lock()
	*n++
	s.mu.Unlock()
}

// handled records one request's time from arrival to its response being
// handed to the connection.
func (s *stats) handled(d time.Duration) {
	v := min(max(int64(d), histLowest), histHighest)
	s.mu.Lock()
	_ = s.hist.RecordValue(v) // cannot fail: v is in range
	s.mu.Unlock()
}

// summary is the line printed at exit: "served 10, failed 1, skipped 0,
// rejected 0; handling time p50 1.204 ms, p99 3.001 ms".
func (s *stats) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "served %d, failed %d, skipped %d, rejected %d", s.served, s.failed, s.skipped, s.rejected)
	if s.hist.TotalCount() > 0 {
		fmt.Fprintf(&b, "; handling time p50 %s, p99 %s", ms(s.hist.ValueAtQuantile(50)), ms(s.hist.ValueAtQuantile(99)))
	}
	return b.String()
}

func ms(ns int64) string {
	return fmt.Sprintf("%.3f ms", float64(ns)/float64(time.Millisecond))
}
