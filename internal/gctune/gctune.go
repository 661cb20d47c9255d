// Package gctune raises the garbage collector's target while a server's
// live heap is small, and bounds the garbage it may hold.
//
// Go collects when the heap has grown by GOGC percent (100) over what was
// live after the last cycle. A broker's live heap is usually a few
// megabytes while it allocates for every message, so it runs many short
// cycles, and each one takes CPU from the connections at that moment,
// which shows in the tail latency of a scheduled QoS 1 run (BENCHMARKS.md,
// "broker vs mosquitto"). A fixed GOGC=400 would let a large live heap
// grow five-fold, so the higher target applies only while the live heap
// is under Policy.Small.
package gctune

import (
	"context"
	"math"
	"runtime/metrics"
	"time"
)

// Policy says when to use which GOGC percentage, and how much garbage
// the heap may hold beyond its live part.
type Policy struct {
	Small  uint64        // live heap, in bytes, under which High applies
	High   int           // GOGC while the live heap is small
	Normal int           // GOGC otherwise (Go's default is 100)
	Every  time.Duration // how often the live heap is looked at
	// Headroom bounds the garbage a quiet heap may hold: the soft memory
	// limit (runtime/debug.SetMemoryLimit) is kept at the memory that is
	// not heap, plus the live heap, plus the largest of the live heap,
	// Headroom and what was allocated in the last second. GOGC High alone
	// lets a heap of many small, long-lived objects (ten thousand idle
	// connections) hold four times its live size in garbage, and the
	// runtime returns freed pages to the system only as it nears a
	// limit. The last second's allocation keeps the limit from binding
	// on a busy broker, where it would make the collector run back to
	// back (16 KiB messages lost three quarters of their throughput to
	// that); the live heap keeps it from binding before GOGC Normal
	// would. 0 sets no limit.
	Headroom uint64
}

// Default is the broker's policy: GOGC 400 under 64 MiB live, so the heap
// stays under about 320 MiB before it switches back to 100, and at most
// 16 MiB of garbage while the live heap is under 16 MiB.
func Default() Policy {
	return Policy{Small: 64 << 20, High: 400, Normal: 100, Every: time.Second, Headroom: 16 << 20}
}

// Memory is what Run reads each tick: the live heap after the last GC,
// the memory the runtime holds that is not heap (stacks, metadata), and
// the bytes allocated since the program started.
type Memory struct {
	Live, NonHeap, Allocs uint64
}

// ReadMemory reads Memory from the runtime.
func ReadMemory() Memory {
	s := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
	}
	metrics.Read(s)
	v := make([]uint64, len(s))
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	heap := v[2] + v[3] + v[4] + v[5]
	m := Memory{Live: v[0], Allocs: v[6]}
	if v[1] > heap {
		m.NonHeap = v[1] - heap
	}
	return m
}

// limit is the soft memory limit for m, given perSecond bytes allocated
// in the last second, or math.MaxInt64 (none). Headroom 0 leaves the
// limit alone: Run then sets none, and a GOMEMLIMIT the user gave stays
// in force.
func (p Policy) limit(m Memory, perSecond uint64) int64 {
	if p.Headroom == 0 {
		return math.MaxInt64
	}
	return int64(m.NonHeap + m.Live + max(m.Live, p.Headroom, perSecond))
}

// Run applies p until ctx is done, then restores Normal and no limit
// (with Headroom 0 it never touches the limit).
// read reads the runtime's memory, set changes GOGC
// (runtime/debug.SetGCPercent) and limit the soft memory limit
// (runtime/debug.SetMemoryLimit); all are parameters so tests need not
// touch the process's collector. The switch back to High waits until the
// live heap is under three quarters of Small, so a heap near the line
// does not flip the setting every tick.
func Run(ctx context.Context, p Policy, read func() Memory, set func(int) int, limit func(int64) int64) {
	cur := p.High
	set(cur)
	if p.Headroom == 0 {
		limit = func(int64) int64 { return 0 }
	}
	m := read()
	prev, prevAt := m.Allocs, time.Now()
	curLimit := p.limit(m, 0)
	limit(curLimit)
	t := time.NewTicker(p.Every)
	defer t.Stop()
	defer func() {
		set(p.Normal)
		limit(math.MaxInt64)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m := read()
		now := time.Now()
		var perSecond uint64
		if d := now.Sub(prevAt); d > 0 && m.Allocs > prev {
			perSecond = uint64(float64(m.Allocs-prev) / d.Seconds())
		}
		prev, prevAt = m.Allocs, now
		want := cur
		switch {
		case m.Live > p.Small:
			want = p.Normal
		case m.Live < p.Small/4*3:
			want = p.High
		}
		if want != cur {
			set(want)
			cur = want
		}
		// Only a change of more than a sixteenth moves the limit: the
		// runtime re-paces the collector at every call.
		if l := p.limit(m, perSecond); l > curLimit+curLimit/16 || l < curLimit-curLimit/16 {
			limit(l)
			curLimit = l
		}
	}
}
