package bench

import (
	"sync"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// The per-message work of a subscriber and of a publisher's completion,
// mutex included, to weigh the lock against the rest (go test -bench
// HotPath ./bench). The lock is uncontended except once per interval.
func BenchmarkHotPathSubscriberOnMessage(b *testing.B) {
	r := &runner{o: &Options{Mode: ModePubSub}, t0: time.Now()}
	s := &subscriber{r: r, trackers: map[uint32]*seqTracker{}}
	payload := make([]byte, 100)
	b.ReportAllocs()
	for i := range b.N {
		(&header{pub: 1, seq: uint64(i), intended: int64(r.since()), actual: int64(r.since())}).put(payload)
		s.onMessage(&mqttconn.Message{Payload: payload})
	}
}

func BenchmarkHotPathPublisherComplete(b *testing.B) {
	r := &runner{o: &Options{Mode: ModePubSub, QoS: 1}, t0: time.Now()}
	p := &publisher{r: r}
	b.ReportAllocs()
	for range b.N {
		now := r.since()
		p.complete(completion{intended: now, actual: now, done: now + 100*time.Microsecond})
	}
}

// The uncontended lock alone, for comparison with the two above.
func BenchmarkHotPathUncontendedMutex(b *testing.B) {
	var mu sync.Mutex
	n := 0
	for range b.N {
		mu.Lock()
		n++
		mu.Unlock()
	}
	_ = n
}
