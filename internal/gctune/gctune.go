// Package gctune raises the garbage collector's target while a server's
// live heap is small.
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
	"runtime/metrics"
	"time"
)

// Policy says when to use which GOGC percentage.
type Policy struct {
	Small  uint64        // live heap, in bytes, under which High applies
	High   int           // GOGC while the live heap is small
	Normal int           // GOGC otherwise (Go's default is 100)
	Every  time.Duration // how often the live heap is looked at
}

// Default is the broker's policy: GOGC 400 under 64 MiB live, so the heap
// stays under about 320 MiB before it switches back to 100.
func Default() Policy {
	return Policy{Small: 64 << 20, High: 400, Normal: 100, Every: time.Second}
}

// LiveHeap reads the bytes the last GC cycle found live.
func LiveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Run applies p until ctx is done, then restores Normal. live reads the
// live heap and set changes GOGC (runtime/debug.SetGCPercent); both are
// parameters so tests need not touch the process's collector. The switch
// back to High waits until the live heap is under three quarters of Small,
// so a heap near the line does not flip the setting every tick.
func Run(ctx context.Context, p Policy, live func() uint64, set func(int) int) {
	cur := p.High
	set(cur)
	t := time.NewTicker(p.Every)
	defer t.Stop()
	defer func() { set(p.Normal) }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		want := cur
		switch n := live(); {
		case n > p.Small:
			want = p.Normal
		case n < p.Small/4*3:
			want = p.High
		}
		if want != cur {
			set(want)
			cur = want
		}
	}
}
